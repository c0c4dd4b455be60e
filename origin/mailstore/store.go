// Package mailstore is the Maildir mail store shared by Outpost's SMTP delivery, POP3 and IMAP:
// one Maildir per user (cur/new/tmp, delivery by fsync then rename), IMAP folders as Maildir++
// subfolders, flags in the file names, and IMAP UIDs and UIDVALIDITY persisted per folder.
//
// Messages are stored exactly as they travel on the wire (CRLF line endings, no dot-stuffing),
// so a file's size is the RFC822.SIZE that IMAP reports and the octet count POP3 reports.
//
// A Store is safe for concurrent use by the goroutines of one process; several processes must not
// share one store directory.
package mailstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Inbox is the name of every user's primary folder (the Maildir root).
const Inbox = "INBOX"

// Delimiter separates folder hierarchy levels (the Maildir++ convention).
const Delimiter = '.'

// Errors reported by the store.
var (
	ErrNoMailbox     = errors.New("mailstore: no such mailbox")
	ErrMailboxExists = errors.New("mailstore: mailbox already exists")
	ErrBadName       = errors.New("mailstore: invalid mailbox name")
	ErrNoMessage     = errors.New("mailstore: no such message")
	ErrInbox         = errors.New("mailstore: INBOX cannot be deleted or renamed")
)

// Store is the mail store rooted at one directory: <root>/<domain>/<local>/ is a user's Maildir.
type Store struct {
	root     string
	dir      *Directory
	hostname string
	counter  atomic.Uint64

	mu      sync.Mutex
	folders map[string]*folder
	locks   map[string]chan struct{} // held maildrop locks; closed on release
	watches map[string]map[chan struct{}]struct{}
}

// Open opens (creating as needed) the store at root and every configured user's INBOX.
func Open(root string, dir *Directory) (*Store, error) {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`, ".", "_").Replace(host)
	if host == "" {
		host = "localhost"
	}
	s := &Store{root: root, dir: dir, hostname: host, folders: map[string]*folder{},
		locks: map[string]chan struct{}{}, watches: map[string]map[chan struct{}]struct{}{}}
	for _, u := range dir.Users() {
		if err := makeMaildir(s.userRoot(u)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Directory returns the users the store serves.
func (s *Store) Directory() *Directory { return s.dir }

func (s *Store) userRoot(u *User) string { return filepath.Join(s.root, u.Domain, u.Local) }

// makeMaildir creates dir/{cur,new,tmp}.
func makeMaildir(dir string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return fmt.Errorf("mailstore: %w", err)
		}
	}
	return nil
}

// CheckName validates a folder name: non-empty UTF-8 without "/", control characters, empty
// hierarchy levels or a leading dot.
func CheckName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "/\\\x00\r\n") ||
		strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") || len(name) > 200 {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q", ErrBadName, name)
		}
	}
	return nil
}

// isInbox reports whether name is INBOX (case-insensitive, RFC 3501 5.1).
func isInbox(name string) bool { return strings.EqualFold(name, Inbox) }

// folderPath is the directory of a user's folder.
func (s *Store) folderPath(u *User, name string) string {
	if isInbox(name) {
		return s.userRoot(u)
	}
	return filepath.Join(s.userRoot(u), "."+name)
}

// Mailbox returns the user's folder name; ErrNoMailbox when it does not exist.
func (s *Store) Mailbox(u *User, name string) (*Mailbox, error) {
	if !isInbox(name) {
		if err := CheckName(name); err != nil {
			return nil, err
		}
	} else {
		name = Inbox
	}
	path := s.folderPath(u, name)
	if st, err := os.Stat(filepath.Join(path, "cur")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %q", ErrNoMailbox, name)
	}
	return &Mailbox{s: s, User: u, Name: name, path: path, f: s.folder(path)}, nil
}

// folder returns the shared in-memory state of the folder at path.
func (s *Store) folder(path string) *folder {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folders[path]
	if f == nil {
		f = &folder{path: path}
		s.folders[path] = f
	}
	return f
}

// forget drops the in-memory state of folders at or below path (after delete or rename).
func (s *Store) forget(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.folders {
		if p == path || strings.HasPrefix(p, path+".") {
			delete(s.folders, p)
		}
	}
}

// Lock takes the user's exclusive maildrop lock (RFC 1939 section 8). While another session
// holds it, Lock waits for its release until ctx ends (Dovecot's POP3 session lock waits the
// same way), so a client reconnecting right after a dropped connection is not refused while
// the old session is still winding down; ok is false when ctx ended first. Call unlock when
// done.
func (s *Store) Lock(ctx context.Context, u *User) (unlock func(), ok bool) {
	for {
		s.mu.Lock()
		held, busy := s.locks[u.Address]
		if !busy {
			released := make(chan struct{})
			s.locks[u.Address] = released
			s.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					s.mu.Lock()
					delete(s.locks, u.Address)
					s.mu.Unlock()
					close(released)
				})
			}, true
		}
		s.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// Watch returns a channel that receives a value (coalesced) whenever the folder changes, and a
// function that stops the watch.
func (s *Store) Watch(u *User, name string) (<-chan struct{}, func()) {
	path := s.folderPath(u, name)
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.watches[path] == nil {
		s.watches[path] = map[chan struct{}]struct{}{}
	}
	s.watches[path][ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watches[path], ch)
		s.mu.Unlock()
	}
}

// notify wakes the watchers of the folder at path.
func (s *Store) notify(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.watches[path] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// uniqueKey returns a new Maildir unique name: time, microseconds, pid, counter, host.
func (s *Store) uniqueKey() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), s.counter.Add(1), s.hostname)
}

// syncDir fsyncs a directory so that renames and creations in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
