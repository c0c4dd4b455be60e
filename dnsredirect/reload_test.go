package dnsredirect

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outpost-proxy/outpost/dnsredirect/geodb"
	"github.com/outpost-proxy/outpost/internal/component"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const reloadBase = `
[dns]
listen = "127.0.0.1:0"
udp_sockets = 1
watch_interval = "0s"
[dns.rrl]
enabled = false
[[dns.zones]]
name = "cdn.test"
records = ["@ IN SOA ns1.cdn.test. h.cdn.test. 1 7200 3600 1209600 60", "@ IN NS ns1.cdn.test.", "ns1 IN A 127.0.0.1"]
[[dns.edges]]
name = "edge1"
addrs = ["EDGE_ADDR"]
[[dns.pools]]
name = "p"
edges = ["edge1"]
[[dns.dynamic]]
name = "www.cdn.test"
pool = "p"
`

// TestReload is acceptance point 4: a changed edge address is answered after Reload (here from
// a SIGHUP handler wired as cmd/outpost wires it); a broken configuration is rejected with a
// logged error and the old answers keep coming.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "outpost.toml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(reloadBase, "EDGE_ADDR", "127.0.0.11", 1))
	var logs lockedBuffer
	env := component.Test(dir)
	env.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := New(loadDNS(t, mustRead(t, file)), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	ts := &testServer{Server: s, addr: strings.TrimPrefix(s.Addrs()[0], "udp "), env: env}

	// SIGHUP → re-read the file → Reload, as `outpost up` does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	results := make(chan error)
	go func() {
		for range hup {
			cfg, err := tryLoadDNS(mustRead(t, file))
			if err == nil {
				err = s.Reload(cfg)
			}
			results <- err
		}
	}()
	sighup := func() error {
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		select {
		case err := <-results:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("no reload after SIGHUP")
			return nil
		}
	}

	if got := addrs(ts.exchange(t, "udp", newQuery("www.cdn.test.", dns.TypeA, false, "")).Answer); len(got) != 1 || got[0] != "127.0.0.11" {
		t.Fatalf("before reload: %v", got)
	}
	write(strings.Replace(reloadBase, "EDGE_ADDR", "127.0.0.21", 1))
	if err := sighup(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := addrs(ts.exchange(t, "udp", newQuery("www.cdn.test.", dns.TypeA, false, "")).Answer); len(got) != 1 || got[0] != "127.0.0.21" {
		t.Errorf("after reload: %v, want 127.0.0.21", got)
	}
	for _, broken := range []struct{ name, cfg string }{
		{"bad record", strings.Replace(strings.Replace(reloadBase, "EDGE_ADDR", "127.0.0.31", 1), "ns1 IN A 127.0.0.1", "ns1 IN A 999.0.0.1", 1)},
		{"unknown pool", strings.Replace(strings.Replace(reloadBase, "EDGE_ADDR", "127.0.0.31", 1), `pool = "p"`, `pool = "nope"`, 1)},
	} {
		cfg, err := tryLoadDNS(broken.cfg)
		if err == nil {
			err = s.Reload(cfg)
		}
		if err == nil {
			t.Errorf("%s: reload accepted", broken.name)
		}
		if got := addrs(ts.exchange(t, "udp", newQuery("www.cdn.test.", dns.TypeA, false, "")).Answer); len(got) != 1 || got[0] != "127.0.0.21" {
			t.Errorf("%s: after a rejected reload: %v, want the old 127.0.0.21", broken.name, got)
		}
	}
	if !strings.Contains(logs.String(), "reload rejected") {
		t.Errorf("rejected reload not logged:\n%s", logs.String())
	}
}

// TestReloadOnZoneFileChange checks that a changed zone file is picked up by the watcher, and a
// broken one is not.
func TestReloadOnZoneFileChange(t *testing.T) {
	dir := t.TempDir()
	zf := filepath.Join(dir, "z.zone")
	zone := "$ORIGIN files.test.\n$TTL 60\n@ IN SOA ns1 h 1 7200 3600 1209600 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.1\n"
	if err := os.WriteFile(zf, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := loadDNS(t, `
[dns]
listen = "127.0.0.1:0"
udp_sockets = 1
watch_interval = "20ms"
[[dns.zones]]
name = "files.test"
file = "z.zone"
`)
	ts := startServerCfg(t, cfg, dir)
	get := func() []string {
		return addrs(ts.exchange(t, "udp", newQuery("www.files.test.", dns.TypeA, false, "")).Answer)
	}
	if got := get(); len(got) != 1 || got[0] != "192.0.2.1" {
		t.Fatalf("before: %v", got)
	}
	os.WriteFile(zf, []byte(strings.Replace(zone, "192.0.2.1", "192.0.2.222", 1)+"; changed\n"), 0o644)
	deadline := time.Now().Add(10 * time.Second)
	for got := get(); len(got) != 1 || got[0] != "192.0.2.222"; got = get() {
		if time.Now().After(deadline) {
			t.Fatalf("zone file change not picked up: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(zf, []byte("this is not a zone file\n"), 0o644)
	deadline = time.Now().Add(300 * time.Millisecond) // a few watch intervals
	for time.Now().Before(deadline) {
		if got := get(); len(got) != 1 || got[0] != "192.0.2.222" {
			t.Fatalf("broken zone file replaced the old answers: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustRead(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReloadOnDatabaseChange swaps the City database under a running server: the watcher
// reloads it and the geo answers follow (a real GeoLite2 file is dropped in the same way).
func TestReloadOnDatabaseChange(t *testing.T) {
	dir := t.TempDir()
	text := strings.Replace(testZones, `watch_interval = "0s"`, `watch_interval = "20ms"`, 1)
	ts := startServerCfg(t, loadDNS(t, text), dir)
	get := func() []string {
		return addrs(ts.exchange(t, "udp", newQuery("www.cdn.test.", dns.TypeA, true, "203.0.113.0/24")).Answer)
	}
	if got := get(); len(got) != 1 || got[0] != "127.0.0.13" {
		t.Fatalf("before: %v", got)
	}
	// 203.0.113.0/24 moves to Frankfurt, next to edge1.
	csv := strings.Replace(string(geodb.DemoCSV), "203.0.113.0/24,JP,AS,35.6762,139.6503", "203.0.113.0/24,DE,EU,50.1,8.7", 1)
	tmp := filepath.Join(dir, "moved.csv")
	if err := os.WriteFile(tmp, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := geodb.BuildFile(geodb.City, tmp, nil, filepath.Join(dir, "geoip/city.mmdb")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got := get(); len(got) != 1 || got[0] != "127.0.0.11"; got = get() {
		if time.Now().After(deadline) {
			t.Fatalf("database change not picked up: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
