package ftp

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jlaffaye/ftp"

	"github.com/outpost-proxy/outpost/internal/clienttest"
)

// TestCurl is acceptance 1 with curl: upload (-T), resume (-C -), active mode (--ftp-port),
// listings, binary round trips.
func TestCurl(t *testing.T) {
	clienttest.Need(t, "curl", "curl")
	ts := startFTP(t, testConfig(t))
	base := "ftp://" + ts.addr
	src, data := binaryFile(t, 300_000)
	out := filepath.Join(t.TempDir(), "out.bin")

	run(t, "curl", "-sS", "-u", "alice:wonderland", "-T", src, base+"/up.bin")
	sameFile(t, filepath.Join(ts.dir, "alice", "up.bin"), data)

	run(t, "curl", "-sS", "-u", "alice:wonderland", "-o", out, base+"/up.bin")
	sameFile(t, out, data)

	run(t, "curl", "-sS", "-u", "alice:wonderland", "--ftp-port", "127.0.0.1", "-o", out, base+"/up.bin")
	sameFile(t, out, data)

	// Resume an upload: the server holds the first 100000 bytes.
	os.WriteFile(filepath.Join(ts.dir, "alice", "part.bin"), data[:100_000], 0o644)
	run(t, "curl", "-sS", "-u", "alice:wonderland", "-C", "-", "-T", src, base+"/part.bin")
	sameFile(t, filepath.Join(ts.dir, "alice", "part.bin"), data)

	// Resume a download.
	os.WriteFile(out, data[:12345], 0o644)
	run(t, "curl", "-sS", "-u", "alice:wonderland", "-C", "-", "-o", out, base+"/up.bin")
	sameFile(t, out, data)

	// Anonymous, the seeded tree, passive and active.
	pub, _ := os.ReadFile(filepath.Join(ts.dir, "anonymous", "pub", "sample.bin"))
	run(t, "curl", "-sS", "-o", out, base+"/pub/sample.bin")
	sameFile(t, out, pub)
	run(t, "curl", "-sS", "--ftp-port", "127.0.0.1", "--disable-eprt", "-o", out, base+"/pub/sample.bin")
	sameFile(t, out, pub)

	list := string(run(t, "curl", "-sS", base+"/pub/"))
	for _, name := range []string{"README.txt", "sample.bin", "docs"} {
		if !strings.Contains(list, name) {
			t.Errorf("LIST lacks %s:\n%s", name, list)
		}
	}
	names := strings.Fields(string(run(t, "curl", "-sS", "--list-only", base+"/pub/")))
	if strings.Join(names, " ") != "README.txt docs sample.bin" {
		t.Errorf("NLST: %q", names)
	}
}

// TestLftp is acceptance 1 with lftp, passive and active.
func TestLftp(t *testing.T) {
	clienttest.Need(t, "lftp", "lftp")
	ts := startFTP(t, testConfig(t))
	src, data := binaryFile(t, 200_000)
	dir := t.TempDir()
	for _, passive := range []string{"on", "off"} {
		t.Run("passive-"+passive, func(t *testing.T) {
			script := "set cmd:fail-exit yes; set ftp:passive-mode " + passive + "; set net:max-retries 1; " +
				"set ftp:port-range 1024-65535; set net:timeout 10; " +
				"put " + src + " -o lftp.bin; get lftp.bin -o " + filepath.Join(dir, "back-"+passive) + "; " +
				"mkdir sub; cd sub; put " + src + " -o inner.bin; cd ..; cls -1 sub; rm sub/inner.bin; rmdir sub; " +
				"cls -1; bye"
			out := run(t, "lftp", "-u", "bob,builder", "-e", script, "ftp://"+ts.addr)
			sameFile(t, filepath.Join(ts.dir, "bob", "lftp.bin"), data)
			sameFile(t, filepath.Join(dir, "back-"+passive), data)
			if !strings.Contains(string(out), "sub/inner.bin") || !strings.Contains(string(out), "lftp.bin") {
				t.Errorf("listings: %s", out)
			}
			if _, err := os.Stat(filepath.Join(ts.dir, "bob", "sub")); !os.IsNotExist(err) {
				t.Errorf("rmdir did not remove sub: %v", err)
			}
		})
	}
}

// pythonScript drives ftplib: login, store, retrieve, list, in the mode given by argv.
const pythonScript = `
import ftplib, io, sys
host, port, mode, src = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(src, "rb").read()
f = ftplib.FTP()
f.connect(host, port, timeout=10)
f.login("alice", "wonderland")
f.set_pasv(mode == "pasv")
f.storbinary("STOR py.bin", io.BytesIO(data))
buf = io.BytesIO()
f.retrbinary("RETR py.bin", buf.write)
assert buf.getvalue() == data, "round trip differs"
assert f.size("py.bin") == len(data)
names = f.nlst()
assert "py.bin" in names, names
facts = dict(f.mlsd())
assert facts["py.bin"]["type"] == "file" and int(facts["py.bin"]["size"]) == len(data), facts
lines = []
f.retrlines("LIST", lines.append)
assert any("py.bin" in l for l in lines), lines
f.rename("py.bin", "py2.bin")
f.delete("py2.bin")
f.quit()
print("ok")
`

// TestPythonFtplib is acceptance 1 with python3's ftplib, PASV and PORT.
func TestPythonFtplib(t *testing.T) {
	clienttest.Need(t, "python3", "python3")
	ts := startFTP(t, testConfig(t))
	src, _ := binaryFile(t, 150_000)
	host, port, _ := strings.Cut(ts.addr, ":")
	for _, mode := range []string{"pasv", "port"} {
		t.Run(mode, func(t *testing.T) {
			out := run(t, "python3", "-c", pythonScript, host, port, mode, src)
			if strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("python: %s", out)
			}
		})
	}
}

// TestGoClient exercises the command set through github.com/jlaffaye/ftp (EPSV with MLSD, and
// PASV with LIST).
func TestGoClient(t *testing.T) {
	ts := startFTP(t, testConfig(t))
	_, data := binaryFile(t, 100_000)
	for _, epsv := range []bool{true, false} {
		// Without EPSV the client also lists with LIST instead of MLSD, so both parse.
		opts := []ftp.DialOption{ftp.DialWithDisabledEPSV(!epsv), ftp.DialWithDisabledMLSD(!epsv)}
		c, err := ftp.Dial(ts.addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login("alice", "wonderland"); err != nil {
			t.Fatal(err)
		}
		if err := c.MakeDir("docs"); err != nil {
			t.Fatal(err)
		}
		if err := c.ChangeDir("docs"); err != nil {
			t.Fatal(err)
		}
		if dir, _ := c.CurrentDir(); dir != "/docs" {
			t.Errorf("PWD %q", dir)
		}
		if err := c.Stor("f.bin", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := c.Append("f.bin", bytes.NewReader(data[:10])); err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte{}, data...), data[:10]...)
		if n, err := c.FileSize("f.bin"); err != nil || n != int64(len(want)) {
			t.Errorf("SIZE %d %v", n, err)
		}
		if mt, err := c.GetTime("f.bin"); err != nil || mt.IsZero() {
			t.Errorf("MDTM %v %v", mt, err)
		}
		r, err := c.RetrFrom("f.bin", 5000)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, want[5000:]) {
			t.Errorf("REST 5000 + RETR: %d bytes", len(got))
		}
		entries, err := c.List("/docs")
		if err != nil || len(entries) != 1 || entries[0].Name != "f.bin" || entries[0].Size != uint64(len(want)) {
			t.Errorf("LIST: %+v %v", entries, err)
		}
		if err := c.Rename("f.bin", "g.bin"); err != nil {
			t.Error(err)
		}
		if err := c.Delete("g.bin"); err != nil {
			t.Error(err)
		}
		if err := c.ChangeDirToParent(); err != nil {
			t.Error(err)
		}
		if err := c.RemoveDir("docs"); err != nil {
			t.Error(err)
		}
		c.Quit()
	}
}

// TestCommands checks reply codes of the RFC 959 minimum and common extensions over a raw
// control connection.
func TestCommands(t *testing.T) {
	ts := startFTP(t, testConfig(t))
	c := ts.control(t)
	expect(t, c, 530, "PWD")
	expect(t, c, 331, "USER alice")
	expect(t, c, 530, "PASS wrong")
	c = ts.login(t, "alice", "wonderland")
	cases := []struct {
		cmd  string
		code int
	}{
		{"SYST", 215},
		{"NOOP", 200},
		{"OPTS UTF8 ON", 200},
		{"TYPE A", 200},
		{"TYPE I", 200},
		{"TYPE X", 504},
		{"MODE S", 200},
		{"MODE B", 504},
		{"STRU F", 200},
		{"STRU R", 504},
		{"STRU", 501},
		{"PWD", 257},
		{"MKD d", 257},
		{"CWD d", 250},
		{"CDUP", 250},
		{"RMD d", 250},
		{"PASV", 227},
		{"RETR missing.txt", 550},
		{"SIZE welcome.txt", 213},
		{"MDTM welcome.txt", 213},
		{"DELE missing.txt", 550},
		{"RNFR missing.txt", 550},
		{"RNTO x", 503},
		{"REST 10", 350},
		{"REST x", 501},
		{"BOGUS", 500},
		{"HELP", 214},
		{"ALLO 10", 202},
		{"RETR welcome.txt", 425},
		{"LIST", 425},
		{"EPSV 2", 522},
		{"EPSV 7", 501},
		{"EPSV ALL", 200},
		{"PASV", 503},
		{"PORT 127,0,0,1,200,10", 503},
		{"SITE CHMOD 777 welcome.txt", 500},
	}
	for _, tc := range cases {
		expect(t, c, tc.code, "%s", tc.cmd)
	}
	msg := expect(t, c, 211, "FEAT")
	for _, f := range []string{"UTF8", "SIZE", "MDTM", "REST STREAM", "EPSV", "EPRT", "MLST"} {
		if !strings.Contains(msg, f) {
			t.Errorf("FEAT lacks %s: %s", f, msg)
		}
	}
	expect(t, c, 221, "QUIT")
}

// TestAnonymous checks that anonymous logins see pub/ and cannot change anything.
func TestAnonymous(t *testing.T) {
	ts := startFTP(t, testConfig(t))
	for _, user := range []string{"anonymous", "ftp", "ANONYMOUS"} {
		c, err := ftp.Dial(ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, "guest@example.com"); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		r, err := c.Retr("pub/README.txt")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if !strings.Contains(string(b), "Outpost demo FTP server") {
			t.Errorf("README: %q", b)
		}
		for name, op := range map[string]func() error{
			"STOR": func() error { return c.Stor("pub/new.txt", strings.NewReader("x")) },
			"MKD":  func() error { return c.MakeDir("new") },
			"DELE": func() error { return c.Delete("pub/README.txt") },
			"RNFR": func() error { return c.Rename("pub/README.txt", "x") },
			"RMD":  func() error { return c.RemoveDir("pub/docs") },
		} {
			if err := op(); err == nil || !strings.HasPrefix(err.Error(), "550") {
				t.Errorf("%s as %s: %v, want 550", name, user, err)
			}
		}
		c.Quit()
	}
	cfg := testConfig(t)
	cfg.Anonymous = false
	ts2 := startFTP(t, cfg)
	c := ts2.control(t)
	expect(t, c, 331, "USER anonymous")
	expect(t, c, 530, "PASS x@y")
}
