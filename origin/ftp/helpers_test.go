package ftp

import (
	"bytes"
	"crypto/rand"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/componenttest"
	"github.com/outpost-proxy/outpost/internal/config"
)

// testServer is a running FTP server and its data directory.
type testServer struct {
	srv  *Server
	addr string // host:port of the control listener
	dir  string // the FTP root
}

// testConfig is a server on an ephemeral port with the demo users (cheap bcrypt hashes) and
// fast failure delays.
func testConfig(t testing.TB) config.FTPConfig {
	t.Helper()
	cfg := config.Default().FTP
	cfg.Listen = "127.0.0.1:0"
	cfg.LoginFailureDelay = 10 * time.Millisecond
	for _, u := range [][2]string{{"alice", "wonderland"}, {"bob", "builder"}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users = append(cfg.Users, config.FTPUser{Name: u[0], PasswordHash: string(h)})
	}
	return cfg
}

// startFTP runs a server with cfg over a fresh data directory.
func startFTP(t testing.TB, cfg config.FTPConfig) *testServer {
	t.Helper()
	return startFTPIn(t, cfg, t.TempDir())
}

// startFTPIn runs a server with cfg over the data directory data.
func startFTPIn(t testing.TB, cfg config.FTPConfig, data string) *testServer {
	t.Helper()
	s, err := New(cfg, component.Test(data))
	if err != nil {
		t.Fatal(err)
	}
	componenttest.Start(t, s)
	return &testServer{srv: s, addr: s.ln.Addr().String(), dir: filepath.Join(data, "ftp")}
}

// control opens a raw control connection and reads the greeting.
func (ts *testServer) control(t testing.TB) *textproto.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := textproto.NewConn(nc)
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c
}

// login opens a control connection logged in as user.
func (ts *testServer) login(t testing.TB, user, pass string) *textproto.Conn {
	t.Helper()
	c := ts.control(t)
	expect(t, c, 331, "USER %s", user)
	expect(t, c, 230, "PASS %s", pass)
	return c
}

// expect sends a command and checks the reply code; it returns the reply text.
func expect(t testing.TB, c *textproto.Conn, code int, format string, args ...any) string {
	t.Helper()
	if _, err := c.Cmd(format, args...); err != nil {
		t.Fatal(err)
	}
	got, msg, err := c.ReadResponse(0)
	if err != nil && got == 0 {
		t.Fatalf("%s: %v", format, err)
	}
	if got != code {
		t.Fatalf("%q: reply %d %s, want %d", strings.SplitN(format, " ", 2)[0], got, msg, code)
	}
	return msg
}

// binaryFile writes n random bytes with CR, LF and NUL sprinkled in and returns its path.
func binaryFile(t testing.TB, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	copy(b, []byte("\r\n\n\r\x00\xff"))
	p := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// run runs a client program with a 30s deadline and returns its output.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	return clienttest.Run(t, 30*time.Second, name, args...)
}

// sameFile checks that a file on disk holds want.
func sameFile(t testing.TB, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d expected", path, len(got), len(want))
	}
}

// dialGo logs in with github.com/jlaffaye/ftp.
func dialGo(t testing.TB, ts *testServer, user, pass string) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(ts.addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login(user, pass); err != nil {
		t.Fatal(err)
	}
	return c
}
