package web

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/componenttest"
	"github.com/outpost-proxy/outpost/internal/config"
)

// testConfig is the default [web] section on an ephemeral port, with the demo cache policy.
func testConfig() config.WebConfig {
	cfg := config.Default().Web
	cfg.Listen = "127.0.0.1:0"
	cfg.AccessLog = false
	cfg.MaxBytes = 4 << 20
	cfg.MaxDelay = 2 * time.Second
	cfg.MaxPageObjects = 50
	cfg.CachePolicy = []config.WebCacheRule{
		{Glob: "*.html", CacheControl: "no-cache"},
		{Glob: "*.css", CacheControl: "public, max-age=3600"},
		{Glob: "/img/*", CacheControl: "public, max-age=86400", Expires: 24 * time.Hour},
	}
	return cfg
}

// startServer runs a web origin over dataDir and returns its base URL.
func startServer(t *testing.T, cfg config.WebConfig, dataDir string) string {
	t.Helper()
	s, err := New(cfg, component.Test(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	componenttest.Start(t, s)
	return "http://" + strings.TrimPrefix(s.Addrs()[0], "tcp ")
}

// get performs a request with the given header fields and returns the response and body.
func get(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestConditionalAndRange is acceptance 3's table: validators, ranges and HEAD on a static
// file and on /bytes/N.
func TestConditionalAndRange(t *testing.T) {
	base := startServer(t, testConfig(), t.TempDir())
	for _, target := range []string{"/index.html", "/bytes/1k", "/page/3", "/page/3/obj/2"} {
		first, full := get(t, "GET", base+target, nil)
		etag, lm := first.Header.Get("ETag"), first.Header.Get("Last-Modified")
		if first.StatusCode != 200 || etag == "" || strings.HasPrefix(etag, "W/") || lm == "" ||
			first.Header.Get("Accept-Ranges") != "bytes" || first.ContentLength != int64(len(full)) {
			t.Fatalf("%s: first GET: %d etag=%q lm=%q headers=%v", target, first.StatusCode, etag, lm, first.Header)
		}
		lmTime, _ := http.ParseTime(lm)
		earlier := lmTime.Add(-time.Hour).Format(http.TimeFormat)
		cases := []struct {
			name   string
			method string
			hdr    map[string]string
			status int
			body   []byte
			crange string
		}{
			{"plain", "GET", nil, 200, full, ""},
			{"HEAD", "HEAD", nil, 200, []byte{}, ""},
			{"INM match", "GET", map[string]string{"If-None-Match": etag}, 304, []byte{}, ""},
			{"INM list match", "GET", map[string]string{"If-None-Match": `"x", ` + etag}, 304, []byte{}, ""},
			{"INM star", "GET", map[string]string{"If-None-Match": "*"}, 304, []byte{}, ""},
			{"INM other", "GET", map[string]string{"If-None-Match": `"other"`}, 200, full, ""},
			{"IMS same", "GET", map[string]string{"If-Modified-Since": lm}, 304, []byte{}, ""},
			{"IMS earlier", "GET", map[string]string{"If-Modified-Since": earlier}, 200, full, ""},
			{"INM wins over IMS", "GET", map[string]string{"If-None-Match": `"other"`, "If-Modified-Since": lm}, 200, full, ""},
			{"If-Match fails", "GET", map[string]string{"If-Match": `"other"`}, 412, nil, ""},
			{"range first 10", "GET", map[string]string{"Range": "bytes=0-9"}, 206, full[:10], fmt.Sprintf("bytes 0-9/%d", len(full))},
			{"range suffix", "GET", map[string]string{"Range": "bytes=-5"}, 206, full[len(full)-5:], fmt.Sprintf("bytes %d-%d/%d", len(full)-5, len(full)-1, len(full))},
			{"range open end", "GET", map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(full)-3)}, 206, full[len(full)-3:], ""},
			{"range unsatisfiable", "GET", map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(full)+10)}, 416, nil, fmt.Sprintf("bytes */%d", len(full))},
			{"If-Range etag match", "GET", map[string]string{"Range": "bytes=0-3", "If-Range": etag}, 206, full[:4], ""},
			{"If-Range etag mismatch", "GET", map[string]string{"Range": "bytes=0-3", "If-Range": `"old"`}, 200, full, ""},
			{"If-Range date match", "GET", map[string]string{"Range": "bytes=0-3", "If-Range": lm}, 206, full[:4], ""},
			{"If-Range date old", "GET", map[string]string{"Range": "bytes=0-3", "If-Range": earlier}, 200, full, ""},
		}
		for _, tc := range cases {
			t.Run(strings.ReplaceAll(target, "/", "_")+"/"+tc.name, func(t *testing.T) {
				resp, body := get(t, tc.method, base+target, tc.hdr)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
				if tc.body != nil && !bytes.Equal(body, tc.body) {
					t.Fatalf("body %d bytes, want %d", len(body), len(tc.body))
				}
				if tc.crange != "" && resp.Header.Get("Content-Range") != tc.crange {
					t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), tc.crange)
				}
				if tc.method == "HEAD" && resp.ContentLength != int64(len(full)) {
					t.Fatalf("HEAD Content-Length %d, want %d", resp.ContentLength, len(full))
				}
			})
		}
	}
}

// TestDeterministic checks that /bytes/N and /page/N are identical across servers and requests.
func TestDeterministic(t *testing.T) {
	a := startServer(t, testConfig(), t.TempDir())
	b := startServer(t, testConfig(), t.TempDir())
	for _, target := range []string{"/bytes/0", "/bytes/1", "/bytes/1000", "/bytes/1k", "/bytes/100K", "/bytes/1m",
		"/page/0", "/page/7", "/page/7/obj/7", "/page/3?size=100", "/page/3/obj/1?size=2k"} {
		ra, ba := get(t, "GET", a+target, nil)
		rb, bb := get(t, "GET", b+target, nil)
		_, ba2 := get(t, "GET", a+target, nil)
		if ra.StatusCode != 200 || rb.StatusCode != 200 || !bytes.Equal(ba, bb) || !bytes.Equal(ba, ba2) ||
			ra.Header.Get("ETag") != rb.Header.Get("ETag") {
			t.Errorf("%s: not deterministic (%d/%d, %d/%d bytes)", target, ra.StatusCode, rb.StatusCode, len(ba), len(bb))
		}
		if cc := ra.Header.Get("Cache-Control"); cc != "public, max-age=3600" {
			t.Errorf("%s: Cache-Control %q", target, cc)
		}
	}
	sizes := map[string]int{"/bytes/0": 0, "/bytes/1000": 1000, "/bytes/1k": 1024, "/bytes/3m": 3 << 20,
		"/page/2/obj/1": 1024, "/page/2/obj/2?size=10": 10, "/page/2/obj/2?size=64k": 64 << 10}
	for target, n := range sizes {
		if _, body := get(t, "GET", a+target, nil); len(body) != n {
			t.Errorf("%s: %d bytes, want %d", target, len(body), n)
		}
	}
	_, one := get(t, "GET", a+"/page/2/obj/1", nil)
	_, two := get(t, "GET", a+"/page/2/obj/2", nil)
	if bytes.Equal(one, two) {
		t.Error("objects of a page should differ")
	}
	_, page := get(t, "GET", a+"/page/4?size=100", nil)
	for i := 1; i <= 4; i++ {
		if !bytes.Contains(page, fmt.Appendf(nil, `src="/page/4/obj/%d?size=100"`, i)) {
			t.Errorf("page lacks object %d:\n%s", i, page)
		}
	}
	if bytes.Contains(page, []byte("/obj/5")) {
		t.Error("page has too many objects")
	}
}

// TestSyntheticErrors covers limits and malformed synthetic URLs.
func TestSyntheticErrors(t *testing.T) {
	base := startServer(t, testConfig(), t.TempDir())
	cases := []struct {
		name, method, target string
		status               int
	}{
		{"bytes over limit", "GET", "/bytes/5m", 400},
		{"bytes huge", "GET", "/bytes/99999999999999999999999", 400},
		{"bytes negative", "GET", "/bytes/-1", 400},
		{"bytes unit", "GET", "/bytes/1g", 400},
		{"bytes empty", "GET", "/bytes/", 404},
		{"bytes extra", "GET", "/bytes/1/2", 404},
		{"bytes POST", "POST", "/bytes/1", 405},
		{"delay over limit", "GET", "/delay/2001", 400},
		{"delay bad", "GET", "/delay/abc", 400},
		{"delay nested", "GET", "/delay/1/delay/1", 400},
		{"page over limit", "GET", "/page/51", 400},
		{"page size over limit", "GET", "/page/1?size=2m", 400},
		{"page obj zero", "GET", "/page/3/obj/0", 404},
		{"page obj beyond", "GET", "/page/3/obj/4", 404},
		{"page junk", "GET", "/page/3/x", 404},
		{"status low", "GET", "/status/100", 400},
		{"status high", "GET", "/status/600", 400},
		{"status text", "GET", "/status/abc", 400},
		{"mutable bad name", "GET", "/mutable/a%20b", 404},
		{"mutable PATCH", "PATCH", "/mutable/x", 405},
		{"static POST", "POST", "/index.html", 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := get(t, tc.method, base+tc.target, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

// TestStatusAndHeaders checks /status/CODE, /headers and /delay/MS.
func TestStatusAndHeaders(t *testing.T) {
	base := startServer(t, testConfig(), t.TempDir())
	for _, code := range []int{200, 204, 301, 304, 401, 404, 418, 500, 503} {
		resp, body := get(t, "GET", fmt.Sprintf("%s/status/%d", base, code), nil)
		if resp.StatusCode != code {
			t.Errorf("/status/%d gave %d", code, resp.StatusCode)
		}
		if (code == 204 || code == 304) != (len(body) == 0) {
			t.Errorf("/status/%d body %q", code, body)
		}
	}
	resp, body := get(t, "GET", base+"/headers", map[string]string{"X-Probe": "hello"})
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"hello"`)) || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("/headers: %d %s", resp.StatusCode, body)
	}
	start := time.Now()
	resp, body = get(t, "GET", base+"/delay/50/bytes/10", nil)
	if resp.StatusCode != 200 || len(body) != 10 || time.Since(start) < 50*time.Millisecond {
		t.Errorf("/delay/50/bytes/10: %d, %d bytes after %v", resp.StatusCode, len(body), time.Since(start))
	}
	if resp, body = get(t, "GET", base+"/delay/1", nil); resp.StatusCode != 200 || string(body) != "delayed 1 ms\n" {
		t.Errorf("/delay/1: %d %q", resp.StatusCode, body)
	}
}

// TestMutable walks the revalidation demo: initial version, PUT, conditional GETs, DELETE.
func TestMutable(t *testing.T) {
	base := startServer(t, testConfig(), t.TempDir())
	url := base + "/mutable/demo"
	r0, b0 := get(t, "GET", url, nil)
	if r0.StatusCode != 200 || string(b0) != "demo version 0\n" || r0.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("initial: %d %q %v", r0.StatusCode, b0, r0.Header)
	}
	put := func(body string) int {
		req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("one"); code != 201 {
		t.Fatalf("first PUT: %d", code)
	}
	r1, b1 := get(t, "GET", url, nil)
	if string(b1) != "one" || r1.Header.Get("ETag") == r0.Header.Get("ETag") {
		t.Fatalf("after PUT: %q etag %s", b1, r1.Header.Get("ETag"))
	}
	if r, _ := get(t, "GET", url, map[string]string{"If-Modified-Since": r0.Header.Get("Last-Modified")}); r.StatusCode != 200 {
		t.Errorf("IMS old: %d", r.StatusCode)
	}
	if r, _ := get(t, "GET", url, map[string]string{"If-None-Match": r1.Header.Get("ETag")}); r.StatusCode != 304 {
		t.Errorf("INM current: %d", r.StatusCode)
	}
	if code := put("two"); code != 204 {
		t.Fatalf("second PUT: %d", code)
	}
	r2, b2 := get(t, "GET", url, map[string]string{"If-Modified-Since": r1.Header.Get("Last-Modified")})
	if r2.StatusCode != 200 || string(b2) != "two" {
		t.Errorf("IMS after second PUT (same second): %d %q", r2.StatusCode, b2)
	}
	if r, _ := get(t, "DELETE", url, nil); r.StatusCode != 204 {
		t.Errorf("DELETE: %d", r.StatusCode)
	}
	if r, _ := get(t, "DELETE", url, nil); r.StatusCode != 404 {
		t.Errorf("second DELETE: %d", r.StatusCode)
	}
	if code := put(strings.Repeat("x", int(testConfig().MaxMutableSize)+1)); code != 413 {
		t.Errorf("oversized PUT: %d", code)
	}
}

// rawGet sends one request line over a raw connection (so no client cleans the path) and
// returns the status code.
func rawGet(t *testing.T, base, target string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTraversal checks that nothing outside the document root is served.
func TestTraversal(t *testing.T) {
	data := t.TempDir()
	www := filepath.Join(data, "www")
	if err := seedSite(www); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(data, "secret.txt")
	os.WriteFile(secret, []byte("secret"), 0o644)
	os.Symlink(secret, filepath.Join(www, "leak.txt"))
	os.Symlink(data, filepath.Join(www, "updir"))
	os.Symlink("index.html", filepath.Join(www, "alias.html"))
	os.WriteFile(filepath.Join(www, ".hidden"), []byte("x"), 0o644)
	base := startServer(t, testConfig(), data)
	cases := []struct {
		name, target string
		status       int
	}{
		{"dotdot", "/../secret.txt", 403},
		{"dotdot deep", "/img/../../secret.txt", 403},
		{"encoded dotdot", "/%2e%2e/secret.txt", 403},
		{"encoded slash", "/img/..%2f..%2fsecret.txt", 403},
		{"mixed case encoding", "/%2E%2E/%2e%2E/etc/passwd", 403},
		{"absolute form", "http://x/../secret.txt", 403},
		{"symlink file out", "/leak.txt", 403},
		{"symlink dir out", "/updir/secret.txt", 403},
		{"symlink inside", "/alias.html", 200},
		{"dotfile", "/.hidden", 404},
		{"backslash", "/..\\secret.txt", 404},
		{"nul", "/index.html%00", 404},
		{"missing", "/nope.html", 404},
		{"dir redirect", "/img", 301},
		{"dir without index", "/img/", 403},
		{"root index", "/", 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawGet(t, base, tc.target); got != tc.status {
				t.Fatalf("%s: %d, want %d", tc.target, got, tc.status)
			}
		})
	}
}

// TestPolicyAndTypes checks the cache policy and content types of the demo site.
func TestPolicyAndTypes(t *testing.T) {
	base := startServer(t, testConfig(), t.TempDir())
	cases := []struct {
		target, ctype, cc string
		expires           bool
	}{
		{"/index.html", "text/html; charset=utf-8", "no-cache", false},
		{"/", "text/html; charset=utf-8", "", false},
		{"/css/site.css", "text/css; charset=utf-8", "public, max-age=3600", false},
		{"/js/site.js", "text/javascript; charset=utf-8", "", false},
		{"/img/logo.png", "image/png", "public, max-age=86400", true},
		{"/img/dot.gif", "image/gif", "public, max-age=86400", true},
		{"/img/badge.svg", "image/svg+xml", "public, max-age=86400", true},
	}
	for _, tc := range cases {
		resp, body := get(t, "GET", base+tc.target, nil)
		if resp.StatusCode != 200 || len(body) == 0 || resp.Header.Get("Content-Type") != tc.ctype ||
			resp.Header.Get("Cache-Control") != tc.cc || (resp.Header.Get("Expires") != "") != tc.expires {
			t.Errorf("%s: %d type=%q cc=%q expires=%q", tc.target, resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), resp.Header.Get("Expires"))
		}
	}
}

// TestHTTP10AndPipelining sends two pipelined HTTP/1.1 requests and an HTTP/1.0 one.
func TestHTTP10AndPipelining(t *testing.T) {
	base := startServer(t, testConfig(), t.TempDir())
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/7 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /bytes/3 HTTP/1.0\r\n\r\n")
	br := bufio.NewReader(c)
	for i, want := range []int{5, 7, 3} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if len(body) != want {
			t.Fatalf("response %d: %d bytes, want %d", i, len(body), want)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("HTTP/1.0 request without keep-alive should close the connection, got %v", err)
	}
}

// TestSeedIdempotent checks that a second start leaves an edited site alone.
func TestSeedIdempotent(t *testing.T) {
	data := t.TempDir()
	startServer(t, testConfig(), data)
	p := filepath.Join(data, "www", "index.html")
	os.WriteFile(p, []byte("mine"), 0o644)
	base := startServer(t, testConfig(), data)
	if _, body := get(t, "GET", base+"/index.html", nil); string(body) != "mine" {
		t.Errorf("seed overwrote the site: %q", body)
	}
}

// FuzzParseSize checks that the /bytes size parser never panics and respects its limit.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1k", "1K", "1m", "1M", "", "k", "-1", "99999999999999999999", "1g", "12x", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s, 64<<20)
		if err == nil && (n < 0 || n > 64<<20) {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
	})
}

// FuzzCleanRel checks that an accepted path never climbs out of the root.
func FuzzCleanRel(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/a/../../x", "/.hidden", "/a//b", "x", "/a/./b", "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rel, code := cleanRel(s)
		if code != 0 {
			return
		}
		if rel == ".." || strings.HasPrefix(rel, "../") || strings.HasPrefix(rel, "/") || strings.Contains(rel, "/../") {
			t.Fatalf("cleanRel(%q) = %q", s, rel)
		}
	})
}

// BenchmarkBytes measures /bytes/1k over a real connection with keep-alive.
func BenchmarkBytes(b *testing.B) {
	cfg := testConfig()
	s, err := New(cfg, component.Test(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Listen(context.Background()); err != nil {
		b.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Shutdown(context.Background())
	url := "http://" + strings.TrimPrefix(s.Addrs()[0], "tcp ") + "/bytes/1k"
	client := &http.Client{}
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
