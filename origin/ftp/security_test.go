package ftp

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJail is acceptance 2: no command reaches outside the user's root.
func TestJail(t *testing.T) {
	ts := startFTP(t, testConfig(t))
	home := filepath.Join(ts.dir, "alice")
	outside := filepath.Join(filepath.Dir(ts.dir), "outside")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(home, "escape"))
	os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(home, "secret-link"))
	os.Symlink("/etc", filepath.Join(home, "etc"))
	os.Mkdir(filepath.Join(home, "inner"), 0o755)
	os.Symlink("../welcome.txt", filepath.Join(home, "inner", "ok-link"))

	c := ts.login(t, "alice", "wonderland")
	cases := []struct {
		cmd  string
		code int
	}{
		{"TYPE I", 200},
		{"CWD ../..", 550},
		{"CWD ..", 550},
		{"XCWD ../../../etc", 550},
		{"CDUP", 550},
		{"CWD /../..", 550},
		{"PASV", 227},
		{"RETR ../../etc/passwd", 550},
		{"PASV", 227},
		{"RETR /../../../etc/passwd", 550},
		{"SIZE ../bob/welcome.txt", 550},
		{"MDTM ../../outside/secret.txt", 550},
		{"DELE ../bob/welcome.txt", 550},
		{"MKD ../evil", 550},
		{"RNFR ../bob/welcome.txt", 550},
		{"MLST ../", 550},
		{"CWD escape", 550},
		{"CWD etc", 550},
		{"PASV", 227},
		{"RETR escape/secret.txt", 550},
		{"PASV", 227},
		{"RETR secret-link", 550},
		{"SIZE secret-link", 550},
		{"PASV", 227},
		{"RETR etc/passwd", 550},
		{"SIZE inner/ok-link", 213},
		{"CWD inner", 250},
		{"CWD ..", 250},
		{"CWD inner/../inner", 250},
		{"CWD ../..", 550},
	}
	for _, tc := range cases {
		expect(t, c, tc.code, "%s", tc.cmd)
	}
	if msg := expect(t, c, 257, "PWD"); !strings.Contains(msg, `"/inner"`) {
		t.Errorf("PWD after refused escapes: %s", msg)
	}

	// Through a real client and data connections: listing or storing through a symlink out.
	gc := dialGo(t, ts, "alice", "wonderland")
	if _, err := gc.List("escape"); err == nil {
		t.Error("LIST escape succeeded")
	}
	if err := gc.Stor("escape/dropped.txt", strings.NewReader("x")); err == nil || !strings.HasPrefix(err.Error(), "550") {
		t.Errorf("STOR through a symlink out: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "dropped.txt")); !os.IsNotExist(err) {
		t.Error("a file was written outside the root")
	}
}

// TestBounce is acceptance 2: PORT/EPRT to another host or a privileged port is refused.
func TestBounce(t *testing.T) {
	ts := startFTP(t, testConfig(t))
	c := ts.login(t, "alice", "wonderland")
	cases := []struct {
		cmd  string
		code int
	}{
		{"PORT 127,0,0,2,200,10", 504},
		{"PORT 10,0,0,1,200,10", 504},
		{"PORT 127,0,0,1,0,21", 504},
		{"PORT 127,0,0,1,3,255", 504},
		{"PORT 127,0,0,1,300,1", 501},
		{"PORT 127,0,0,1", 501},
		{"PORT a,b,c,d,e,f", 501},
		{"EPRT |1|127.0.0.2|6275|", 504},
		{"EPRT |1|192.0.2.1|6275|", 504},
		{"EPRT |2|::1|6275|", 504},
		{"EPRT |1|127.0.0.1|80|", 504},
		{"EPRT |1|127.0.0.1|0|", 501},
		{"EPRT |3|127.0.0.1|6275|", 501},
		{"EPRT |1|::1|6275|", 501},
		{"EPRT 127.0.0.1", 501},
		{"PORT 127,0,0,1,200,10", 200},
		{"EPRT |1|127.0.0.1|51210|", 200},
	}
	for _, tc := range cases {
		expect(t, c, tc.code, "%s", tc.cmd)
	}

	cfg := testConfig(t)
	cfg.ActiveMode = false
	ts2 := startFTP(t, cfg)
	c2 := ts2.login(t, "alice", "wonderland")
	expect(t, c2, 502, "PORT 127,0,0,1,200,10")
	expect(t, c2, 502, "EPRT |1|127.0.0.1|51210|")
}

// TestConnectionLimits checks the per-address connection cap.
func TestConnectionLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConnectionsPerIP = 2
	ts := startFTP(t, cfg)
	a, b := ts.control(t), ts.control(t)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(nc).ReadString('\n')
	if !strings.HasPrefix(line, "421 ") {
		t.Errorf("third connection: %q, want 421", line)
	}
	expect(t, a, 221, "QUIT")
	a.Close()
	// The slot frees once the server has seen the close: poll until a new login works.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(nc).ReadString('\n')
		nc.Close()
		if strings.HasPrefix(line, "220") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %q", line)
		}
		time.Sleep(10 * time.Millisecond)
	}
	expect(t, b, 200, "NOOP")
}

// TestLoginLockout checks the failure delay and lockout.
func TestLoginLockout(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxLoginFailures = 2
	cfg.LoginFailureDelay = 50 * time.Millisecond
	ts := startFTP(t, cfg)
	for range 2 {
		c := ts.control(t)
		expect(t, c, 331, "USER alice")
		start := time.Now()
		expect(t, c, 530, "PASS wrong")
		if time.Since(start) < 50*time.Millisecond {
			t.Errorf("failed login answered after %v, before the delay", time.Since(start))
		}
	}
	c := ts.control(t)
	expect(t, c, 530, "USER alice")
	c = ts.control(t)
	expect(t, c, 530, "USER bob")
}

// TestUploadLimit checks that an upload over max_upload_size gets 552 and leaves nothing.
func TestUploadLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxUploadSize = 1000
	ts := startFTP(t, cfg)
	gc := dialGo(t, ts, "alice", "wonderland")
	err := gc.Stor("big.bin", strings.NewReader(strings.Repeat("x", 5000)))
	if err == nil || !strings.HasPrefix(err.Error(), "552") {
		t.Fatalf("oversized STOR: %v, want 552", err)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "alice", "big.bin")); !os.IsNotExist(err) {
		t.Errorf("partial upload left behind: %v", err)
	}
	if err := gc.Stor("small.bin", strings.NewReader(strings.Repeat("x", 1000))); err != nil {
		t.Errorf("upload at the limit: %v", err)
	}
	if err := gc.Append("small.bin", strings.NewReader("y")); err == nil || !strings.HasPrefix(err.Error(), "552") {
		t.Errorf("APPE past the limit: %v", err)
	}
	sameFile(t, filepath.Join(ts.dir, "alice", "small.bin"), []byte(strings.Repeat("x", 1000)))
}

// TestIdleTimeout checks that an idle control connection is closed with 421.
func TestIdleTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.IdleTimeout = time.Second
	ts := startFTP(t, cfg)
	c := ts.login(t, "alice", "wonderland")
	code, _, _ := c.ReadResponse(0)
	if code != 421 {
		t.Errorf("idle connection got %d, want 421", code)
	}
}

// TestShutdownClosesClients checks that Shutdown says goodbye to connected clients.
func TestShutdownClosesClients(t *testing.T) {
	ts := startFTP(t, testConfig(t))
	c := ts.login(t, "alice", "wonderland")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := c.ReadResponse(0); code != 421 {
		t.Errorf("client got %d at shutdown, want 421", code)
	}
}

// FuzzParsePORT checks the PORT parser on arbitrary input.
func FuzzParsePORT(f *testing.F) {
	for _, s := range []string{"127,0,0,1,200,10", "1,2,3,4,5,6", "256,0,0,1,0,0", "", ",,,,,", "1,2,3,4,5,6,7", " 1,2,3,4,5,6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := parsePORT(s)
		if err == nil && !ap.Addr().Is4() {
			t.Fatalf("parsePORT(%q) = %v", s, ap)
		}
	})
}

// FuzzParseEPRT checks the EPRT parser on arbitrary input.
func FuzzParseEPRT(f *testing.F) {
	for _, s := range []string{"|1|127.0.0.1|6275|", "|2|::1|6275|", "!1!1.2.3.4!1!", "|1|::1|1|", "||||", "|2|fe80::1%eth0|1|", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := parseEPRT(s)
		if err == nil && (ap.Port() == 0 || ap.Addr().Zone() != "") {
			t.Fatalf("parseEPRT(%q) = %v", s, ap)
		}
	})
}

// FuzzControlLine checks the control filter's line handling: it never panics, and a path it
// lets through never resolves above the root.
func FuzzControlLine(f *testing.F) {
	for _, s := range []string{"CWD ../..\r\n", "RETR a/../../b\r\n", "LIST -la ..\r\n", "STRU F\r\n", "MFMT 20200101000000 ../x\r\n", "CDUP\r\n", "\r\n", "cwd /x/../../y", "REST x\r\n", "REST -1\r\n", "REST 99999999999999999999\r\n"} {
		f.Add("/a/b", s)
	}
	f.Fuzz(func(t *testing.T, cwd, line string) {
		cmd, arg := splitCommand(line)
		struReply(arg)
		p, ok := pathArgument(cmd, arg)
		if !ok || escapesRoot(cwd, p) {
			return
		}
		depth := 0
		if !strings.HasPrefix(p, "/") {
			for _, s := range strings.Split(cwd, "/") {
				if s != "" && s != "." {
					depth++
				}
			}
		}
		for _, s := range strings.Split(p, "/") {
			if s == ".." {
				depth--
			} else if s != "" && s != "." {
				depth++
			}
			if depth < 0 {
				t.Fatalf("escapesRoot(%q, %q) = false but the path climbs out", cwd, p)
			}
		}
	})
}

// TestTransferMetrics checks the byte counters after a round trip.
func TestTransferMetrics(t *testing.T) {
	ts := startFTP(t, testConfig(t))
	gc := dialGo(t, ts, "alice", "wonderland")
	if err := gc.Stor("m.bin", strings.NewReader(strings.Repeat("z", 12345))); err != nil {
		t.Fatal(err)
	}
	r, err := gc.Retr("m.bin")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	r.Close()
	if got := ts.srv.stats.received.Load(); got != 12345 {
		t.Errorf("received bytes %d", got)
	}
	if got := ts.srv.stats.sent.Load(); got != 12345 {
		t.Errorf("sent bytes %d", got)
	}
}
