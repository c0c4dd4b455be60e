package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy"
)

// keyStack is the real proxy and cache started from configuration text with cache-key rules,
// and the admin endpoints on a real listener.
type keyStack struct {
	proxy, admin string // host:port, http://host:port
	curl         string
}

// startKeyStack starts the proxy with two reverse routes to o: site.test with every cache-key
// rule, plain.test with none; cache.debug_key is on.
func startKeyStack(t *testing.T, o *scriptedOrigin) *keyStack {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (Debian package: curl)")
	}
	dir := t.TempDir()
	text := fmt.Sprintf(`data_dir = %q
[proxy]
listen = ["127.0.0.1:0"]
[proxy.access_log]
destination = "off"
[[proxy.routes]]
host = "site.test"
origins = [%[2]q]
[proxy.routes.cache_key]
ignore_query = ["utm_*", "fbclid", "gclid"]
sort_query = true
include_headers = ["x-device"]
lowercase_path = true
[[proxy.routes]]
host = "plain.test"
origins = [%[2]q]
[cache]
memory_size = "16MiB"
disk_enabled = false
debug_key = true
`, dir, o.URL)
	path := filepath.Join(dir, "outpost.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Source{File: path, Env: []string{}})
	if err != nil {
		t.Fatal(err)
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
	admin := httptest.NewServer(env.Admin)
	t.Cleanup(func() {
		admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return &keyStack{proxy: strings.TrimPrefix(srv.Addrs()[0], "tcp "), admin: admin.URL, curl: curl}
}

// curlResult is one curl exchange: the response head's fields and the body.
type curlResult struct {
	status int
	header http.Header
	body   string
}

// run runs curl with args (the URL among them) and parses what it printed (-i).
func (s *keyStack) run(t *testing.T, args ...string) curlResult {
	t.Helper()
	cmd := exec.Command(s.curl, append([]string{"-sS", "-i", "--max-time", "10"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no proxy variables
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	head, body, _ := strings.Cut(string(out), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	res := curlResult{header: http.Header{}, body: body}
	_, _ = fmt.Sscanf(lines[0], "HTTP/1.1 %d", &res.status)
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		res.header.Add(k, strings.TrimSpace(v))
	}
	return res
}

// get sends a GET through the proxy to host with request fields hdr.
func (s *keyStack) get(t *testing.T, host, target string, hdr ...string) curlResult {
	args := []string{"-H", "Host: " + host}
	for _, h := range hdr {
		args = append(args, "-H", h)
	}
	return s.run(t, append(args, "http://"+s.proxy+target)...)
}

// TestEndToEndKeyRules is issue 14 acceptance 1 for the key rules: curl through the real proxy.
func TestEndToEndKeyRules(t *testing.T) {
	o := newScriptedOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, r.URL.RequestURI()+" device="+r.Header.Get("X-Device"))
	})
	s := startKeyStack(t, o)
	type want struct {
		origin int    // cumulative origin requests after the step
		cs     string // in Cache-Status
		body   string // "" to skip
	}
	steps := []struct {
		name   string
		host   string
		target string
		hdr    []string
		want   want
	}{
		{"utm_ ignored: miss", "site.test", "/p?id=1&utm_source=news", nil, want{1, `fwd=uri-miss; fwd-status=200; stored; key="http://site.test/p?id=1"`, "/p?id=1&utm_source=news device="}},
		{"utm_ ignored: other utm_, fbclid and gclid are a hit", "site.test", "/p?utm_medium=mail&fbclid=x&id=1&gclid=y", nil, want{1, `hit; key="http://site.test/p?id=1"`, "/p?id=1&utm_source=news device="}},
		{"sort_query: miss", "site.test", "/s?b=2&a=1", nil, want{2, `key="http://site.test/s?a=1&b=2"`, ""}},
		{"sort_query: the other order is a hit", "site.test", "/s?a=1&b=2", nil, want{2, "hit", "/s?b=2&a=1 device="}},
		{"include_headers: mobile miss", "site.test", "/h", []string{"X-Device: mobile"}, want{3, `key="http://site.test/h X-Device: mobile"`, "/h device=mobile"}},
		{"include_headers: mobile hit", "site.test", "/h", []string{"X-Device: mobile"}, want{3, "hit", "/h device=mobile"}},
		{"include_headers: desktop is another key", "site.test", "/h", []string{"X-Device: desktop"}, want{4, "fwd=uri-miss", "/h device=desktop"}},
		{"include_headers: none is another key", "site.test", "/h", nil, want{5, `key="http://site.test/h"`, "/h device="}},
		{"lowercase_path: miss", "site.test", "/Lower/X", nil, want{6, `key="http://site.test/lower/x"`, ""}},
		{"lowercase_path: other case is a hit", "site.test", "/lower/x", nil, want{6, "hit", "/Lower/X device="}},
		{"no rules: path case kept", "plain.test", "/Lower/X", nil, want{7, `key="http://plain.test/Lower/X"`, ""}},
		{"no rules: other case is a miss", "plain.test", "/lower/x", nil, want{8, "fwd=uri-miss", ""}},
		{"no rules: utm_ kept", "plain.test", "/p?id=1&utm_source=a", nil, want{9, "fwd=uri-miss", ""}},
		{"no rules: other utm_ is a miss", "plain.test", "/p?id=1&utm_source=b", nil, want{10, "fwd=uri-miss", ""}},
	}
	for i, st := range steps {
		res := s.get(t, st.host, st.target, st.hdr...)
		cs := strings.Join(res.header.Values("Cache-Status"), ", ")
		if res.status != 200 || !strings.Contains(cs, st.want.cs) || o.count() != st.want.origin ||
			st.want.body != "" && res.body != st.want.body {
			t.Errorf("step %d (%s): %d, Cache-Status %q, origin %d, body %q; want Cache-Status with %q, origin %d, body %q",
				i, st.name, res.status, cs, o.count(), res.body, st.want.cs, st.want.origin, st.want.body)
		}
	}

	// GET /cache/explain?url= shows the key, the rules and freshness.
	var ex cache.Explanation
	q := url.Values{"url": {"http://site.test/p?utm_campaign=z&id=1"}}
	if res := s.run(t, s.admin+"/cache/explain?"+q.Encode()); res.status != 200 || json.Unmarshal([]byte(res.body), &ex) != nil {
		t.Fatalf("explain: %d %s", res.status, res.body)
	}
	if ex.Key != "http://site.test/p?id=1" || !ex.Stored || !ex.Fresh || ex.TTLSeconds <= 0 || !ex.Rules.SortQuery || len(ex.Rules.IgnoreQuery) != 3 {
		t.Errorf("explain: %+v", ex)
	}
	q = url.Values{"url": {"http://site.test/h"}, "header": {"X-Device: desktop"}}
	if res := s.run(t, s.admin+"/cache/explain?"+q.Encode()); json.Unmarshal([]byte(res.body), &ex) != nil || ex.Key != "http://site.test/h X-Device: desktop" || !ex.Stored {
		t.Errorf("explain with a header: %s", res.body)
	}
	q = url.Values{"url": {"http://plain.test/nothing"}}
	if res := s.run(t, s.admin+"/cache/explain?"+q.Encode()); json.Unmarshal([]byte(res.body), &ex) != nil || ex.Stored || ex.Key != "http://plain.test/nothing" {
		t.Errorf("explain of nothing stored: %s", res.body)
	}
	if res := s.run(t, s.admin+"/cache/explain?url=nope"); res.status != 400 {
		t.Errorf("explain of a relative URL: %d", res.status)
	}

	// PURGE by URL through the proxy applies the route's rules: another utm_ order purges /p.
	res := s.run(t, "-X", "PURGE", "-H", "Host: site.test", "http://"+s.proxy+"/p?utm_x=1&id=1")
	if res.status != 200 || !strings.Contains(res.body, `"purged":1`) {
		t.Errorf("PURGE: %d %s", res.status, res.body)
	}
	if res := s.get(t, "site.test", "/p?id=1"); !strings.Contains(res.header.Get("Cache-Status"), "fwd=uri-miss") || o.count() != 11 {
		t.Errorf("after PURGE: Cache-Status %q, origin %d", res.header.Get("Cache-Status"), o.count())
	}
	// The admin's purge by URL too, and it removes every include_headers variant of the URL.
	res = s.run(t, "-d", "url=http://site.test/H", s.admin+"/cache/purge")
	if res.status != 200 || !strings.Contains(res.body, `"purged":3`) {
		t.Errorf("admin purge: %d %s", res.status, res.body)
	}
	if res := s.get(t, "site.test", "/h", "X-Device: mobile"); !strings.Contains(res.header.Get("Cache-Status"), "fwd=uri-miss") || o.count() != 12 {
		t.Errorf("after the admin purge: Cache-Status %q, origin %d", res.header.Get("Cache-Status"), o.count())
	}
	// A purge by URL of the rule-less route keeps its key as it is.
	res = s.run(t, "-d", "url=http://plain.test/lower/x", s.admin+"/cache/purge")
	if !strings.Contains(res.body, `"purged":1`) {
		t.Errorf("admin purge without rules: %s", res.body)
	}
	if res := s.get(t, "plain.test", "/Lower/X"); !strings.Contains(res.header.Get("Cache-Status"), "hit") {
		t.Errorf("/Lower/X was purged with /lower/x: %q", res.header.Get("Cache-Status"))
	}
}
