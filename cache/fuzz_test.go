package cache

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCacheControl: directive parsing never panics and keeps durations in range.
func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{
		"max-age=60", `no-cache="a, b", private`, "s-maxage=1, max-age=2, must-revalidate",
		`max-age="3"`, "max-age=99999999999999999999", ",,,=,", `no-cache="unterminated`, `a="\\"`,
		"stale-while-revalidate=5, stale-if-error", "max-stale, min-fresh=1, only-if-cached",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseResponseDirectives(http.Header{"Cache-Control": {s}, "Cdn-Cache-Control": {s}})
		for _, v := range []int64{d.maxAge, d.sMaxAge, d.staleIfError, d.staleWhileRevalidate} {
			if v < -1 || v > maxDelta {
				t.Fatalf("duration out of range: %d", v)
			}
		}
		rq := parseRequestDirectives(http.Header{"Cache-Control": {s}, "Pragma": {s}})
		if rq.maxStale < -1 || rq.maxStale > maxDelta {
			t.Fatalf("max-stale out of range: %d", rq.maxStale)
		}
		_ = varyNames(http.Header{"Vary": {s}})
		_ = etagListMatch([]string{s}, `"x"`, false)
	})
}

// FuzzRange: range parsing never panics and only returns ranges inside the representation.
func FuzzRange(f *testing.F) {
	for _, s := range []string{"bytes=0-4", "bytes=-5", "bytes=5-", "bytes=0-1,3-4", "bytes=9999999999999999999-", "bytes=--", "bytes= 1 - 2 ,", "bytes 0-4/10", "bytes 5-4/10", "bytes 0-9/*"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, s string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		if r, total, ok := parseContentRange(s); ok && (r.start > r.end || r.end >= total) {
			t.Fatalf("Content-Range %q parsed as %v/%d", s, r, total)
		}
		rs, ok := parseRange(s, size)
		if !ok {
			return
		}
		if len(rs) > maxRanges {
			t.Fatalf("%d ranges", len(rs))
		}
		for _, r := range rs {
			if r.start < 0 || r.end >= size || r.start > r.end {
				t.Fatalf("range %v outside [0,%d)", r, size)
			}
		}
	})
}

// FuzzKey: key building never panics and is stable under case and default-port changes.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"http://Example.COM:80/a?b", "http://h/", "http://h", "http://h/%41?", "https://h:443/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		k := appendKey(nil, u, "fallback.test")
		if len(k) == 0 {
			t.Fatal("empty key")
		}
	})
}

// FuzzDiskEntry: the start-up scan never panics on an arbitrary file and never accepts one
// whose size does not add up.
func FuzzDiskEntry(f *testing.F) {
	f.Add([]byte("OPC1"))
	f.Add([]byte("OPC1hello{\"key\":\"http://h/\"}\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "e")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		it, err := scanFile(p)
		if err != nil {
			return
		}
		if it.fileSize != int64(len(data)) || it.e.size > int64(len(data)) {
			t.Fatalf("accepted a file whose size does not add up: %+v", it)
		}
	})
}
