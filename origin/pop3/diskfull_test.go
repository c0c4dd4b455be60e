package pop3

import (
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/tmpfstest"
	"github.com/outpost-proxy/outpost/origin/mailstore/mailstoretest"
)

// TestDiskFull runs the server over a maildrop on its own tmpfs. A full disk does not stop
// the UPDATE state (unlinking frees space); a maildrop where nothing can be written (the
// tmpfs remounted read-only) answers QUIT with -ERR [SYS/TEMP] and keeps every message,
// with its UIDL, for the next session.
func TestDiskFull(t *testing.T) {
	root := tmpfstest.Mount(t, 1<<20)
	store, _ := mailstoretest.NewIn(t, root, msg1, msg2, msg1)
	s := startServer(t, store, func(*Options) {})
	cl := dial(t, s.Addr())
	cl.login() // numbers the new messages while there is room for the uidlist
	cl.cmd("UIDL")
	before := uids(cl.multi())
	cl.cmd("QUIT")

	tmpfstest.ReadOnly(t, root)
	cl = dial(t, s.Addr())
	cl.login()
	cl.cmd("DELE 1")
	cl.cmd("DELE 2")
	if got := cl.cmd("QUIT"); !strings.HasPrefix(got, "-ERR [SYS/TEMP]") {
		t.Fatalf("QUIT on a read-only maildrop = %q, want -ERR [SYS/TEMP]", got)
	}
	tmpfstest.Writable(t, root)
	cl = dial(t, s.Addr())
	cl.login()
	cl.cmd("UIDL")
	if after := uids(cl.multi()); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("after a failed update UIDL = %v, want the messages kept as %v", after, before)
	}
	cl.cmd("QUIT")

	fill := tmpfstest.Fill(t, root, 0)
	defer fill.Release(t)
	cl = dial(t, s.Addr())
	cl.login()
	cl.cmd("DELE 1")
	if got := cl.cmd("QUIT"); !strings.HasPrefix(got, "+OK") || !strings.Contains(got, "1 messages deleted") {
		t.Fatalf("QUIT on a full disk = %q, want +OK (deleting frees space)", got)
	}
	cl = dial(t, s.Addr())
	cl.login()
	cl.cmd("UIDL")
	if after := uids(cl.multi()); strings.Join(after, ",") != strings.Join(before[1:], ",") {
		t.Fatalf("after deleting message 1 on a full disk UIDL = %v, want %v", after, before[1:])
	}
}

// uids returns the unique-ids of a UIDL listing ("n uid" lines).
func uids(lines []string) []string {
	var out []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 2 {
			out = append(out, f[1])
		}
	}
	return out
}
