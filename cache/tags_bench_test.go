package cache

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hitLog records the latency of hits and when each started, in memory allocated up front
// (growing it during the run would make the garbage collector part of the measurement).
type hitLog struct {
	start []int64 // unix ns
	dur   []time.Duration
}

// newHitLog holds up to n hits.
func newHitLog(n int) *hitLog {
	return &hitLog{start: make([]int64, 0, n), dur: make([]time.Duration, 0, n)}
}

// add records one hit unless the log is full.
func (l *hitLog) add(start time.Time, d time.Duration) {
	if len(l.start) < cap(l.start) {
		l.start, l.dur = append(l.start, start.UnixNano()), append(l.dur, d)
	}
}

// p99Between is the 99th percentile of the hits that started in [from, to), and their count.
func p99Between(logs []*hitLog, from, to time.Time) (time.Duration, int) {
	var ds []time.Duration
	f, u := from.UnixNano(), to.UnixNano()
	for _, l := range logs {
		for i, s := range l.start {
			if s >= f && s < u {
				ds = append(ds, l.dur[i])
			}
		}
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*99/100)], len(ds)
}

// BenchmarkTagPurge100k purges a tag carried by 100,000 stored objects while goroutines
// serve memory hits for 1,000 other objects through the seam as fast as they can, and
// reports how long the purge took to answer (purge-µs: from then on no lookup finds the
// objects), how long until the background reclaimer had removed them from the indexes and
// both tiers (reclaimed-ms), and the p99 of the hits that started in that window (and, for
// comparison, of those in the 100 ms before it). hitters=0 is the purge alone; with as many
// hitters as cores the reclaimer gets its fair share of the CPU only.
// Run: go test -run XXX -bench TagPurge100k -benchtime 3x ./cache
func BenchmarkTagPurge100k(b *testing.B) {
	for _, hitters := range []int{0, 1, 2} {
		b.Run("hitters="+strconv.Itoa(hitters), func(b *testing.B) { benchTagPurge(b, hitters, false) })
	}
	b.Run("soft/hitters=1", func(b *testing.B) { benchTagPurge(b, 1, true) })
}

// benchTagPurge is one BenchmarkTagPurge100k run with hitters goroutines serving hits; soft
// marks the objects stale instead (softpurge.go: one mark per object, in the call).
func benchTagPurge(b *testing.B, hitters int, soft bool) {
	const objects, hot = 100_000, 1000
	var purgeTotal, reclaimTotal, duringP99, beforeP99 time.Duration
	var purged, during int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := newHarness(b, reply(200, "hot", "Cache-Control: max-age=3600"), nil)
		h.c.st.mem.Close()
		mem, err := newMemory(512<<20, &h.c.stats, func(e *entry) { h.c.st.gone(e, false) })
		if err != nil {
			b.Fatal(err)
		}
		h.c.st.mem = mem
		fillTagged(h.c, "http://origin.test", objects, []string{"big", "shared"})
		reqs := make([]Request, hot)
		for j := range hot {
			p := "/hot/" + strconv.Itoa(j)
			h.do(http.MethodGet, p)
			reqs[j] = FromHTTP(httptest0(h, p))
		}
		if _, items := h.c.st.counts(); items < objects {
			b.Fatalf("only %d objects stored", items)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		logs := make([]*hitLog, hitters)
		for g := range hitters {
			logs[g] = newHitLog(4 << 20)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &sink{buf: make([]byte, 0, 1024)}
				for n := g; !stop.Load(); n += hitters {
					t0 := time.Now()
					out, err := h.c.Serve(w, reqs[n%hot], nil)
					logs[g].add(t0, time.Since(t0))
					if err != nil || !out.Hit {
						b.Errorf("hit expected: %+v %v", out, err)
						return
					}
				}
			}()
		}
		time.Sleep(100 * time.Millisecond) // the hitters' baseline window (a measurement, not synchronisation)
		b.StartTimer()
		t0 := time.Now()
		n := h.c.apply(purgeSpec{tags: []string{"big"}, soft: soft})
		t1 := time.Now()
		for j := 0; j < 100; j += 7 { // banned (or marked) at once
			key := "http://origin.test/t/" + strconv.Itoa(j)
			e := h.c.st.memGetString(itemKey(primaryHash(key), key, ""), key, "")
			if !soft && e != nil || soft && (e == nil || !e.softMarked()) {
				b.Fatalf("object %d not purged when the purge returned", j)
			}
		}
		h.c.st.ban.reclaimer.Wait()
		t2 := time.Now()
		b.StopTimer()
		time.Sleep(20 * time.Millisecond)
		stop.Store(true)
		wg.Wait()
		if n != objects {
			b.Fatalf("purged %d, want %d", n, objects)
		}
		want, wantTags := hot, 0
		if soft {
			want, wantTags = hot+objects, 2
		}
		if _, items := h.c.st.counts(); items != want {
			b.Fatalf("%d objects left, want %d", items, want)
		}
		if tags := h.c.st.tags.count(); tags != wantTags {
			b.Fatalf("%d tags left, want %d", tags, wantTags)
		}
		p, c := p99Between(logs, t0, t2)
		bp, _ := p99Between(logs, t0.Add(-100*time.Millisecond), t0)
		purgeTotal += t1.Sub(t0)
		reclaimTotal += t2.Sub(t0)
		duringP99, beforeP99 = max(duringP99, p), max(beforeP99, bp)
		purged, during = n, during+c
		h.c.Close()
	}
	b.ReportMetric(float64(purgeTotal.Microseconds())/float64(b.N), "purge-µs")
	b.ReportMetric(float64(reclaimTotal.Milliseconds())/float64(b.N), "reclaimed-ms")
	if hitters > 0 {
		b.ReportMetric(float64(duringP99.Microseconds()), "hit-p99-during-µs")
		b.ReportMetric(float64(beforeP99.Microseconds()), "hit-p99-before-µs")
		b.ReportMetric(float64(during)/float64(b.N), "hits-during")
	}
	b.ReportMetric(float64(purged), "objects")
}
