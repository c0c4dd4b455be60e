package cache

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// synthFetcher answers every request in process with a 1 KiB cacheable response.
type synthFetcher struct {
	body []byte
	path string
}

func (f synthFetcher) Fetch(Upstream) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Cache-Control": {"max-age=3600"}, "Content-Type": {"application/octet-stream"},
			"Date": {"Mon, 23 Nov 2026 00:00:00 GMT"}, "Etag": {`"` + f.path + `"`},
		},
		ContentLength: int64(len(f.body)), Body: io.NopCloser(bytes.NewReader(f.body)),
	}, nil
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryBound is acceptance 5: caching 10,000 objects of 1 KiB keeps the heap the cache
// adds within twice the configured memory size — with room for all of them, and with a budget
// that forces eviction.
func TestMemoryBound(t *testing.T) {
	if raceEnabled {
		t.Skip("heap measurements are not meaningful under -race; run without -race")
	}
	for _, budget := range []int64{32 << 20, 4 << 20} {
		t.Run(fmt.Sprintf("memory_size=%dMiB", budget>>20), func(t *testing.T) {
			cfg := config.Default().Cache
			cfg.DiskEnabled = false
			cfg.MemorySize = config.ByteSize(budget)
			before := heap()
			c, err := New(cfg, component.Test(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			body := bytes.Repeat([]byte("m"), 1024)
			w := &sink{}
			for i := range 10_000 {
				r := &http.Request{Method: "GET", Header: http.Header{}, RemoteAddr: "127.0.0.1:1", Host: "mem.test"}
				r.URL, _ = r.URL.Parse(fmt.Sprintf("http://mem.test/o/%d", i))
				if _, err := c.Serve(w, FromHTTP(r), synthFetcher{body: body, path: r.URL.Path}); err != nil {
					t.Fatal(err)
				}
			}
			c.pumps.Wait()
			c.st.mem.Wait()
			after := heap()
			grown := int64(after) - int64(before)
			_, items := c.st.counts()
			t.Logf("budget %d MiB: %d entries, heap grew %.1f MiB", budget>>20, items, float64(grown)/(1<<20))
			if grown > 2*budget {
				t.Fatalf("heap grew %d bytes, more than twice memory_size (%d)", grown, budget)
			}
			if items == 0 {
				t.Fatal("nothing stored")
			}
			runtime.KeepAlive(c)
		})
	}
}
