package cache

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

func TestStoredHeader(t *testing.T) {
	in := http.Header{
		"Connection": {"X-Hop, close"}, "X-Hop": {"1"}, "Keep-Alive": {"timeout=5"},
		"Transfer-Encoding": {"chunked"}, "Content-Length": {"5"}, "Age": {"3"}, "X-End": {"e"},
		"Outpost-Cache-Control": {"max-age=5"}, "Cdn-Cache-Control": {"max-age=9"}, "X-Secret": {"s"},
		"Proxy-Authenticate": {"Basic"}, "Upgrade": {"h2c"}, "Trailer": {"X"},
	}
	d := parseRespLines([]string{`no-cache="X-Secret"`})
	got := storedHeader(in, &d, true, time.Unix(0, 0))
	for _, f := range []string{"Connection", "X-Hop", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Age",
		"Outpost-Cache-Control", "Cdn-Cache-Control", "X-Secret", "Proxy-Authenticate", "Upgrade", "Trailer"} {
		if _, ok := got[f]; ok {
			t.Errorf("RFC 9111 §3.1: %s stored", f)
		}
	}
	if got.Get("X-End") != "e" || got.Get("Date") == "" {
		t.Errorf("end-to-end fields lost: %v", got)
	}
}

func TestParseResponseDirectives(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want func(d respDirectives) bool
	}{
		{"RFC 9111 §5.2 case-insensitive names", http.Header{"Cache-Control": {"MAX-AGE=5, Public"}}, func(d respDirectives) bool { return d.maxAge == 5 && d.public }},
		{"RFC 9111 §1.2.2 overflow clamps to 2^31", http.Header{"Cache-Control": {"max-age=99999999999999999999"}}, func(d respDirectives) bool { return d.maxAge == maxDelta }},
		{"RFC 9111 §5.2.2.4 qualified no-cache with a comma in quotes", http.Header{"Cache-Control": {`no-cache="a, b", max-age=3`}}, func(d respDirectives) bool {
			return !d.noCache && len(d.noCacheFields) == 2 && d.maxAge == 3
		}},
		{"RFC 9111 §4.2.1 first of duplicated directives", http.Header{"Cache-Control": {"max-age=1", "max-age=2"}}, func(d respDirectives) bool { return d.maxAge == 1 }},
		{"RFC 9213 targeted field replaces Cache-Control", http.Header{"Cache-Control": {"no-store"}, "Cdn-Cache-Control": {"max-age=9"}}, func(d respDirectives) bool { return !d.noStore && d.maxAge == 9 }},
		{"RFC 9213 §2.1 an invalid targeted field (uppercase key) is ignored", http.Header{"Cache-Control": {"max-age=5"}, "Cdn-Cache-Control": {"MAX-AGE=9"}}, func(d respDirectives) bool { return d.maxAge == 5 }},
		{"RFC 9213 §2.1 a string where an integer belongs is ignored", http.Header{"Cache-Control": {"max-age=5"}, "Cdn-Cache-Control": {`max-age="9", public`}}, func(d respDirectives) bool { return d.maxAge == -1 && d.public }},
		{"RFC 9213 §2.1 a false boolean is off", http.Header{"Cdn-Cache-Control": {"no-store=?0, max-age=3"}}, func(d respDirectives) bool { return !d.noStore && d.maxAge == 3 }},
		{"RFC 9213 Outpost-Cache-Control before CDN-Cache-Control", http.Header{"Outpost-Cache-Control": {"max-age=1"}, "Cdn-Cache-Control": {"max-age=9"}}, func(d respDirectives) bool { return d.maxAge == 1 }},
		{"RFC 8941 a repeated key in a targeted field: the last wins", http.Header{"Cdn-Cache-Control": {"max-age=1, max-age=9"}}, func(d respDirectives) bool { return d.maxAge == 9 }},
		{"RFC 8941 whitespace around = makes a targeted field invalid", http.Header{"Cache-Control": {"max-age=5"}, "Cdn-Cache-Control": {"max-age = 9"}}, func(d respDirectives) bool { return d.maxAge == 5 }},
		{"RFC 5861 extensions", http.Header{"Cache-Control": {"stale-while-revalidate=7, stale-if-error=8"}}, func(d respDirectives) bool {
			return d.staleWhileRevalidate == 7 && d.staleIfError == 8
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := parseResponseDirectives(tt.h); !tt.want(d) {
				t.Errorf("%+v", d)
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		name, v string
		size    int64
		want    []byteRange
		ok      bool
	}{
		{"RFC 9110 §14.1.2 first-last", "bytes=0-4", 10, []byteRange{{0, 4}}, true},
		{"open-ended", "bytes=5-", 10, []byteRange{{5, 9}}, true},
		{"suffix", "bytes=-3", 10, []byteRange{{7, 9}}, true},
		{"suffix longer than the representation", "bytes=-30", 10, []byteRange{{0, 9}}, true},
		{"last beyond the end is clipped", "bytes=8-100", 10, []byteRange{{8, 9}}, true},
		{"unsatisfiable", "bytes=10-", 10, nil, true},
		{"other unit ignored", "items=0-1", 10, nil, false},
		{"last before first is invalid", "bytes=5-1", 10, nil, false},
		{"garbage", "bytes=a-b", 10, nil, false},
		{"overlap ignored", "bytes=0-5,3-8", 10, nil, false},
		{"two ranges", "bytes=0-1, 4-5", 10, []byteRange{{0, 1}, {4, 5}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseRange(tt.v, tt.size)
			if ok != tt.ok || len(got) != len(tt.want) {
				t.Fatalf("parseRange(%q) = %v, %v", tt.v, got, ok)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("parseRange(%q) = %v", tt.v, got)
				}
			}
		})
	}
}

func TestDecide(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	tm := timing{requestTime: t0, responseTime: t0}
	fresh := policy{lifetime: time.Minute, swr: -1, sie: -1}
	tests := []struct {
		name string
		p    policy
		rq   reqDirectives
		at   time.Duration
		want verdict
		why  Reason
	}{
		{"RFC 9111 §4.2 fresh", fresh, noDirectives, 30 * time.Second, useFresh, Reason{}},
		{"RFC 9111 §4.2 stale", fresh, noDirectives, 61 * time.Second, mustValidate, ServeStale},
		{"RFC 9111 §5.2.1.4 request no-cache", fresh, reqDirectives{noCache: true, maxAge: -1, maxStale: -1, minFresh: -1}, 0, mustValidate, ServeReqNoCache},
		{"RFC 5861 §3 within stale-while-revalidate", policy{lifetime: time.Minute, swr: time.Minute, sie: -1}, noDirectives, 90 * time.Second, useStaleRevalidate, ServeStale},
		{"RFC 9111 §5.2.2.2 must-revalidate beats max-stale", policy{lifetime: time.Minute, revalidate: true, swr: -1, sie: -1},
			reqDirectives{maxAge: -1, maxStale: maxDelta, minFresh: -1}, 90 * time.Second, mustValidate, ServeMustRevalidate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, why := decide(tm, tt.p, &tt.rq, t0.Add(tt.at))
			if v != tt.want || why != tt.why {
				t.Errorf("decide = %v, %v; want %v, %v", v, why, tt.want, tt.why)
			}
		})
	}
}

// TestMaxVariants: a URL keeps at most max_variants Vary variants, evicting the oldest;
// replacing one evicts none.
func TestMaxVariants(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		reply(200, r.Header.Get("X-V"), "Cache-Control: max-age=60", "Vary: X-V")(w, r, n)
	}, func(c *config.CacheConfig) { c.MaxVariants = 3 })
	for i := range 5 {
		h.do("GET", "/v", fmt.Sprintf("X-V: %d", i))
	}
	if _, items := h.c.st.counts(); items != 3 {
		t.Fatalf("%d variants kept, want 3", items)
	}
	h.clk.Advance(time.Hour) // all stale: each replaced in place
	for i := 2; i < 5; i++ {
		h.do("GET", "/v", fmt.Sprintf("X-V: %d", i))
	}
	if _, items := h.c.st.counts(); items != 3 {
		t.Fatalf("%d variants after replacing, want 3", items)
	}
	for i := 2; i < 5; i++ {
		if res := h.do("GET", "/v", fmt.Sprintf("X-V: %d", i)); !res.out.Hit {
			t.Fatalf("variant %d not kept: %+v", i, res.out)
		}
	}
}

// TestDiskQueueCancel: a removal cancels the writes of the item queued before it, not after.
func TestDiskQueueCancel(t *testing.T) {
	d := &diskStore{maxObject: 1 << 20, stats: &counters{}, items: map[uint64]*diskItem{},
		pending: map[uint64]int{}, tomb: map[uint64]int{}, queue: make(chan *entry, 4)}
	e := &entry{item: 7, body: []byte("x"), size: 1}
	d.enqueue(e)
	d.remove(7)
	d.enqueue(e)
	if !d.settle((<-d.queue).item) {
		t.Fatal("the write queued before the removal was not cancelled")
	}
	if d.settle((<-d.queue).item) {
		t.Fatal("the write queued after the removal was cancelled")
	}
	if len(d.pending) != 0 || len(d.tomb) != 0 {
		t.Fatalf("pending %v tomb %v", d.pending, d.tomb)
	}
}
