package ftp

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestReplyCodes: replies where the library's own code is not RFC 959's: a REST marker that is
// not a byte count (501), and a passive listener that cannot be opened (425, not 421).
func TestReplyCodes(t *testing.T) {
	// The only passive port is held by this listener, so PASV and EPSV cannot listen.
	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	cfg := testConfig(t)
	cfg.PassivePortMin, cfg.PassivePortMax = port, port
	ts := startFTP(t, cfg)
	c := ts.login(t, "alice", "wonderland")
	expect(t, c, 200, "TYPE I")
	for _, tc := range []struct {
		name, cmd string
		want      int
	}{
		{"REST non-numeric", "REST x", 501},
		{"REST negative", "REST -5", 501},
		{"REST empty", "REST", 501},
		{"REST overflow", "REST 99999999999999999999", 501},
		{"REST byte count", "REST 10", 350},
		{"REST zero", "REST 0", 350},
		{"PASV without a free port", "PASV", 425},
		{"EPSV without a free port", "EPSV", 425},
		{"still usable after 425", "NOOP", 200},
	} {
		t.Run(tc.name, func(t *testing.T) { expect(t, c, tc.want, "%s", tc.cmd) })
	}
}

// TestCreatedModes: uploads are created 0644 (never executable), directories 0755.
func TestCreatedModes(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022)) // the usual umask, whatever the test runner's
	ts := startFTP(t, testConfig(t))
	c := dialGo(t, ts, "alice", "wonderland")
	if err := c.Stor("up.txt", bytes.NewReader([]byte("hello\n"))); err != nil {
		t.Fatal(err)
	}
	if err := c.MakeDir("newdir"); err != nil {
		t.Fatal(err)
	}
	if err := c.Append("appended.txt", bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want os.FileMode
	}{
		{"up.txt", 0o644},
		{"appended.txt", 0o644},
		{"newdir", 0o755 | os.ModeDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(ts.dir, "alice", tc.name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != tc.want {
				t.Fatalf("mode %v, want %v", got, tc.want)
			}
		})
	}
}
