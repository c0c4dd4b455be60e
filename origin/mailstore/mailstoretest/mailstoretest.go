// Package mailstoretest gives mail-server tests a Maildir store in a temporary directory with
// two known users, alice@outpost.test (password "wonderland") and bob@outpost.test ("builder"),
// hashed at bcrypt's minimum cost so tests stay fast. Only tests import it.
package mailstoretest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/origin/mailstore"
	"golang.org/x/crypto/bcrypt"
)

// Users are the test accounts: address and password.
var Users = [][2]string{{"alice@outpost.test", "wonderland"}, {"bob@outpost.test", "builder"}}

// New opens a store over t.TempDir() with Users and delivers msgs to alice's INBOX under the
// keys m0, m1, ...; it returns the store and alice.
func New(t testing.TB, msgs ...string) (*mailstore.Store, *mailstore.User) {
	t.Helper()
	return NewIn(t, t.TempDir(), msgs...)
}

// NewIn is New with the store rooted at root (a disk-full test's own tmpfs, say).
func NewIn(t testing.TB, root string, msgs ...string) (*mailstore.Store, *mailstore.User) {
	t.Helper()
	var specs []mailstore.UserSpec
	for _, u := range Users {
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, mailstore.UserSpec{Address: u[0], PasswordHash: string(h)})
	}
	dir, err := mailstore.NewDirectory(specs)
	if err != nil {
		t.Fatal(err)
	}
	store, err := mailstore.Open(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := dir.Lookup(Users[0][0])
	for i, m := range msgs {
		if _, err := store.Deliver(alice, fmt.Sprintf("m%d", i), strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	return store, alice
}
