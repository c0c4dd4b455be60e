package mailstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/outpost-proxy/outpost/internal/tmpfstest"
)

// TestDiskFull: on a full disk an APPEND whose message fits but whose uidlist update does not
// leaves no trace (no file in cur/, no UID), and new mail gets a UID only once the uidlist can
// be written: until then a scan shows the numbered messages only, without an error.
func TestDiskFull(t *testing.T) {
	root := tmpfstest.Mount(t, 1<<20)
	s := testStore(t, root)
	alice, _ := s.Directory().Lookup("alice@outpost.test")
	box, err := s.Mailbox(alice, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := box.Scan(); err != nil { // writes the first uidlist
		t.Fatal(err)
	}
	msg := "Subject: x\r\n\r\nbody\r\n"

	fill := tmpfstest.Fill(t, root, 4096) // one page: the message, not the new uidlist
	if _, err := box.Append(strings.NewReader(msg), "S", time.Time{}); !diskspace.IsFull(err) {
		t.Fatalf("Append on a full disk: %v, want ENOSPC", err)
	}
	if left, _ := os.ReadDir(filepath.Join(s.userRoot(alice), "cur")); len(left) != 0 {
		t.Fatalf("a failed Append left %v in cur/", left)
	}
	fill.Release(t)

	fill = tmpfstest.Fill(t, root, 4096)
	if _, err := s.Deliver(alice, "k1", strings.NewReader(msg)); err != nil {
		t.Fatalf("Deliver with one page left: %v", err)
	}
	snap, err := box.Scan()
	if err != nil || len(snap.Messages) != 0 {
		t.Fatalf("Scan while the uidlist cannot be written: %v, %v; want no messages, no error", snap, err)
	}
	fill.Release(t)
	snap, err = box.Scan()
	if err != nil || len(snap.Messages) != 1 || snap.Messages[0].UID == 0 || snap.Messages[0].Key != "k1" {
		t.Fatalf("Scan once space returned: %+v, %v; want k1 with a UID", snap, err)
	}
}
