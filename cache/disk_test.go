package cache

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// diskConfig turns the disk tier on in dir with a small memory object limit.
func diskConfig(dir string) func(*config.CacheConfig) {
	return func(c *config.CacheConfig) {
		c.DiskEnabled = true
		c.DiskDir = dir
		c.MaxObjectSize = 64 << 10
		c.DiskSize = 64 << 20
	}
}

// bodyFor is the deterministic body of a test object.
func bodyFor(path string, size int) []byte {
	b := bytes.Repeat([]byte(path+"|"), size/(len(path)+1)+1)
	return b[:size]
}

// sizedOrigin serves bodyFor(path, size) where size is the "n" query parameter.
func sizedOrigin(w http.ResponseWriter, r *http.Request, _ int) {
	var size int
	fmt.Sscanf(r.URL.Query().Get("n"), "%d", &size)
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Header().Set("Content-Length", fmt.Sprint(size))
	_, _ = w.Write(bodyFor(r.URL.Path, size))
}

// reopen closes h's cache and opens a new one on the same configuration, as a restart does.
func reopen(t *testing.T, h *harness, mod func(*config.CacheConfig)) {
	t.Helper()
	if err := h.c.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Cache
	cfg.CollapseTimeout = 5 * time.Second
	mod(&cfg)
	c, err := New(cfg, component.Test(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	c.now = h.clk.Now
	h.c = c
	t.Cleanup(func() { c.Close() })
}

// TestDiskRestart is acceptance 4 (first half): fill, restart, hits served from disk — small
// objects (written behind the memory tier) and large ones (streamed to client and disk at once).
func TestDiskRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, sizedOrigin, diskConfig(dir))
	paths := []string{"/small?n=1000", "/medium?n=60000", "/large?n=300000", "/large2?n=1048576"}
	for _, p := range paths {
		if res := h.do("GET", p); res.status != 200 || res.out.Code != CodeMiss {
			t.Fatalf("%s: %d %s", p, res.status, res.out.Code)
		}
	}
	if res := h.do("GET", "/large?n=300000"); !res.out.Hit || res.out.Code != CodeHit {
		t.Fatalf("large object not served from disk before restart: %+v", res.out)
	}
	reopen(t, h, diskConfig(dir))
	for _, p := range paths {
		res := h.do("GET", p)
		u := strings.SplitN(p, "?", 2)[0]
		var n int
		fmt.Sscanf(strings.SplitN(p, "=", 2)[1], "%d", &n)
		if !res.out.Hit || res.body != string(bodyFor(u, n)) {
			t.Fatalf("%s after restart: %+v, %d bytes", p, res.out, len(res.body))
		}
		if !strings.Contains(res.header.Get("Cache-Status"), "hit") {
			t.Fatalf("%s: Cache-Status %q", p, res.header.Get("Cache-Status"))
		}
	}
	if got := h.originCount(); got != len(paths) {
		t.Fatalf("origin saw %d requests, want %d", got, len(paths))
	}
	if res := h.do("GET", "/large2?n=1048576", "Range: bytes=1048570-"); res.status != 206 || res.body != string(bodyFor("/large2", 1048576)[1048570:]) {
		t.Fatalf("range from disk: %d %q", res.status, res.body)
	}
}

// TestDiskCorruption: a damaged, truncated or half-written file is never served.
func TestDiskCorruption(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, sizedOrigin, diskConfig(dir))
	for _, p := range []string{"/a?n=5000", "/b?n=5000", "/c?n=200000"} {
		h.do("GET", p)
	}
	h.c.Close()
	files := map[string]string{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			for _, k := range []string{"/a", "/b", "/c"} {
				if bytes.Contains(data, []byte(`"key":"http://origin.test`+k+"?")) {
					files[k] = p
				}
			}
		}
		return nil
	})
	if len(files) != 3 {
		t.Fatalf("found %d entry files: %v", len(files), files)
	}
	flip := func(p string, off int64) {
		f, _ := os.OpenFile(p, os.O_RDWR, 0)
		b := []byte{0}
		_, _ = f.ReadAt(b, off)
		b[0] ^= 0xff
		_, _ = f.WriteAt(b, off)
		f.Close()
	}
	flip(files["/a"], 100)                    // body damaged: checksum fails
	st, _ := os.Stat(files["/b"])             //
	_ = os.Truncate(files["/b"], st.Size()-7) // torn: size does not add up
	flip(files["/c"], 150000)                 // large body damaged
	_ = os.WriteFile(filepath.Join(dir, tmpPrefix+"123"), []byte("OPC1 half"), 0o600)
	reopen(t, h, diskConfig(dir))
	for _, p := range []string{"/a?n=5000", "/b?n=5000", "/c?n=200000"} {
		res := h.do("GET", p)
		u := strings.SplitN(p, "?", 2)[0]
		var n int
		fmt.Sscanf(strings.SplitN(p, "=", 2)[1], "%d", &n)
		if res.body != string(bodyFor(u, n)) {
			t.Fatalf("%s: corrupt body served (%s)", p, res.out.Code)
		}
		if res.out.Hit {
			t.Fatalf("%s: a damaged entry was served as a hit", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"123")); err == nil {
		t.Fatal("temporary file left behind by the start-up scan")
	}
}

// TestDiskEviction: the disk tier stays within its budget.
func TestDiskEviction(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *config.CacheConfig) {
		diskConfig(dir)(c)
		c.DiskSize = 1 << 20
		c.MemorySize = 0
	}
	h := newHarness(t, sizedOrigin, mod)
	for i := range 20 {
		h.do("GET", fmt.Sprintf("/e%d?n=100000", i))
		h.clk.Advance(time.Second)
	}
	h.c.Close()
	n, used := h.c.st.disk.usage()
	if used > 1<<20 || n == 0 {
		t.Fatalf("disk tier holds %d files, %d bytes; budget 1 MiB", n, used)
	}
	if h.c.stats.diskEvictions.Load() == 0 {
		t.Fatal("no evictions counted")
	}
}

// TestDiskCrashChild is the child process of TestDiskKill9: it stores objects until killed.
func TestDiskCrashChild(t *testing.T) {
	dir := os.Getenv("OUTPOST_CACHE_CRASH_DIR")
	if dir == "" {
		t.Skip("child process of TestDiskKill9")
	}
	h := newHarness(t, sizedOrigin, diskConfig(dir))
	for i := 0; i < 100000; i++ {
		size := 1000 + (i%7)*40000 // small ones go through the write queue, large ones stream
		h.do("GET", fmt.Sprintf("/k%d?n=%d", i, size))
		fmt.Printf("stored %d\n", i)
	}
}

// TestDiskKill9 is acceptance 4 (second half): a process killed with SIGKILL in the middle of
// writes leaves no entry that is served corrupt.
func TestDiskKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), "OUTPOST_CACHE_CRASH_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	stored := 0
	for sc.Scan() && stored < 60 {
		if strings.HasPrefix(sc.Text(), "stored ") {
			stored++
		}
	}
	_ = cmd.Process.Kill() // SIGKILL, mid-write
	_ = cmd.Wait()
	if stored < 60 {
		t.Fatalf("child stored only %d objects", stored)
	}
	h := newHarness(t, sizedOrigin, diskConfig(dir))
	items := h.c.st.disk
	n, _ := items.usage()
	if n == 0 {
		t.Fatal("nothing survived on disk")
	}
	served := 0
	for i := 0; i < stored+5; i++ {
		size := 1000 + (i%7)*40000
		p := fmt.Sprintf("/k%d", i)
		res := h.do("GET", fmt.Sprintf("%s?n=%d", p, size))
		if res.body != string(bodyFor(p, size)) {
			t.Fatalf("%s: wrong body after kill -9 (%s)", p, res.out.Code)
		}
		if res.out.Hit {
			served++
		}
	}
	if served == 0 {
		t.Fatal("no object was served from disk after the restart")
	}
	t.Logf("%d files survived, %d served from disk", n, served)
}

// TestDiskRevalidate: a disk-only object is revalidated with its ETag and a 304 refreshes it.
func TestDiskRevalidate(t *testing.T) {
	dir := t.TempDir()
	body := bodyFor("/big", 300000)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"big"`)
		if r.Header.Get("If-None-Match") == `"big"` {
			w.WriteHeader(304)
			return
		}
		_, _ = w.Write(body)
	}, diskConfig(dir))
	h.do("GET", "/big")
	h.clk.Advance(20 * time.Second)
	res := h.do("GET", "/big")
	if res.out.Code != CodeRefreshHit || res.body != string(body) || h.originCount() != 2 {
		t.Fatalf("revalidation: %+v, %d bytes, origin %d", res.out, len(res.body), h.originCount())
	}
	h.clk.Advance(5 * time.Second)
	if res := h.do("GET", "/big"); res.out.Code != CodeHit || res.body != string(body) || h.originCount() != 2 {
		t.Fatalf("after refresh: %+v, origin %d", res.out, h.originCount())
	}
	reopen(t, h, diskConfig(dir)) // the refreshed metadata was written to the file
	if res := h.do("GET", "/big"); res.out.Code != CodeHit || res.body != string(body) || h.originCount() != 2 {
		t.Fatalf("after restart: %+v, origin %d", res.out, h.originCount())
	}
}

// TestDiskLRUCountsMemoryHits: an object kept hot by memory hits survives disk eviction, so a
// warm restart keeps the popular objects.
func TestDiskLRUCountsMemoryHits(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, sizedOrigin, func(c *config.CacheConfig) {
		diskConfig(dir)(c)
		c.MaxObjectSize = 1 << 20
		c.DiskSize = 1 << 20
	})
	h.do("GET", "/hot?n=100000")
	for i := range 20 {
		h.clk.Advance(time.Second)
		h.do("GET", fmt.Sprintf("/cold%d?n=100000", i))
		if res := h.do("GET", "/hot?n=100000"); res.out.Code != CodeMemHit {
			t.Fatalf("hot object not a memory hit: %+v", res.out)
		}
	}
	h.c.Close() // drains the disk write queue
	key := "http://origin.test/hot?n=100000"
	if h.c.st.disk.get(primaryHash(key)) == nil {
		d := h.c.st.disk
		d.mu.Lock()
		for _, it := range d.items {
			t.Logf("%s atime %d", it.e.key, it.atime.Load()-h.clk.Now().Unix())
		}
		d.mu.Unlock()
		t.Fatal("the hot object was evicted from the disk tier")
	}
	if h.c.stats.diskEvictions.Load() == 0 {
		t.Fatal("no disk evictions: the test did not fill the tier")
	}
}
