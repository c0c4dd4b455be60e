package mailstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testStore opens a store with alice@outpost.test / wonderland and carol@remote.test / pirates.
func testStore(t *testing.T, root string) *Store {
	t.Helper()
	var specs []UserSpec
	for _, u := range [][2]string{{"alice@outpost.test", "wonderland"}, {"carol@remote.test", "pirates"}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, UserSpec{Address: u[0], PasswordHash: string(h)})
	}
	d, err := NewDirectory(specs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(root, d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthenticate(t *testing.T) {
	s := testStore(t, t.TempDir())
	for _, tc := range []struct {
		name, login, pass, want string
	}{
		{"local part", "alice", "wonderland", "alice@outpost.test"},
		{"full address", "Alice@Outpost.Test", "wonderland", "alice@outpost.test"},
		{"wrong password", "alice", "x", ""},
		{"unknown user", "mallory", "wonderland", ""},
		{"other domain", "carol", "pirates", "carol@remote.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := s.Directory().Authenticate(tc.login, tc.pass)
			if tc.want == "" {
				if !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("got %v, %v; want ErrAuthFailed", u, err)
				}
				return
			}
			if err != nil || u.Address != tc.want {
				t.Fatalf("got %v, %v; want %s", u, err, tc.want)
			}
		})
	}
}

func TestDeliverScanFlagsRemove(t *testing.T) {
	root := t.TempDir()
	s := testStore(t, root)
	alice, _ := s.Directory().Lookup("alice@outpost.test")
	for _, key := range []string{"k1", "k2", "k2"} {
		if _, err := s.Deliver(alice, key, strings.NewReader("Subject: "+key+"\r\n\r\nhi\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	box, err := s.Mailbox(alice, "inbox")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := box.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Messages) != 2 || snap.Messages[0].UID != 1 || snap.Messages[1].UID != 2 {
		t.Fatalf("scan = %+v, want two messages with UIDs 1, 2 (duplicate key delivered once)", snap.Messages)
	}
	if ok, _ := s.Deliver(alice, "k1", strings.NewReader("again")); ok {
		t.Fatal("redelivery of a key already moved to cur/ succeeded")
	}
	if _, err := box.SetFlags("k1", "SSF"); err != nil {
		t.Fatal(err)
	}
	// A fresh store (a restart) sees the same UIDs, UIDVALIDITY and flags.
	s2 := testStore(t, root)
	box2, _ := s2.Mailbox(alice, Inbox)
	snap2, err := box2.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if snap2.UIDValidity != snap.UIDValidity || snap2.Messages[0].Flags != "FS" || snap2.Messages[1].UID != 2 {
		t.Fatalf("after restart %+v, want same validity, flags FS", snap2)
	}
	if err := box2.Remove([]string{"k1"}); err != nil {
		t.Fatal(err)
	}
	m, err := box2.Append(strings.NewReader("x\r\n"), "S", time.Unix(1e9, 0))
	if err != nil || m.UID != 3 {
		t.Fatalf("append = %+v, %v; want UID 3", m, err)
	}
	snap3, _ := box2.Scan()
	if len(snap3.Messages) != 2 || snap3.Messages[0].Key != "k2" || snap3.Messages[1].UID != 3 || !snap3.Messages[1].Date.Equal(time.Unix(1e9, 0)) {
		t.Fatalf("after remove+append %+v", snap3.Messages)
	}
	data, err := box2.ReadAll("k2", 1<<20)
	if err != nil || string(data) != "Subject: k2\r\n\r\nhi\r\n" {
		t.Fatalf("read = %q, %v", data, err)
	}
}

func TestFolders(t *testing.T) {
	s := testStore(t, t.TempDir())
	alice, _ := s.Directory().Lookup("alice@outpost.test")
	for _, tc := range []struct {
		name string
		op   func() error
		want error
	}{
		{"create", func() error { return s.Create(alice, "Archive") }, nil},
		{"create child", func() error { return s.Create(alice, "Archive.2024") }, nil},
		{"create twice", func() error { return s.Create(alice, "Archive") }, ErrMailboxExists},
		{"create inbox", func() error { return s.Create(alice, "inbox") }, ErrMailboxExists},
		{"bad name", func() error { return s.Create(alice, "../x") }, ErrBadName},
		{"rename", func() error { return s.Rename(alice, "Archive", "Old") }, nil},
		{"rename inbox", func() error { return s.Rename(alice, "INBOX", "X") }, ErrInbox},
		{"delete missing", func() error { return s.Delete(alice, "Archive") }, ErrNoMailbox},
		{"delete", func() error { return s.Delete(alice, "Old") }, nil},
		{"subscribe", func() error { return s.SetSubscribed(alice, "Old.2024", true) }, nil},
	} {
		if err := tc.op(); !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	got, _ := s.Folders(alice)
	if strings.Join(got, ",") != "INBOX,Old.2024" {
		t.Fatalf("folders = %v", got)
	}
	subs, _ := s.Subscriptions(alice)
	if strings.Join(subs, ",") != "Old.2024" {
		t.Fatalf("subscriptions = %v", subs)
	}
	if _, err := os.Stat(filepath.Join(s.userRoot(alice), ".Old.2024", "cur")); err != nil {
		t.Fatal(err)
	}
}

func TestLockAndWatch(t *testing.T) {
	s := testStore(t, t.TempDir())
	alice, _ := s.Directory().Lookup("alice@outpost.test")
	bg := context.Background()
	unlock, ok := s.Lock(bg, alice)
	if !ok {
		t.Fatal("first lock failed")
	}
	ended, cancel := context.WithCancel(bg)
	cancel()
	if _, ok := s.Lock(ended, alice); ok {
		t.Fatal("second lock succeeded")
	}
	// A waiting Lock gets the lock as soon as the holder releases it.
	got := make(chan func(), 1)
	go func() {
		u, _ := s.Lock(bg, alice)
		got <- u
	}()
	unlock()
	if u := <-got; u == nil {
		t.Fatal("waiting lock failed")
	} else {
		u()
	}
	if u, ok := s.Lock(bg, alice); !ok {
		t.Fatal("lock after unlock failed")
	} else {
		u()
	}
	ch, stop := s.Watch(alice, Inbox)
	defer stop()
	if _, err := s.Deliver(alice, "", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after delivery")
	}
}

// TestDirectoryRejectsUnsafeAddresses: addresses that would leave the store root are refused.
func TestDirectoryRejectsUnsafeAddresses(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	for _, a := range []string{"a@..", "../a@x.test", "a@x/y", ".a@x.test", "a@.x", "a", "a@b@c", "a@x..test"} {
		if _, err := NewDirectory([]UserSpec{{Address: a, PasswordHash: string(h)}}); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}
