package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBinaryKeyRules runs the real binary with a route's [proxy.routes.cache_key] and drives it
// with curl: utm_ parameters in any order hit the stored object, Cache-Status shows the key
// (cache.debug_key), /cache/explain on the admin listener explains it, and a PURGE naming the
// URL with other tracking parameters removes it.
func TestBinaryKeyRules(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (Debian package: curl)")
	}
	var hits atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "page "+r.URL.RequestURI())
	}))
	defer origin.Close()
	proxyAddr, dir := freePort(t), t.TempDir()
	cfg := filepath.Join(dir, "outpost.toml")
	text := fmt.Sprintf(`data_dir = %q
[admin]
listen = "127.0.0.1:0"
[proxy]
listen = [%q]
[[proxy.routes]]
host = "www.site.test"
origins = [%q]
[proxy.routes.cache_key]
ignore_query = ["utm_*", "fbclid", "gclid"]
sort_query = true
[cache]
disk_enabled = false
debug_key = true
[dns]
enabled = false
[web]
enabled = false
[ftp]
enabled = false
[mail]
enabled = false
`, filepath.Join(dir, "var"), proxyAddr, origin.URL)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, lines := startBinary(t, nil, "up", "--config", cfg)
	admin := ""
	var seen []string
	for timeout := time.After(60 * time.Second); admin == ""; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("outpost exited:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if m := adminLine.FindStringSubmatch(l); m != nil {
				admin = m[1]
			}
		case <-timeout:
			t.Fatalf("no admin address logged:\n%s", strings.Join(seen, "\n"))
		}
	}
	go func() {
		for range lines { // keep draining stderr
		}
	}()
	waitReady(t, admin, 60*time.Second)
	run := func(args ...string) string {
		cmd := exec.Command(curl, append([]string{"-sS", "-i", "--max-time", "10"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		return string(out)
	}
	get := func(target string) string {
		return run("-H", "Host: www.site.test", "http://"+proxyAddr+target)
	}
	if out := get("/a?id=1&utm_source=x"); !strings.Contains(out, "fwd=uri-miss") {
		t.Fatalf("first GET:\n%s", out)
	}
	out := get("/a?utm_medium=y&fbclid=z&id=1")
	if !strings.Contains(out, "Cache-Status: outpost; hit") || !strings.Contains(out, `key="http://www.site.test/a?id=1"`) || hits.Load() != 1 {
		t.Fatalf("second GET (origin saw %d):\n%s", hits.Load(), out)
	}
	ex := run("http://" + admin + "/cache/explain?url=http%3A%2F%2Fwww.site.test%2Fa%3Fgclid%3D1%26id%3D1")
	if !strings.Contains(ex, `"key": "http://www.site.test/a?id=1"`) || !strings.Contains(ex, `"stored": true`) || !strings.Contains(ex, `"fresh": true`) {
		t.Fatalf("explain:\n%s", ex)
	}
	if out := run("-X", "PURGE", "-H", "Host: www.site.test", "http://"+proxyAddr+"/a?utm_campaign=q&id=1"); !strings.Contains(out, `"purged":1`) {
		t.Fatalf("PURGE:\n%s", out)
	}
	if out := get("/a?id=1"); !strings.Contains(out, "fwd=uri-miss") || hits.Load() != 2 {
		t.Fatalf("after PURGE (origin saw %d):\n%s", hits.Load(), out)
	}
}
