package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// waitFollowers polls until the flight for path has n followers.
func waitFollowers(t *testing.T, h *harness, path string, n int32) {
	t.Helper()
	key := "http://origin.test" + path
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		h.c.flights.mu.Lock()
		fl := h.c.flights.m[primaryHash(key)]
		h.c.flights.mu.Unlock()
		if fl != nil && fl.followers.Load() >= n {
			return
		}
		time.Sleep(time.Millisecond) // polling for an external effect, with a deadline
	}
	t.Fatalf("flight for %s never had %d followers", path, n)
}

// TestCollapse100 is acceptance 3: 100 concurrent requests for a cold 1 MiB object make
// exactly one origin request and all get the whole body, streamed as it arrives.
func TestCollapse100(t *testing.T) {
	const n = 100
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.WriteHeader(200)
		_, _ = w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		<-release
		_, _ = w.Write(body[len(body)/2:])
	}, func(c *config.CacheConfig) { c.CollapseTimeout = time.Minute })
	var wg sync.WaitGroup
	results := make([]*recorder, n)
	outs := make([]Outcome, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = &recorder{method: "GET"}
			outs[i], _ = h.serve(results[i], httptest0(h, "/big"))
		}()
	}
	waitFollowers(t, h, "/big", n-1)
	close(release)
	wg.Wait()
	h.settle()
	if got := h.originCount(); got != 1 {
		t.Fatalf("origin saw %d requests, want 1", got)
	}
	fetched := 0
	for i, rw := range results {
		if rw.resp == nil || rw.resp.StatusCode != 200 || !bytes.Equal(rw.body, body) {
			t.Fatalf("request %d: wrong response (%d bytes)", i, len(rw.body))
		}
		if outs[i].Fetched {
			fetched++
		}
	}
	if fetched != 1 || h.c.stats.collapsed.Load() != n-1 {
		t.Fatalf("fetched %d, collapsed %d", fetched, h.c.stats.collapsed.Load())
	}
	if res := h.do("GET", "/big"); res.out.Code != CodeMemHit || res.body != string(body) {
		t.Fatalf("after the flight: %+v", res.out)
	}
}

// TestCollapseTimeout: a follower that waits longer than collapse_timeout for the shared
// response's header goes to the origin itself.
func TestCollapseTimeout(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			<-release
		}
		reply(200, "x", "Cache-Control: max-age=60")(w, r, n)
	}, func(c *config.CacheConfig) { c.CollapseTimeout = 20 * time.Millisecond })
	done := make(chan struct{})
	go func() {
		defer close(done)
		rw := &recorder{method: "GET"}
		_, _ = h.serve(rw, httptest0(h, "/slow"))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for h.originCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	res := h.do("GET", "/slow")
	if res.status != 200 || h.originCount() != 2 {
		t.Fatalf("status %d, origin %d", res.status, h.originCount())
	}
	close(release)
	<-done
}

// TestCollapseUnshareable: followers of a private response go to the origin themselves.
func TestCollapseUnshareable(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			<-release
		}
		reply(200, "secret", "Cache-Control: private")(w, r, n)
	}, func(c *config.CacheConfig) { c.CollapseTimeout = time.Minute })
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rw := &recorder{method: "GET"}
			_, _ = h.serve(rw, httptest0(h, "/p"))
		}()
	}
	waitFollowers(t, h, "/p", 2)
	close(release)
	wg.Wait()
	if got := h.originCount(); got != 3 {
		t.Fatalf("origin saw %d requests, want 3 (private responses are not shared)", got)
	}
}

// shortReader is a ResponseWriter whose client goes away after n body bytes.
type shortReader struct{ n int64 }

func (s shortReader) WriteStored(_, _, _ []byte) error { return nil }

func (s shortReader) WriteResponse(resp *http.Response) error {
	_, err := io.CopyN(io.Discard, resp.Body, s.n)
	if err != nil {
		return err
	}
	return errors.New("client went away")
}

// TestEndlessBodyAbandoned: a cacheable body that never ends and that nobody reads any more is
// not pumped forever.
func TestEndlessBodyAbandoned(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("Cache-Control", "max-age=60")
		chunk := bytes.Repeat([]byte("e"), 4096)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}, func(c *config.CacheConfig) { c.MaxObjectSize = 64 << 10 })
	_, err := h.serve(shortReader{n: 10000}, httptest0(h, "/endless"))
	if err == nil {
		t.Fatal("expected the client's error")
	}
	done := make(chan struct{})
	go func() { h.c.pumps.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the pump is still reading an endless body nobody wants")
	}
	if _, items := h.c.st.counts(); items != 0 {
		t.Fatalf("%d items stored", items)
	}
}

// boundedReader is a ResponseWriter that reads n body bytes, checking at every read that the
// flight keeps no more than limit bytes in memory and spillLimit on disk.
type boundedReader struct {
	t                 *testing.T
	h                 *harness
	n                 int64
	limit, spillLimit int64
}

func (b boundedReader) WriteStored(_, _, _ []byte) error { return errors.New("unexpected") }

func (b boundedReader) WriteResponse(resp *http.Response) error {
	key := "http://origin.test/live"
	fl := b.h.c.flights.get(primaryHash(key), key) // registered until it overflows
	if fl == nil {
		return errors.New("no flight")
	}
	buf := make([]byte, 32<<10)
	var got int64
	for got < b.n {
		n, err := resp.Body.Read(buf)
		got += int64(n)
		if err != nil {
			return err
		}
		fl.mu.Lock()
		held, spilled := int64(len(fl.buf)), fl.spillEnd
		fl.mu.Unlock()
		if held > b.limit || spilled > b.spillLimit {
			b.t.Errorf("after %d bytes the flight holds %d in memory, %d on disk", got, held, spilled)
			return errors.New("unbounded")
		}
	}
	return errors.New("client went away")
}

// TestEndlessBodyBounded: an endless cacheable body (a live stream) that a client keeps
// reading is relayed with bounded memory and disk, and nothing is stored.
func TestEndlessBodyBounded(t *testing.T) {
	endless := func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("Cache-Control", "max-age=60")
		chunk := bytes.Repeat([]byte("s"), 8192)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	spillDir := t.TempDir()
	tests := []struct {
		name string
		mod  func(*config.CacheConfig)
		disk int64
	}{
		{"memory only", func(c *config.CacheConfig) { c.MaxObjectSize = 64 << 10 }, 0},
		{"spilled to disk", func(c *config.CacheConfig) {
			diskConfig(spillDir)(c)
			c.MaxObjectSize, c.DiskMaxObjectSize = 64<<10, 256<<10
		}, 256<<10 + 64<<10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, endless, tt.mod)
			w := boundedReader{t: t, h: h, n: 4 << 20, limit: windowMax + 128<<10, spillLimit: tt.disk}
			if _, err := h.serve(w, httptest0(h, "/live")); err == nil || err.Error() != "client went away" {
				t.Fatalf("the client did not read its 4 MiB: %v", err)
			}
			h.settle()
			if _, items := h.c.st.counts(); items != 0 {
				t.Fatalf("%d items stored", items)
			}
			if left, _ := filepath.Glob(filepath.Join(spillDir, "*", "*")); len(left) > 0 {
				t.Fatalf("files left on disk: %v", left)
			}
			if left, _ := filepath.Glob(filepath.Join(spillDir, tmpPrefix+"*")); len(left) > 0 {
				t.Fatalf("temporary files left on disk: %v", left)
			}
		})
	}
}

// TestStaleWhileRevalidateOnce: RFC 5861 §3 — while a background refresh is running, further
// stale hits are served without starting another one.
func TestStaleWhileRevalidateOnce(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 2 {
			<-release
		}
		reply(200, fmt.Sprint("v", n), "Cache-Control: max-age=1, stale-while-revalidate=60")(w, r, n)
	}, nil)
	h.do("GET", "/swr")
	h.clk.Advance(5 * time.Second)
	for range 3 {
		rw := &recorder{method: "GET"}
		out, err := h.serve(rw, httptest0(h, "/swr"))
		if err != nil || out.Code != CodeStaleHit || string(rw.body) != "v1" {
			t.Fatalf("%+v %v %q", out, err, rw.body)
		}
	}
	close(release)
	h.settle()
	if n := h.originCount(); n != 2 {
		t.Fatalf("origin saw %d requests, want 2 (one background refresh)", n)
	}
	if res := h.do("GET", "/swr"); res.body != "v2" || !res.out.Hit {
		t.Fatalf("after the refresh: %+v %q", res.out, res.body)
	}
}

// TestOverflowWaitsForLeader: an overflowing flight (too large for every tier: a full disk,
// say) waits for the leader's reader while the leader holds its reference, instead of
// abandoning the body before the leader started reading; it abandons it once the leader
// leaves without reading.
func TestOverflowWaitsForLeader(t *testing.T) {
	fl := newFlight(1, "k")
	fl.refs.Add(1) // the leader's reference, taken before the pump starts
	fl.overflowNow()
	done := make(chan error, 1)
	go func() { done <- fl.write([]byte("abc")) }()
	r := fl.reader()
	if err := <-done; err != nil {
		t.Fatalf("write with the leader's reader coming: %v", err)
	}
	fl.finish(nil)
	if b, err := io.ReadAll(r); err != nil || string(b) != "abc" {
		t.Fatalf("leader read %q, %v", b, err)
	}
	r.Close()

	fl = newFlight(2, "k2")
	fl.refs.Add(1)
	fl.overflowNow()
	go func() { done <- fl.write([]byte("abc")) }()
	fl.release() // the leader answered without the body (a 304, say)
	if err := <-done; !errors.Is(err, errAbandoned) {
		t.Fatalf("write after the leader left: %v, want errAbandoned", err)
	}
}
