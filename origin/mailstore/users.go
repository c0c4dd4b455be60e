package mailstore

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// ErrAuthFailed is returned for a wrong login name or password (deliberately not saying which).
var ErrAuthFailed = errors.New("mailstore: authentication failed")

// User is one mailbox owner.
type User struct {
	// Address is the canonical (lowercased) address, e.g. "alice@outpost.test".
	Address string
	// Local and Domain are the two halves of Address.
	Local, Domain string
	hash          []byte
}

// UserSpec is a user as configured: an address and a bcrypt hash of the password.
type UserSpec struct {
	Address      string
	PasswordHash string
}

// Directory is the set of users, looked up by address or by login name.
type Directory struct {
	byAddr  map[string]*User
	byLocal map[string][]*User
	dummy   []byte
	once    sync.Once
}

// NewDirectory builds a directory from configured users. Addresses are case-insensitive.
func NewDirectory(specs []UserSpec) (*Directory, error) {
	d := &Directory{byAddr: map[string]*User{}, byLocal: map[string][]*User{}}
	for _, s := range specs {
		addr := strings.ToLower(strings.TrimSpace(s.Address))
		local, domain, ok := strings.Cut(addr, "@")
		if !ok || local == "" || domain == "" || strings.ContainsAny(addr, "/\\\x00") || strings.HasPrefix(local, ".") ||
			strings.HasPrefix(domain, ".") || strings.Contains(domain, "..") || strings.Contains(domain, "@") {
			return nil, fmt.Errorf("mailstore: user %q: not a usable address", s.Address)
		}
		if _, err := bcrypt.Cost([]byte(s.PasswordHash)); err != nil {
			return nil, fmt.Errorf("mailstore: user %q: password hash: %w", s.Address, err)
		}
		if d.byAddr[addr] != nil {
			return nil, fmt.Errorf("mailstore: user %q listed twice", s.Address)
		}
		u := &User{Address: addr, Local: local, Domain: domain, hash: []byte(s.PasswordHash)}
		d.byAddr[addr] = u
		d.byLocal[local] = append(d.byLocal[local], u)
	}
	return d, nil
}

// Lookup finds the user with this address (case-insensitive).
func (d *Directory) Lookup(addr string) (*User, bool) {
	u, ok := d.byAddr[strings.ToLower(addr)]
	return u, ok
}

// Users lists every user.
func (d *Directory) Users() []*User {
	out := make([]*User, 0, len(d.byAddr))
	for _, u := range d.byAddr {
		out = append(out, u)
	}
	return out
}

// resolve maps a login name (local part when unique, or the full address) to a user.
func (d *Directory) resolve(login string) *User {
	login = strings.ToLower(strings.TrimSpace(login))
	if strings.Contains(login, "@") {
		return d.byAddr[login]
	}
	if us := d.byLocal[login]; len(us) == 1 {
		return us[0]
	}
	return nil
}

// Authenticate checks a login name and password. Unknown names cost the same bcrypt work as
// known ones, so timing does not reveal which names exist.
func (d *Directory) Authenticate(login, password string) (*User, error) {
	u := d.resolve(login)
	if u == nil {
		d.once.Do(d.makeDummy)
		_ = bcrypt.CompareHashAndPassword(d.dummy, []byte(password))
		return nil, ErrAuthFailed
	}
	if bcrypt.CompareHashAndPassword(u.hash, []byte(password)) != nil {
		return nil, ErrAuthFailed
	}
	return u, nil
}

// makeDummy makes the hash compared against for unknown names, at the cost the users' hashes use.
func (d *Directory) makeDummy() {
	cost := bcrypt.DefaultCost
	for _, u := range d.byAddr {
		if c, err := bcrypt.Cost(u.hash); err == nil {
			cost = c
		}
		break
	}
	d.dummy, _ = bcrypt.GenerateFromPassword([]byte("x"), cost)
}
