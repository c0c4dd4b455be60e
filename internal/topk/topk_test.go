package topk

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestTracker(t *testing.T) {
	type add struct {
		key    string
		weight uint64
	}
	tests := []struct {
		name     string
		capacity int
		shards   int
		maxKey   int
		adds     []add
		want     []Entry // Top(-1)
	}{
		{name: "empty", capacity: 4, shards: 1, maxKey: 64},
		{name: "exact below capacity", capacity: 4, shards: 1, maxKey: 64,
			adds: []add{{"a", 1}, {"b", 5}, {"a", 1}, {"c", 2}, {"a", 1}},
			want: []Entry{{"b", 5, 0}, {"a", 3, 0}, {"c", 2, 0}}},
		{name: "ties ordered by key", capacity: 4, shards: 1, maxKey: 64,
			adds: []add{{"b", 1}, {"a", 1}},
			want: []Entry{{"a", 1, 0}, {"b", 1, 0}}},
		{name: "newcomer replaces the lightest and inherits its weight as error", capacity: 2, shards: 1, maxKey: 64,
			adds: []add{{"a", 3}, {"b", 1}, {"c", 1}},
			want: []Entry{{"a", 3, 0}, {"c", 2, 1}}},
		{name: "replaced key comes back with an error bound", capacity: 2, shards: 1, maxKey: 64,
			adds: []add{{"a", 3}, {"b", 1}, {"c", 1}, {"b", 4}},
			want: []Entry{{"b", 6, 2}, {"a", 3, 0}}},
		{name: "keys truncated to maxKey", capacity: 4, shards: 1, maxKey: 3,
			adds: []add{{"abcdef", 1}, {"abcxyz", 1}},
			want: []Entry{{"abc", 2, 0}}},
		{name: "zero capacity keeps one key per shard", capacity: 0, shards: 1, maxKey: 8,
			adds: []add{{"a", 1}, {"b", 1}},
			want: []Entry{{"b", 2, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(tt.capacity, tt.shards, tt.maxKey)
			var sum uint64
			for _, a := range tt.adds {
				tr.Add([]byte(a.key), a.weight)
				sum += a.weight
			}
			got, total := tr.Top(-1)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("Top = %v, want %v", got, tt.want)
			}
			if total != sum {
				t.Errorf("total = %d, want %d", total, sum)
			}
		})
	}
}

// TestHeavyHittersFound checks Space-Saving's guarantees on a skewed stream much larger than
// the capacity: memory stays bounded, every true weight lies in [Weight-Error, Weight], and the
// heavy keys are found in order.
func TestHeavyHittersFound(t *testing.T) {
	const capacity, shards = 64, 4
	tr := New(capacity, shards, 64)
	truth := map[string]uint64{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200_000 {
		var k string
		switch {
		case i%10 < 3:
			k = "/hot/1"
		case i%10 < 5:
			k = "/hot/2"
		case i%10 < 6:
			k = "/hot/3"
		default:
			k = fmt.Sprintf("/cold/%d", rng.IntN(100_000))
		}
		truth[k]++
		tr.Add([]byte(k), 1)
	}
	if n := tr.Len(); n > capacity {
		t.Fatalf("%d keys monitored, capacity %d", n, capacity)
	}
	top, total := tr.Top(3)
	if total != 200_000 {
		t.Errorf("total %d", total)
	}
	for i, want := range []string{"/hot/1", "/hot/2", "/hot/3"} {
		if i >= len(top) || top[i].Key != want {
			t.Fatalf("top = %v, want the hot keys in order", top)
		}
	}
	all, _ := tr.Top(-1)
	for _, e := range all {
		if tw := truth[e.Key]; tw > e.Weight || tw < e.Weight-e.Error {
			t.Errorf("%s: true weight %d outside [%d, %d]", e.Key, tw, e.Weight-e.Error, e.Weight)
		}
	}
}

func TestConcurrentAdd(t *testing.T) {
	tr := New(32, 8, 64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				tr.Add([]byte(fmt.Sprintf("/k/%d", (g*7+i)%50)), 2)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			tr.Top(10)
		}
	})
	wg.Wait()
	if _, total := tr.Top(0); total != 8*5000*2 {
		t.Errorf("total %d", total)
	}
}

// FuzzTracker feeds arbitrary keys (they come from clients' request URLs) and checks the
// invariants: bounded keys, bounded key length, weights summing to at most the total.
func FuzzTracker(f *testing.F) {
	f.Add([]byte("/a\x00/b\x00/a\x00"), uint8(3))
	f.Add([]byte("http://example.test/\xff\xfe\x00\x00\x00"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, capacity uint8) {
		tr := New(int(capacity), 2, 16)
		var sum uint64
		for i, k := range bytes.Split(data, []byte{0}) {
			w := uint64(i%3 + 1)
			tr.Add(k, w)
			sum += w
		}
		top, total := tr.Top(-1)
		if total != sum {
			t.Fatalf("total %d, want %d", total, sum)
		}
		if len(top) > max(int(capacity)/2, 1)*2 {
			t.Fatalf("%d keys, capacity %d", len(top), capacity)
		}
		var weights uint64
		for _, e := range top {
			if len(e.Key) > 16 || e.Error > e.Weight {
				t.Fatalf("bad entry %+v", e)
			}
			weights += e.Weight - e.Error
		}
		if weights > total {
			t.Fatalf("guaranteed weights %d exceed the total %d", weights, total)
		}
	})
}

func BenchmarkAdd(b *testing.B) {
	tr := New(256, 8, 256)
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("http://www.cdn.test/static/object/%d.js", i%300))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tr.Add(keys[i%len(keys)], 1)
			i++
		}
	})
}
