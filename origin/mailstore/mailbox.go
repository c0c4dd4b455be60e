package mailstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/internal/atomicfile"
)

// uidListName is the per-folder file that keeps UIDVALIDITY, UIDNEXT and the key → UID map.
const uidListName = "outpost-uidlist"

// Message is one message of a folder as a scan saw it.
type Message struct {
	// UID is the IMAP UID, unique and ascending within the folder's UIDValidity.
	UID uint32
	// Key is the Maildir unique name (the file name without the ":2,flags" info).
	Key string
	// Flags are the Maildir flag letters, sorted (D, F, P, R, S, T).
	Flags string
	// Size is the message size in octets (CRLF line endings).
	Size int64
	// Date is the internal date (the file's modification time).
	Date time.Time
}

// Snapshot is a folder's state at one scan.
type Snapshot struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    []Message
}

// Mailbox is a handle on one folder of one user.
type Mailbox struct {
	s    *Store
	User *User
	// Name is the folder name ("INBOX" or a Maildir++ folder like "Archive.2024").
	Name string
	path string
	f    *folder
}

// folder is the shared in-memory state of one folder, guarded by mu.
type folder struct {
	mu       sync.Mutex
	path     string
	loaded   bool
	validity uint32
	next     uint32
	uids     map[string]uint32 // key → UID
	names    map[string]string // key → file name in cur/
	dirty    bool              // the last save failed: the uidlist on disk is behind
}

// load reads the uidlist file once.
func (f *folder) load() error {
	if f.loaded {
		return nil
	}
	f.uids, f.names = map[string]uint32{}, map[string]string{}
	data, err := os.ReadFile(filepath.Join(f.path, uidListName))
	if errors.Is(err, fs.ErrNotExist) {
		f.validity, f.next, f.loaded = uint32(time.Now().Unix()), 1, true
		return f.save()
	}
	if err != nil {
		return fmt.Errorf("mailstore: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var v, n uint32
	if _, err := fmt.Sscanf(lines[0], "outpost-uidlist 1 %d %d", &v, &n); err != nil || v == 0 || n == 0 {
		return fmt.Errorf("mailstore: %s: bad header %q", filepath.Join(f.path, uidListName), lines[0])
	}
	f.validity, f.next = v, n
	for _, l := range lines[1:] {
		uid, key, ok := strings.Cut(l, " ")
		u, err := strconv.ParseUint(uid, 10, 32)
		if ok && err == nil && u > 0 && u < uint64(n) {
			f.uids[key] = uint32(u)
		}
	}
	f.loaded = true
	return nil
}

// save writes the uidlist atomically (temporary file, fsync, rename, directory fsync).
func (f *folder) save() error {
	var b strings.Builder
	fmt.Fprintf(&b, "outpost-uidlist 1 %d %d\n", f.validity, f.next)
	type kv struct {
		k string
		u uint32
	}
	list := make([]kv, 0, len(f.uids))
	for k, u := range f.uids {
		list = append(list, kv{k, u})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].u < list[j].u })
	for _, e := range list {
		fmt.Fprintf(&b, "%d %s\n", e.u, e.k)
	}
	err := writeFileSync(filepath.Join(f.path, uidListName), []byte(b.String()))
	f.dirty = err != nil
	return err
}

// writeFileSync replaces path with data durably.
func writeFileSync(path string, data []byte) error {
	if err := atomicfile.WriteBytes(path, 0o640, data); err != nil {
		return fmt.Errorf("mailstore: %w", err)
	}
	return nil
}

// splitName splits a Maildir file name into its key and flags ("key:2,FS" → "key", "FS").
func splitName(name string) (key, flags string) {
	key, info, _ := strings.Cut(name, ":")
	if f, ok := strings.CutPrefix(info, "2,"); ok {
		return key, f
	}
	return key, ""
}

// NormalizeFlags sorts Maildir flag letters and drops duplicates and non-letters.
func NormalizeFlags(flags string) string {
	var seen [128]bool
	for i := 0; i < len(flags); i++ {
		if c := flags[i]; c < 128 && (c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			seen[c] = true
		}
	}
	var b strings.Builder
	for c := range seen {
		if seen[c] {
			b.WriteByte(byte(c))
		}
	}
	return b.String()
}

// Scan moves new mail into cur/, assigns UIDs to messages that have none, forgets vanished
// ones, and returns the folder's messages in UID order.
func (m *Mailbox) Scan() (*Snapshot, error) {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	if err := m.f.load(); err != nil {
		return nil, err
	}
	if err := m.moveNew(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(m.path, "cur"))
	if err != nil {
		return nil, fmt.Errorf("mailstore: %w", err)
	}
	msgs, fresh := m.collect(entries)
	next := m.f.next
	changed := m.assign(fresh)
	present := map[string]bool{}
	for _, msg := range msgs {
		present[msg.Key] = true
	}
	for k := range m.f.uids {
		if !present[k] {
			delete(m.f.uids, k)
			delete(m.f.names, k)
			changed = true
		}
	}
	if changed || m.f.dirty {
		if err := m.f.save(); err != nil {
			// UIDs are handed out only once they are durable: messages that got one just now
			// wait (unnumbered, unseen) until the uidlist can be written, e.g. once a full
			// disk has room again. Forgetting vanished messages can wait too (dirty).
			msgs = m.unassign(msgs, fresh, next)
		}
	}
	for i := range msgs {
		msgs[i].UID = m.f.uids[msgs[i].Key]
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
	return &Snapshot{UIDValidity: m.f.validity, UIDNext: m.f.next, Messages: msgs}, nil
}

// moveNew renames every file in new/ into cur/ with an empty flag set.
func (m *Mailbox) moveNew() error {
	entries, err := os.ReadDir(filepath.Join(m.path, "new"))
	if err != nil {
		return fmt.Errorf("mailstore: %w", err)
	}
	moved := false
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		key, _ := splitName(e.Name())
		if err := os.Rename(filepath.Join(m.path, "new", e.Name()), filepath.Join(m.path, "cur", key+":2,")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mailstore: %w", err)
		}
		moved = true
	}
	if moved {
		return syncDir(filepath.Join(m.path, "cur"))
	}
	return nil
}

// collect stats the files of cur/ and returns them, plus the keys that have no UID yet.
func (m *Mailbox) collect(entries []os.DirEntry) (msgs []Message, fresh []Message) {
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		key, flags := splitName(e.Name())
		msg := Message{Key: key, Flags: NormalizeFlags(flags), Size: info.Size(), Date: info.ModTime()}
		m.f.names[key] = e.Name()
		msgs = append(msgs, msg)
		if _, ok := m.f.uids[key]; !ok {
			fresh = append(fresh, msg)
		}
	}
	return msgs, fresh
}

// assign gives fresh messages UIDs in arrival order; it reports whether any were assigned.
func (m *Mailbox) assign(fresh []Message) bool {
	sort.Slice(fresh, func(i, j int) bool {
		if !fresh[i].Date.Equal(fresh[j].Date) {
			return fresh[i].Date.Before(fresh[j].Date)
		}
		return fresh[i].Key < fresh[j].Key
	})
	for _, msg := range fresh {
		m.f.uids[msg.Key] = m.f.next
		m.f.next++
	}
	return len(fresh) > 0
}

// unassign takes back the UIDs just given to fresh messages (the uidlist could not be
// written) and returns msgs without them (the caller holds f.mu).
func (m *Mailbox) unassign(msgs, fresh []Message, next uint32) []Message {
	m.f.dirty = true
	if len(fresh) == 0 {
		return msgs
	}
	isFresh := map[string]bool{}
	for _, msg := range fresh {
		delete(m.f.uids, msg.Key)
		isFresh[msg.Key] = true
	}
	m.f.next = next
	kept := msgs[:0]
	for _, msg := range msgs {
		if !isFresh[msg.Key] {
			kept = append(kept, msg)
		}
	}
	return kept
}

// Open opens a message's file for reading.
func (m *Mailbox) Open(key string) (*os.File, error) {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	name, err := m.fileName(key)
	if err != nil {
		return nil, err
	}
	fh, err := os.Open(filepath.Join(m.path, "cur", name))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNoMessage, key)
	}
	return fh, nil
}

// ReadAll returns a message's content, at most limit bytes (ErrNoMessage if it is gone).
func (m *Mailbox) ReadAll(key string, limit int64) ([]byte, error) {
	fh, err := m.Open(key)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, limit))
}

// fileName finds the current file name of key in cur/ (the caller holds f.mu).
func (m *Mailbox) fileName(key string) (string, error) {
	if err := m.f.load(); err != nil {
		return "", err
	}
	if name, ok := m.f.names[key]; ok {
		if _, err := os.Lstat(filepath.Join(m.path, "cur", name)); err == nil {
			return name, nil
		}
	}
	matches, _ := filepath.Glob(filepath.Join(m.path, "cur", globEscape(key)+":*"))
	if len(matches) == 0 {
		if _, err := os.Lstat(filepath.Join(m.path, "cur", key)); err == nil {
			matches = []string{key}
		}
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("%w: %s", ErrNoMessage, key)
	}
	name := filepath.Base(matches[0])
	m.f.names[key] = name
	return name, nil
}

// globEscape quotes glob metacharacters in a Maildir key.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(s)
}

// SetFlags replaces a message's Maildir flags (by renaming its file) and returns the new set.
func (m *Mailbox) SetFlags(key, flags string) (string, error) {
	flags = NormalizeFlags(flags)
	m.f.mu.Lock()
	name, err := m.fileName(key)
	if err != nil {
		m.f.mu.Unlock()
		return "", err
	}
	newName := key + ":2," + flags
	if newName != name {
		if err := os.Rename(filepath.Join(m.path, "cur", name), filepath.Join(m.path, "cur", newName)); err != nil {
			m.f.mu.Unlock()
			return "", fmt.Errorf("mailstore: set flags: %w", err)
		}
		m.f.names[key] = newName
	}
	m.f.mu.Unlock()
	if newName != name {
		m.s.notify(m.path)
	}
	return flags, nil
}

// Remove deletes messages for good (POP3 QUIT, IMAP EXPUNGE). Missing messages are ignored.
func (m *Mailbox) Remove(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	m.f.mu.Lock()
	var firstErr error
	for _, key := range keys {
		name, err := m.fileName(key)
		if err == nil {
			err = os.Remove(filepath.Join(m.path, "cur", name))
		}
		if err != nil && !errors.Is(err, ErrNoMessage) && !errors.Is(err, fs.ErrNotExist) {
			if firstErr == nil {
				firstErr = fmt.Errorf("mailstore: remove: %w", err)
			}
			continue // still there: it keeps its UID
		}
		delete(m.f.uids, key)
		delete(m.f.names, key)
	}
	if err := syncDir(filepath.Join(m.path, "cur")); err != nil && firstErr == nil {
		firstErr = fmt.Errorf("mailstore: %w", err)
	}
	// The messages are gone whether or not the uidlist can be rewritten now: a stale entry
	// only names a file that no longer exists, and the next Scan retries the save (dirty).
	_ = m.f.save()
	m.f.mu.Unlock()
	m.s.notify(m.path)
	return firstErr
}

// Append stores a message in the folder with the given flags and internal date (zero: now) and
// returns it with its UID. The content is expected with CRLF line endings.
func (m *Mailbox) Append(r io.Reader, flags string, date time.Time) (Message, error) {
	key := m.s.uniqueKey()
	tmp := filepath.Join(m.path, "tmp", key)
	size, err := writeSync(tmp, r)
	if err != nil {
		return Message{}, err
	}
	if !date.IsZero() {
		_ = os.Chtimes(tmp, date, date)
	} else {
		date = time.Now()
	}
	flags = NormalizeFlags(flags)
	m.f.mu.Lock()
	msg, err := m.commitAppend(tmp, key, flags)
	m.f.mu.Unlock()
	if err != nil {
		os.Remove(tmp)
		return Message{}, err
	}
	msg.Size, msg.Date = size, date
	m.s.notify(m.path)
	return msg, nil
}

// commitAppend renames tmp into cur/ and assigns the UID (the caller holds f.mu).
func (m *Mailbox) commitAppend(tmp, key, flags string) (Message, error) {
	if err := m.f.load(); err != nil {
		return Message{}, err
	}
	name := key + ":2," + flags
	if err := os.Rename(tmp, filepath.Join(m.path, "cur", name)); err != nil {
		return Message{}, fmt.Errorf("mailstore: append: %w", err)
	}
	if err := syncDir(filepath.Join(m.path, "cur")); err != nil {
		return Message{}, fmt.Errorf("mailstore: append: %w", err)
	}
	uid := m.f.next
	m.f.next++
	m.f.uids[key], m.f.names[key] = uid, name
	if err := m.f.save(); err != nil {
		// Not appended after all: the message must not turn up later under a UID the
		// client was never told (UIDNEXT stays past it, so the UID is never reused).
		delete(m.f.uids, key)
		delete(m.f.names, key)
		os.Remove(filepath.Join(m.path, "cur", name))
		return Message{}, err
	}
	return Message{UID: uid, Key: key, Flags: flags}, nil
}

// writeSync writes r to a new file at path and fsyncs it.
func writeSync(path string, r io.Reader) (int64, error) {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return 0, fmt.Errorf("mailstore: %w", err)
	}
	w := bufio.NewWriterSize(fh, 64<<10)
	n, err := io.Copy(w, r)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("mailstore: write %s: %w", filepath.Base(path), err)
	}
	return n, nil
}

// Deliver stores a message in the user's INBOX by the Maildir protocol: write and fsync in tmp/,
// then link into new/ and fsync the directory. A non-empty key makes delivery idempotent: when
// a message with that key is already in the INBOX, Deliver does nothing and returns false.
func (s *Store) Deliver(u *User, key string, r io.Reader) (bool, error) {
	if key == "" {
		key = s.uniqueKey()
	} else if strings.ContainsAny(key, "/:\x00") || strings.HasPrefix(key, ".") {
		return false, fmt.Errorf("mailstore: bad delivery key %q", key)
	}
	box, err := s.Mailbox(u, Inbox)
	if err != nil {
		return false, err
	}
	box.f.mu.Lock()
	_, exists := box.existsLocked(key)
	box.f.mu.Unlock()
	if exists {
		return false, nil
	}
	tmp := filepath.Join(box.path, "tmp", key)
	os.Remove(tmp) // a leftover from a crash before the link
	if _, err := writeSync(tmp, r); err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	box.f.mu.Lock()
	ok, err := box.linkNew(tmp, key)
	box.f.mu.Unlock()
	if ok {
		s.notify(box.path)
	}
	return ok, err
}

// linkNew links tmp into new/ as key unless key is already there (the caller holds f.mu).
func (m *Mailbox) linkNew(tmp, key string) (bool, error) {
	if _, exists := m.existsLocked(key); exists {
		return false, nil
	}
	if err := os.Link(tmp, filepath.Join(m.path, "new", key)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("mailstore: deliver: %w", err)
	}
	if err := syncDir(filepath.Join(m.path, "new")); err != nil {
		return false, fmt.Errorf("mailstore: deliver: %w", err)
	}
	return true, nil
}

// existsLocked reports whether key is in new/ or cur/ (the caller holds f.mu).
func (m *Mailbox) existsLocked(key string) (string, bool) {
	if _, err := os.Lstat(filepath.Join(m.path, "new", key)); err == nil {
		return "new", true
	}
	if _, err := m.fileName(key); err == nil {
		return "cur", true
	}
	return "", false
}

// seededName lists, per user, the keys of demo messages already seeded once.
const seededName = "outpost-seeded"

// DeliverOnce delivers a message with key unless a message with that key was ever delivered by
// DeliverOnce before (even if the user has deleted it since): demo content seeded on first start.
func (s *Store) DeliverOnce(u *User, key string, r io.Reader) (bool, error) {
	path := filepath.Join(s.userRoot(u), seededName)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("mailstore: %w", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l == key {
			return false, nil
		}
	}
	ok, err := s.Deliver(u, key, r)
	if err != nil {
		return false, err
	}
	return ok, writeFileSync(path, append(data, []byte(key+"\n")...))
}
