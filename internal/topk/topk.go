// Package topk finds the heaviest keys of a stream in fixed memory with the Space-Saving
// algorithm (Metwally, Agrawal and El Abbadi, "Efficient Computation of Frequent and Top-k
// Elements in Data Streams", ICDT 2005), sharded by key hash so that concurrent writers rarely
// share a lock.
//
// Each shard monitors at most capacity/shards keys. A key that is not monitored replaces the
// lightest monitored one and inherits its weight as the error bound, so a key's true weight is
// always in [Weight-Error, Weight], and every key heavier than total/capacity (within its shard)
// is monitored. Memory is bounded by the capacity and the key length limit, whatever the stream.
package topk

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
)

// Entry is one monitored key: its estimated weight and the most it can overestimate.
type Entry struct {
	Key    string `json:"key"`
	Weight uint64 `json:"weight"`
	Error  uint64 `json:"error"`
}

// Tracker keeps the heaviest keys of a stream. It is safe for concurrent use.
type Tracker struct {
	seed   maphash.Seed
	maxKey int
	shards []shard
}

// shard is one lock's worth of counters: a min-heap by weight and the index of each key in it.
type shard struct {
	mu    sync.Mutex
	heap  []Entry
	index map[string]int
	total uint64
	_     [40]byte // keeps neighbouring shards' locks off one cache line
}

// New returns a tracker that monitors up to capacity keys in the given number of shards (at
// least one key per shard), truncating keys to maxKey bytes.
func New(capacity, shards, maxKey int) *Tracker {
	shards = max(shards, 1)
	per := max(capacity/shards, 1)
	t := &Tracker{seed: maphash.MakeSeed(), maxKey: max(maxKey, 1), shards: make([]shard, shards)}
	for i := range t.shards {
		t.shards[i].heap = make([]Entry, 0, per)
		t.shards[i].index = make(map[string]int, per)
	}
	return t
}

// Add adds weight to key. It allocates only when key replaces another monitored key.
func (t *Tracker) Add(key []byte, weight uint64) {
	if len(key) > t.maxKey {
		key = key[:t.maxKey]
	}
	sh := &t.shards[maphash.Bytes(t.seed, key)%uint64(len(t.shards))]
	sh.mu.Lock()
	sh.add(key, weight)
	sh.mu.Unlock()
}

// add is Space-Saving's update step.
func (sh *shard) add(key []byte, weight uint64) {
	sh.total += weight
	if i, ok := sh.index[string(key)]; ok {
		sh.heap[i].Weight += weight
		sh.down(i)
		return
	}
	if len(sh.heap) < cap(sh.heap) {
		sh.heap = append(sh.heap, Entry{Key: string(key), Weight: weight})
		sh.index[sh.heap[len(sh.heap)-1].Key] = len(sh.heap) - 1
		sh.up(len(sh.heap) - 1)
		return
	}
	lightest := sh.heap[0]
	delete(sh.index, lightest.Key)
	sh.heap[0] = Entry{Key: string(key), Weight: lightest.Weight + weight, Error: lightest.Weight}
	sh.index[sh.heap[0].Key] = 0
	sh.down(0)
}

// up and down restore the min-heap order after entry i changed, keeping the index current.
func (sh *shard) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if sh.heap[p].Weight <= sh.heap[i].Weight {
			return
		}
		sh.swap(i, p)
		i = p
	}
}

func (sh *shard) down(i int) {
	for {
		l, small := 2*i+1, i
		if l < len(sh.heap) && sh.heap[l].Weight < sh.heap[small].Weight {
			small = l
		}
		if r := l + 1; r < len(sh.heap) && sh.heap[r].Weight < sh.heap[small].Weight {
			small = r
		}
		if small == i {
			return
		}
		sh.swap(i, small)
		i = small
	}
}

func (sh *shard) swap(i, j int) {
	sh.heap[i], sh.heap[j] = sh.heap[j], sh.heap[i]
	sh.index[sh.heap[i].Key], sh.index[sh.heap[j].Key] = i, j
}

// Top returns the n heaviest monitored keys, heaviest first (ties by key), and the total
// weight added.
func (t *Tracker) Top(n int) (top []Entry, total uint64) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		top = append(top, sh.heap...)
		total += sh.total
		sh.mu.Unlock()
	}
	slices.SortFunc(top, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(b.Weight, a.Weight), strings.Compare(a.Key, b.Key))
	})
	if n >= 0 && len(top) > n {
		top = top[:n]
	}
	return top, total
}

// Len is the number of monitored keys (at most the capacity).
func (t *Tracker) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.heap)
		sh.mu.Unlock()
	}
	return n
}
