package imap

import (
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/tmpfstest"
	"github.com/outpost-proxy/outpost/origin/mailstore/mailstoretest"
)

// appendFullScript APPENDs with python's imaplib and prints the tagged status and its text.
const appendFullScript = `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login("alice", "wonderland")
typ, data = m.append("INBOX", None, None, b"Subject: no room\r\n\r\nbody\r\n")
print(typ, data[0].decode())
m.logout()
`

// TestDiskFull runs the server over a store on its own tmpfs: APPEND on a full disk is
// answered NO [OVERQUOTA] (python imaplib) and leaves nothing behind; flag changes and
// EXPUNGE that cannot be written (the tmpfs remounted read-only) are answered with a tagged
// NO, and the messages and their flags stay as they were.
func TestDiskFull(t *testing.T) {
	py := clienttest.Need(t, "python3", "python3")
	root := tmpfstest.Mount(t, 1<<20)
	store, _ := mailstoretest.NewIn(t, root, plain, multi)
	s := startServer(t, store, func(*Options) {})
	cl := dial(t, s.Addr())
	cl.ok("LOGIN alice wonderland")
	cl.ok("SELECT INBOX") // numbers the messages while there is room

	fill := tmpfstest.Fill(t, root, 0)
	host, port, _ := strings.Cut(s.Addr(), ":")
	out := strings.TrimSpace(string(clienttest.Run(t, 30*time.Second, py, "-c", appendFullScript, host, port)))
	if !strings.HasPrefix(out, "NO [OVERQUOTA]") {
		t.Fatalf("APPEND on a full disk: %q, want NO [OVERQUOTA]", out)
	}
	if got := cl.ok("STATUS INBOX (MESSAGES)"); !strings.Contains(got, "MESSAGES 2") {
		t.Fatalf("after the refused APPEND: %s", got)
	}
	// A flag change is a rename, which a full tmpfs still allows: it succeeds for real.
	cl.ok(`STORE 2 +FLAGS (\Deleted)`)
	fill.Release(t)

	tmpfstest.ReadOnly(t, root)
	for _, cmd := range []string{`STORE 1 +FLAGS (\Seen)`, `FETCH 1 BODY[]`, "EXPUNGE"} {
		if _, st := cl.do(cmd); !strings.HasPrefix(st, "NO [UNAVAILABLE]") {
			t.Fatalf("%s on a read-only store: %q, want a tagged NO [UNAVAILABLE]", cmd, st)
		}
	}
	tmpfstest.Writable(t, root)
	got := cl.ok("FETCH 1:* (FLAGS)")
	if !strings.Contains(got, "* 1 FETCH (UID 1 FLAGS ())") || !strings.Contains(got, `* 2 FETCH (UID 2 FLAGS (\Deleted))`) {
		t.Fatalf("flags after the failed updates:\n%s", got)
	}
	if got := cl.ok("EXPUNGE"); !strings.Contains(got, "* 2 EXPUNGE") {
		t.Fatalf("EXPUNGE once writable: %q", got)
	}
}
