package ftp

import (
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/tmpfstest"
)

// diskFullScript drives ftplib against a nearly full disk: STOR, APPE and STOU of 1 MiB each
// get 452, the partial data is rolled back, and the control connection goes on working.
const diskFullScript = `
import ftplib, io, sys
host, port = sys.argv[1], int(sys.argv[2])
big = b"x" * (1 << 20)
f = ftplib.FTP()
f.connect(host, port, timeout=20)
f.login("alice", "wonderland")
f.storbinary("STOR small.bin", io.BytesIO(b"s" * 10000))
for cmd in ("STOR big.bin", "APPE small.bin", "STOU"):
    try:
        f.storbinary(cmd, io.BytesIO(big))
        sys.exit(cmd + ": stored on a full disk")
    except ftplib.error_temp as e:
        assert str(e).startswith("452 "), (cmd, str(e))
    f.voidcmd("NOOP")  # the control connection stays usable
names = f.nlst()
assert "big.bin" not in names and "stou" not in names, names
f.voidcmd("TYPE I")
assert f.size("small.bin") == 10000, f.size("small.bin")
f.quit()
print("ok")
`

// TestDiskFull fills the FTP root's file system: STOR, APPE and STOU answer 452 (python3
// ftplib and a raw control connection), the partial file is removed (or truncated back for
// APPE), the session goes on, and uploads work again once space returns.
func TestDiskFull(t *testing.T) {
	py := clienttest.Need(t, "python3", "python3")
	data := tmpfstest.Mount(t, 4<<20)
	ts := startFTPIn(t, testConfig(t), data)
	fill := tmpfstest.Fill(t, data, 256<<10)
	host, port, _ := strings.Cut(ts.addr, ":")
	if out := strings.TrimSpace(string(run(t, py, "-c", diskFullScript, host, port))); out != "ok" {
		t.Fatalf("python: %s", out)
	}
	home := filepath.Join(ts.dir, "alice")
	if _, err := os.Stat(filepath.Join(home, "big.bin")); !os.IsNotExist(err) {
		t.Errorf("partial STOR left behind: %v", err)
	}
	sameFile(t, filepath.Join(home, "small.bin"), []byte(strings.Repeat("s", 10000)))

	c := ts.login(t, "alice", "wonderland")
	if code, msg := rawUpload(t, c, "STOR raw.bin", 1<<20); code != 452 {
		t.Fatalf("raw STOR on a full disk: %d %s, want 452", code, msg)
	}
	expect(t, c, 200, "NOOP")
	fill.Release(t)
	if code, msg := rawUpload(t, c, "STOU", 1<<20); code != 226 || !strings.Contains(msg, "stou") {
		t.Fatalf("STOU after space returned: %d %s, want 226 naming the file", code, msg)
	}
	if fi, err := os.Stat(filepath.Join(home, "stou")); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("STOU file: %v %v", fi, err)
	}
	if code, msg := rawUpload(t, c, "STOU", 10); code != 226 || !strings.Contains(msg, "stou.1") {
		t.Fatalf("second STOU: %d %s, want a new name (stou.1)", code, msg)
	}
}

// rawUpload sends cmd over EPSV with n bytes of data and returns the final reply.
func rawUpload(t *testing.T, c *textproto.Conn, cmd string, n int) (int, string) {
	t.Helper()
	msg := expect(t, c, 229, "EPSV")
	var port int
	if _, err := fmt.Sscanf(msg[strings.Index(msg, "(|||"):], "(|||%d|)", &port); err != nil {
		t.Fatalf("EPSV reply %q: %v", msg, err)
	}
	dc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cmd("%s", cmd); err != nil {
		t.Fatal(err)
	}
	if code, msg, err := c.ReadResponse(0); code != 150 && code != 125 {
		t.Fatalf("%s: %d %s %v, want 150", cmd, code, msg, err)
	} else if cmd == "STOU" && !strings.HasPrefix(msg, "FILE: ") {
		t.Fatalf("STOU preliminary reply %q lacks FILE: (RFC 1123 4.1.2.9)", msg)
	}
	dc.SetDeadline(time.Now().Add(20 * time.Second))
	_, werr := io.Copy(dc, io.LimitReader(zeros{}, int64(n)))
	dc.Close()
	code, msg, err := c.ReadResponse(0)
	if err != nil && code == 0 {
		t.Fatalf("%s: reply: %v (data write: %v)", cmd, err, werr)
	}
	return code, msg
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
