package cache

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/internal/atomicfile"
)

// The disk tier's record of the tag purges in progress, banFile in cache.disk_dir: a purge by
// tag is durable when it answers, though its objects leave the disk in the background — after
// a crash or restart before the reclaimer finished, the start-up scan drops every file whose
// response was received before the purge of one of its tags. A ban leaves the record when it
// is lifted; the record is removed once the scan has applied it.

// banFile is the record's name (skipped by the disk tier's scan, as are its temporary files).
const banFile = "tag-bans.json"

// skipBanFile reports the record or a temporary file of it (at path, named name) for the
// disk tier's scan to leave alone, removing a temporary one a crash left behind.
func skipBanFile(path, name string) bool {
	if name == banFile {
		return true
	}
	if strings.HasPrefix(name, "."+banFile) {
		_ = os.Remove(path)
		return true
	}
	return false
}

// diskBans is the record: each banned tag and the time of its purge, and the store order of
// that purge (to lift the right one).
type diskBans struct {
	path string
	log  *slog.Logger
	mu   sync.Mutex
	m    map[string]diskBan
}

// diskBan is one tag's purge.
type diskBan struct {
	At  time.Time `json:"at"`
	seq uint64
}

// loadDiskBans reads the record in dir (empty when absent; unreadable: logged and empty).
func loadDiskBans(dir string, log *slog.Logger) *diskBans {
	b := &diskBans{path: filepath.Join(dir, banFile), log: log, m: map[string]diskBan{}}
	data, err := os.ReadFile(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return b
	}
	if err == nil {
		err = json.Unmarshal(data, &b.m)
	}
	if err != nil {
		log.Warn("cache: tag purge record unreadable: objects purged by tag before the restart may be served again", "path", b.path, "err", err)
		b.m = map[string]diskBan{}
	}
	return b
}

// drops reports whether a file found at start-up was received before a purge of its tags.
func (b *diskBans) drops(e *entry) bool {
	for _, t := range e.tags {
		if ban, ok := b.m[t]; ok && !e.timing.responseTime.After(ban.At) {
			return true
		}
	}
	return false
}

// add records tags purged at now (store order seq) and writes the record.
func (b *diskBans) add(tags []string, seq uint64, now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range tags {
		b.m[t] = diskBan{At: now, seq: seq}
	}
	b.writeLocked()
}

// lift removes tag's ban of store order seq from the record (a later purge's stays).
func (b *diskBans) lift(tag string, seq uint64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ban, ok := b.m[tag]; ok && ban.seq == seq {
		delete(b.m, tag)
		b.writeLocked()
	}
}

// clear empties the record (after the start-up scan applied it).
func (b *diskBans) clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.m)
	b.writeLocked()
}

// writeLocked replaces the record's file (removes it when empty); b.mu held.
func (b *diskBans) writeLocked() {
	var err error
	if len(b.m) == 0 {
		if err = os.Remove(b.path); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else {
		data, _ := json.Marshal(b.m)
		err = atomicfile.WriteBytes(b.path, 0o640, data)
	}
	if err != nil {
		b.log.Warn("cache: tag purge record not written: a restart may serve purged objects again", "path", b.path, "err", err)
	}
}
