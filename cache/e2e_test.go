package cache_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy"
)

// These tests run the cache behind the real proxy on 127.0.0.1:0, in reverse mode with a
// default route (host = "*") and in forward mode, against a scripted origin that records what
// it saw.

// scriptedOrigin is an httptest origin whose handler can be replaced per test.
type scriptedOrigin struct {
	*httptest.Server
	mu      sync.Mutex
	seen    []http.Header
	handler http.HandlerFunc
}

func newScriptedOrigin(t testing.TB, h http.HandlerFunc) *scriptedOrigin {
	o := &scriptedOrigin{handler: h}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, r.Header.Clone())
		h := o.handler
		o.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *scriptedOrigin) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

func (o *scriptedOrigin) last() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[len(o.seen)-1]
}

// stack is a proxy with a cache, started from configuration text.
type stack struct {
	addr    string
	logPath string
	cache   *cache.Cache
	stop    func()
	host    string // Host of requests (default site.test)
}

// startStack starts proxy + cache in front of origin from TOML text for both sections.
func startStack(t *testing.T, o *scriptedOrigin, extra string) *stack {
	t.Helper()
	return startStackIn(t, t.TempDir(), o, "disk_enabled = false\n"+extra, nil)
}

// startStackIn is startStack with a given data directory; stop shuts it down early.
func startStackIn(t testing.TB, dir string, o *scriptedOrigin, extra string, mod func(*config.CacheConfig)) *stack {
	t.Helper()
	logPath := filepath.Join(dir, "access.log")
	text := fmt.Sprintf(`data_dir = %q
[proxy]
listen = ["127.0.0.1:0"]
forward = true
[proxy.access_log]
destination = %q
[[proxy.routes]]
host = "*"
origins = [%q]
[cache]
memory_size = "16MiB"
%s
`, dir, logPath, o.URL, extra)
	path := filepath.Join(dir, "outpost.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Source{File: path, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg.Cache)
	}
	env := component.Test(dir)
	c, err := cache.New(cfg.Cache, env)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg.Proxy, env, proxy.Options{Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			<-done
		})
	}
	t.Cleanup(stop)
	return &stack{addr: strings.TrimPrefix(srv.Addrs()[0], "tcp "), logPath: logPath, cache: c, stop: stop}
}

// get sends a request to the proxy in reverse mode.
func (s *stack) get(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.addr+path, nil)
	req.Host = "site.test"
	for _, l := range hdr {
		k, v, _ := strings.Cut(l, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if s.host != "" {
		req.Host = s.host
	}
	resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// e2eStep is one request and its expectations.
type e2eStep struct {
	method string
	hdr    []string
	status int
	origin int
	cs     string
	body   string
}

func TestEndToEndRFC(t *testing.T) {
	fixed := func(status int, body string, fields ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for _, l := range fields {
				k, v, _ := strings.Cut(l, ":")
				w.Header().Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}
	revalidating := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("ETag", `"e1"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		if r.Header.Get("If-None-Match") == `"e1"` {
			w.WriteHeader(304)
			return
		}
		_, _ = io.WriteString(w, "stored body")
	}
	cases := []struct {
		name   string
		origin http.HandlerFunc
		steps  []e2eStep
		check  func(t *testing.T, o *scriptedOrigin)
	}{
		{"RFC 9111 §4.2.1 second GET within max-age: origin saw 1 request, Age and Cache-Status hit",
			fixed(200, "fresh", "Cache-Control: max-age=60"), []e2eStep{
				{origin: 1, cs: "fwd=uri-miss", body: "fresh"}, {origin: 1, cs: "outpost; hit", body: "fresh"},
			}, nil},
		{"RFC 9111 §4.3.1 conditional GET towards the origin: 304 refreshes, client gets 200 with the stored body",
			revalidating, []e2eStep{
				{origin: 1, body: "stored body"}, {origin: 2, cs: "fwd-status=304", body: "stored body"},
			}, func(t *testing.T, o *scriptedOrigin) {
				if h := o.last(); h.Get("If-None-Match") != `"e1"` || h.Get("If-Modified-Since") == "" {
					t.Errorf("origin saw %v", h)
				}
			}},
		{"RFC 9110 §13.1.2 a client's conditional request gets 304 from cache without the origin",
			fixed(200, "x", "Cache-Control: max-age=60", `ETag: "c"`), []e2eStep{
				{origin: 1}, {hdr: []string{`If-None-Match: "c"`}, status: 304, origin: 1, cs: "hit"},
			}, nil},
		{"RFC 9111 §4.1 Vary selects the variant",
			func(w http.ResponseWriter, r *http.Request) {
				fixed(200, "lang="+r.Header.Get("Accept-Language"), "Cache-Control: max-age=60", "Vary: Accept-Language")(w, r)
			}, []e2eStep{
				{hdr: []string{"Accept-Language: en"}, origin: 1, body: "lang=en"},
				{hdr: []string{"Accept-Language: de"}, origin: 2, body: "lang=de"},
				{hdr: []string{"Accept-Language: en"}, origin: 2, body: "lang=en", cs: "hit"},
			}, nil},
		{"RFC 9111 §5.2.2.5 no-store is not stored", fixed(200, "x", "Cache-Control: no-store"), []e2eStep{
			{origin: 1}, {origin: 2},
		}, nil},
		{"RFC 9111 §4.4 POST invalidates", fixed(200, "x", "Cache-Control: max-age=60"), []e2eStep{
			{origin: 1}, {origin: 1, cs: "hit"}, {method: "POST", origin: 2}, {origin: 3},
		}, nil},
		{"RFC 9111 §5.2.1.7 only-if-cached on a miss is 504", fixed(200, "x", "Cache-Control: max-age=60"), []e2eStep{
			{hdr: []string{"Cache-Control: only-if-cached"}, status: 504, origin: 0},
		}, nil},
		{"RFC 9110 §14.2 Range from a stored response", fixed(200, "0123456789", "Cache-Control: max-age=60"), []e2eStep{
			{origin: 1}, {hdr: []string{"Range: bytes=3-5"}, status: 206, origin: 1, body: "345"},
		}, nil},
		{"RFC 9111 §4.3.5 HEAD from a stored GET", fixed(200, "hello", "Cache-Control: max-age=60"), []e2eStep{
			{origin: 1}, {method: "HEAD", origin: 1, cs: "hit", body: ""},
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newScriptedOrigin(t, tc.origin)
			s := startStack(t, o, "")
			for i, st := range tc.steps {
				m := st.method
				if m == "" {
					m = "GET"
				}
				resp, body := s.get(t, m, "/r", st.hdr...)
				want := st.status
				if want == 0 {
					want = 200
				}
				cs := strings.Join(resp.Header.Values("Cache-Status"), ", ")
				if resp.StatusCode != want {
					t.Errorf("step %d: status %d, want %d (%s)", i, resp.StatusCode, want, cs)
				}
				if o.count() != st.origin {
					t.Errorf("step %d: origin saw %d, want %d (%s)", i, o.count(), st.origin, cs)
				}
				if !strings.Contains(cs, st.cs) {
					t.Errorf("step %d: Cache-Status %q, want %q", i, cs, st.cs)
				}
				if st.body != "" && body != st.body {
					t.Errorf("step %d: body %q, want %q", i, body, st.body)
				}
				if strings.Contains(cs, "hit") && resp.Header.Get("Age") == "" {
					t.Errorf("step %d: hit without Age", i)
				}
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

// TestEndToEndCollapse is acceptance 3 through the proxy: 100 concurrent clients for a cold
// 1 MiB object make one origin request and all receive the whole body.
func TestEndToEndCollapse(t *testing.T) {
	body := bytes.Repeat([]byte("abcdefghijklmnop"), 1<<16)
	release := make(chan struct{})
	o := newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		<-release // the rest only once every client is collapsed onto this fetch
		_, _ = w.Write(body[len(body)/2:])
	})
	s := startStack(t, o, `collapse_timeout = "60s"`)
	go func() {
		deadline := time.Now().Add(60 * time.Second)
		for s.cache.Stats().Collapsed < 99 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling for an external effect, with a deadline
		}
		close(release)
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, got := s.get(t, "GET", "/big")
			if resp.StatusCode != 200 || got != string(body) {
				errs <- fmt.Errorf("status %d, %d bytes", resp.StatusCode, len(got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := o.count(); n != 1 {
		t.Fatalf("origin saw %d requests, want 1", n)
	}
	if c := s.cache.Stats().Collapsed; c != 99 {
		t.Fatalf("%d requests collapsed, want 99", c)
	}
}

// TestCurlTwiceHit is acceptance 6: `curl -x` through the proxy twice shows a hit the second
// time, in Cache-Status and in the access log.
func TestCurlTwiceHit(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (Debian package: curl)")
	}
	o := newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "curl body\n")
	})
	s := startStack(t, o, "")
	run := func() string {
		cmd := exec.Command(curl, "-sS", "-D", "-", "-o", os.DevNull, "-x", "http://"+s.addr, o.URL+"/curl")
		for _, kv := range os.Environ() { // a NO_PROXY naming 127.0.0.1 would bypass -x
			if k, _, _ := strings.Cut(kv, "="); !strings.EqualFold(k, "no_proxy") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		return string(out)
	}
	first, second := run(), run()
	if !strings.Contains(first, "Cache-Status: outpost; fwd=uri-miss") {
		t.Fatalf("first response:\n%s", first)
	}
	if !strings.Contains(second, "Cache-Status: outpost; hit") || !strings.Contains(second, "Age: ") {
		t.Fatalf("second response is not a hit:\n%s", second)
	}
	if o.count() != 1 {
		t.Fatalf("origin saw %d requests", o.count())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		log, _ := os.ReadFile(s.logPath)
		if strings.Contains(string(log), "TCP_MEM_HIT") && strings.Contains(string(log), "TCP_MISS") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log lacks TCP_MISS then TCP_MEM_HIT:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond) // the access log is flushed in the background
	}
}

// TestEndToEndDiskRestart is acceptance 4 through the proxy: objects cached on disk are
// served as hits after the proxy and cache are restarted on the same data directory.
func TestEndToEndDiskRestart(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 1<<20) // 10 MiB: over max_object_size, streamed to disk
	o := newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		if r.URL.Path == "/big" {
			_, _ = w.Write(big)
			return
		}
		_, _ = io.WriteString(w, "small "+r.URL.Path)
	})
	dir := t.TempDir()
	s := startStackIn(t, dir, o, "", nil)
	for _, p := range []string{"/small", "/big"} {
		if resp, _ := s.get(t, "GET", p); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	s.stop()
	s = startStackIn(t, dir, o, "", nil)
	for _, p := range []string{"/small", "/big"} {
		resp, body := s.get(t, "GET", p)
		want := "small " + p
		if p == "/big" {
			want = string(big)
		}
		if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "hit") || body != want {
			t.Fatalf("%s after restart: Cache-Status %q, %d bytes", p, cs, len(body))
		}
	}
	if n := o.count(); n != 2 {
		t.Fatalf("origin saw %d requests, want 2", n)
	}
}

// proxyDriver runs RFC table cases through the real proxy: reverse mode, default route, a
// scripted origin stamping Date from the clock the cache uses.
type proxyDriver struct {
	t   *testing.T
	clk *cache.FakeClock
	o   *scriptedOrigin
	s   *stack
	n   int
}

func newProxyDriver(t *testing.T, handler func(http.ResponseWriter, *http.Request, int), mod func(*config.CacheConfig)) cache.Driver {
	d := &proxyDriver{t: t, clk: cache.NewFakeClock()}
	var mu sync.Mutex
	d.o = newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		d.n++
		n := d.n
		mu.Unlock()
		w.Header().Set("Date", d.clk.Now().Format(http.TimeFormat))
		handler(w, r, n)
	})
	d.s = startStackIn(t, t.TempDir(), d.o, "disk_enabled = false\n", func(c *config.CacheConfig) {
		c.CollapseTimeout = 5 * time.Second
		if mod != nil {
			mod(c)
		}
	})
	d.s.host = "origin.test"
	cache.SetClock(d.s.cache, d.clk.Now)
	return d
}

func (d *proxyDriver) Do(method, path string, hdr ...string) cache.Response {
	resp, body := d.s.get(d.t, method, path, hdr...)
	cache.Settle(d.s.cache)
	return cache.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func (d *proxyDriver) Advance(dur time.Duration) { d.clk.Advance(dur) }
func (d *proxyDriver) OriginCount() int          { return d.o.count() }
func (d *proxyDriver) LastSeen() http.Header {
	if d.o.count() == 0 {
		return http.Header{}
	}
	return d.o.last()
}

// TestEndToEndRFCTable is acceptance 1: the whole RFC table, each case naming its section,
// driven through the real proxy against a scripted origin that records what it saw.
func TestEndToEndRFCTable(t *testing.T) {
	cache.RunRFCTable(t, newProxyDriver, nil)
}

// BenchmarkProxyHit measures a 1 KiB fresh hit through the real proxy and cache over loopback
// keep-alive connections (one per goroutine), client included.
func BenchmarkProxyHit(b *testing.B) {
	body := strings.Repeat("b", 1024)
	o := newScriptedOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, body)
	})
	s := startStackIn(b, b.TempDir(), o, "disk_enabled = false\n", nil)
	req := "GET /obj HTTP/1.1\r\nHost: site.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
	warm, err := net.Dial("tcp", s.addr)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.WriteString(warm, req)
	resp, _ := http.ReadResponse(bufio.NewReader(warm), nil)
	_, _ = io.Copy(io.Discard, resp.Body)
	warm.Close()
	cache.Settle(s.cache)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("tcp", s.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		br := bufio.NewReaderSize(conn, 16<<10)
		for pb.Next() {
			if _, err := io.WriteString(conn, req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.StopTimer()
	if o.count() != 1 {
		b.Fatalf("origin saw %d requests", o.count())
	}
}
