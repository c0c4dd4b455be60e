package mailstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// subscriptionsName is the Courier-style subscriptions file in a user's Maildir root.
const subscriptionsName = "subscriptions"

// Folders lists the user's folders: INBOX first, then the Maildir++ subfolders sorted.
func (s *Store) Folders(u *User) ([]string, error) {
	entries, err := os.ReadDir(s.userRoot(u))
	if err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	var out []string
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), ".")
		if !ok || !e.IsDir() || CheckName(name) != nil {
			continue
		}
		if st, err := os.Stat(filepath.Join(s.userRoot(u), e.Name(), "cur")); err == nil && st.IsDir() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return append([]string{Inbox}, out...), nil
}

// Create makes a new folder (and, Maildir++ style, nothing for its parents: they are implied).
func (s *Store) Create(u *User, name string) error {
	if isInbox(name) {
		return fmt.Errorf("%w: %q", ErrMailboxExists, name)
	}
	if err := CheckName(name); err != nil {
		return err
	}
	path := s.folderPath(u, name)
	if err := os.Mkdir(path, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %q", ErrMailboxExists, name)
		}
		return fmt.Errorf("mailstore: create: %w", err)
	}
	if err := makeMaildir(path); err != nil {
		return err
	}
	return syncDir(s.userRoot(u))
}

// Delete removes a folder and its messages (not its children, which are folders of their own).
func (s *Store) Delete(u *User, name string) error {
	if isInbox(name) {
		return ErrInbox
	}
	if _, err := s.Mailbox(u, name); err != nil {
		return err
	}
	path := s.folderPath(u, name)
	trash := filepath.Join(s.userRoot(u), "..deleted."+s.uniqueKey())
	if err := os.Rename(path, trash); err != nil {
		return fmt.Errorf("mailstore: delete: %w", err)
	}
	s.forget(path)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("mailstore: delete: %w", err)
	}
	return syncDir(s.userRoot(u))
}

// Rename renames a folder and its children (RFC 3501 6.3.5). UIDVALIDITY is kept: the UIDs
// still name the same messages.
func (s *Store) Rename(u *User, from, to string) error {
	if isInbox(from) || isInbox(to) {
		return ErrInbox
	}
	if err := CheckName(to); err != nil {
		return err
	}
	if _, err := s.Mailbox(u, from); err != nil {
		return err
	}
	if _, err := os.Stat(s.folderPath(u, to)); err == nil {
		return fmt.Errorf("%w: %q", ErrMailboxExists, to)
	}
	all, err := s.Folders(u)
	if err != nil {
		return err
	}
	for _, name := range all {
		if name != from && !strings.HasPrefix(name, from+".") {
			continue
		}
		newName := to + strings.TrimPrefix(name, from)
		if err := os.Rename(s.folderPath(u, name), s.folderPath(u, newName)); err != nil {
			return fmt.Errorf("mailstore: rename: %w", err)
		}
	}
	s.forget(s.folderPath(u, from))
	return syncDir(s.userRoot(u))
}

// Subscriptions lists the user's subscribed folder names.
func (s *Store) Subscriptions(u *User) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(s.userRoot(u), subscriptionsName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// SetSubscribed subscribes or unsubscribes a folder name.
func (s *Store) SetSubscribed(u *User, name string, on bool) error {
	s.mu.Lock() // serialises subscription file updates
	defer s.mu.Unlock()
	cur, err := s.Subscriptions(u)
	if err != nil {
		return err
	}
	var out []string
	for _, n := range cur {
		if n != name {
			out = append(out, n)
		}
	}
	if on {
		out = append(out, name)
	}
	return writeFileSync(filepath.Join(s.userRoot(u), subscriptionsName), []byte(strings.Join(out, "\n")+"\n"))
}
