package cache

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The disk tier keeps one file per stored response:
//
//	"OPC1" | body | meta (JSON) | metaLen uint32 | bodyLen uint64 | crc32c uint32
//
// The CRC (Castagnoli) covers every byte before it. Files are written to a temporary name,
// fsynced and renamed into place, so a crash leaves either the old file, the new one or a
// temporary file that the start-up scan deletes; a file whose size or checksum does not add up
// is deleted and never served.

const (
	diskMagic   = "OPC1"
	trailerSize = 16
	tmpPrefix   = "tmp-"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a disk entry whose size or checksum is wrong.
var errCorrupt = errors.New("cache: corrupt disk entry")

// diskMeta is the metadata part of a disk entry.
type diskMeta struct {
	Key          string        `json:"key"`
	Secondary    string        `json:"secondary,omitempty"`
	Vary         []string      `json:"vary,omitempty"`
	Status       int           `json:"status"`
	Header       http.Header   `json:"header"`
	RequestTime  time.Time     `json:"request_time"`
	ResponseTime time.Time     `json:"response_time"`
	InitialAge   time.Duration `json:"initial_age"`
	Lifetime     time.Duration `json:"lifetime"`
	NoCache      bool          `json:"no_cache,omitempty"`
	Revalidate   bool          `json:"revalidate,omitempty"`
	SWR          time.Duration `json:"swr"`
	SIE          time.Duration `json:"sie"`
	Heuristic    bool          `json:"heuristic,omitempty"`
	Tags         []string      `json:"tags,omitempty"`        // purge tags (tags.go): the index is rebuilt from them at start-up
	SoftPurged   int64         `json:"soft_purged,omitempty"` // soft-purge mark when the file was written (softpurge.go)
}

// metaOf captures an entry's metadata.
func metaOf(e *entry) diskMeta {
	return diskMeta{
		Key: e.key, Secondary: e.secondary, Vary: e.vary, Status: e.status, Header: e.header,
		RequestTime: e.timing.requestTime, ResponseTime: e.timing.responseTime,
		InitialAge: e.timing.initialAge, Lifetime: e.policy.lifetime, NoCache: e.policy.noCache,
		Revalidate: e.policy.revalidate, SWR: e.policy.swr, SIE: e.policy.sie, Heuristic: e.heuristic,
		Tags: e.tags, SoftPurged: loadMark(e.purged),
	}
}

// loadMark reads a soft-purge mark (0 without one).
func loadMark(m *atomic.Int64) int64 {
	if m == nil {
		return 0
	}
	return m.Load()
}

// entry rebuilds a body-less entry from metadata.
func (m *diskMeta) entry(size int64) *entry {
	e := &entry{
		key: m.Key, secondary: m.Secondary, vary: m.Vary, status: m.Status, header: m.Header,
		size: size, heuristic: m.Heuristic,
		timing: timing{requestTime: m.RequestTime, responseTime: m.ResponseTime, initialAge: m.InitialAge},
		policy: policy{lifetime: m.Lifetime, noCache: m.NoCache, revalidate: m.Revalidate, swr: m.SWR, sie: m.SIE},
	}
	if e.header == nil {
		e.header = http.Header{}
	}
	e.used = new(atomic.Int64)
	e.tags = m.Tags
	e.purged = newPurgeMark()
	e.purged.Store(max(m.SoftPurged, 0))
	e.item = itemKey(primaryHash(e.key), e.key, e.secondary)
	return e.build()
}

// diskItem is one file of the disk tier.
type diskItem struct {
	e        *entry // metadata; body nil
	path     string
	fileSize int64
	atime    *atomic.Int64 // last use, unix seconds (eviction order), shared with the entry
	verified atomic.Bool   // checksum checked since start
}

// diskStore is the disk tier.
type diskStore struct {
	dir       string
	budget    int64
	maxObject int64
	log       *slog.Logger
	stats     *counters
	now       func() time.Time
	onRemove  func(*entry) // index upkeep; called without d.mu held
	onAdd     func(*entry) // index upkeep after a write; called without d.mu held

	mu      sync.Mutex
	items   map[uint64]*diskItem
	used    int64
	pending map[uint64]int // queued writes per item key
	tomb    map[uint64]int // queued writes cancelled by a removal

	queue  chan *entry
	wg     sync.WaitGroup
	closed atomic.Bool
	gate   *diskGate // admission while the file system fills (diskspace.go)
}

// openDisk creates the directory, deletes leftover temporary files and rebuilds the index by
// scanning. found is called for every intact entry.
func openDisk(d *diskStore, found func(*entry)) error {
	if err := os.MkdirAll(d.dir, 0o750); err != nil {
		return fmt.Errorf("cache: disk tier: %w", err)
	}
	d.items = map[uint64]*diskItem{}
	d.pending, d.tomb = map[uint64]int{}, map[uint64]int{}
	d.queue = make(chan *entry, 1024)
	d.gate = newDiskGate(d.dir, d.log, d.stats, d.now)
	err := filepath.WalkDir(d.dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			_ = os.Remove(path)
			return nil
		}
		if skipBanFile(path, de.Name()) {
			return nil // the tag purges' record (tagbans.go)
		}
		it, err := scanFile(path)
		if err != nil {
			d.stats.diskCorrupt.Add(1)
			d.log.Warn("cache: dropping disk entry", "path", path, "err", err)
			_ = os.Remove(path)
			return nil
		}
		if it.path != d.pathOf(it.e.item) {
			_ = os.Remove(path)
			return nil
		}
		d.add(it)
		found(it.e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache: disk tier scan: %w", err)
	}
	d.wg.Add(1)
	go d.writer()
	return nil
}

// scanFile reads a file's trailer and metadata and checks that its size adds up.
func scanFile(path string) (*diskItem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(len(diskMagic))+trailerSize {
		return nil, errCorrupt
	}
	var tr [trailerSize]byte
	if _, err := f.ReadAt(tr[:], size-trailerSize); err != nil {
		return nil, err
	}
	metaLen := int64(binary.BigEndian.Uint32(tr[0:4]))
	bodyLen := int64(binary.BigEndian.Uint64(tr[4:12]))
	if bodyLen < 0 || metaLen > 1<<20 || int64(len(diskMagic))+bodyLen+metaLen+trailerSize != size {
		return nil, errCorrupt
	}
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != diskMagic {
		return nil, errCorrupt
	}
	mb := make([]byte, metaLen)
	if _, err := f.ReadAt(mb, int64(len(diskMagic))+bodyLen); err != nil {
		return nil, err
	}
	var m diskMeta
	if err := json.Unmarshal(mb, &m); err != nil || m.Key == "" {
		return nil, errCorrupt
	}
	it := &diskItem{e: m.entry(bodyLen), path: path, fileSize: size}
	it.atime = it.e.used
	it.atime.Store(st.ModTime().Unix())
	return it, nil
}

// pathOf is the file of an item key: two levels of fan-out by its hex form.
func (d *diskStore) pathOf(k uint64) string {
	s := fmt.Sprintf("%016x", k)
	return filepath.Join(d.dir, s[:2], s)
}

// get returns the item for k, or nil.
func (d *diskStore) get(k uint64) *diskItem {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.items[k]
}

// add registers an item (replacing an older one for the same key).
func (d *diskStore) add(it *diskItem) {
	d.mu.Lock()
	if old := d.items[it.e.item]; old != nil {
		d.used -= old.fileSize
	}
	d.items[it.e.item] = it
	d.used += it.fileSize
	d.mu.Unlock()
}

// updateMeta replaces an item's metadata after a 304 refreshed a disk-only object: in memory at
// once, in its file in the background.
func (d *diskStore) updateMeta(it *diskItem, e *entry) {
	meta := *e
	meta.body = nil
	n := &diskItem{e: &meta, path: it.path, fileSize: it.fileSize}
	n.atime = it.atime
	n.verified.Store(it.verified.Load())
	d.mu.Lock()
	replaced := d.items[e.item] == it
	if replaced {
		d.items[e.item] = n
	}
	d.mu.Unlock()
	if replaced {
		d.rewriteMeta(n, e)
	}
}

// remove deletes the file for k.
func (d *diskStore) remove(k uint64) {
	d.mu.Lock()
	if n := d.pending[k]; n > 0 {
		d.tomb[k] = n // the queued writes of k are cancelled
	}
	it := d.items[k]
	if it != nil {
		delete(d.items, k)
		d.used -= it.fileSize
	}
	d.mu.Unlock()
	if it != nil {
		_ = os.Remove(it.path)
	}
}

// drop removes a corrupt or vanished item and tells the index.
func (d *diskStore) drop(it *diskItem, why error) {
	d.stats.diskCorrupt.Add(1)
	d.log.Warn("cache: dropping disk entry", "key", it.e.key, "err", why)
	d.remove(it.e.item)
	d.onRemove(it.e)
}

// usage returns the files and bytes the tier holds.
func (d *diskStore) usage() (n int, bytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.items), d.used
}

// enqueue hands an in-memory entry to the background writer; a full queue drops it (the entry
// is still in memory; only the warm restart loses it).
func (d *diskStore) enqueue(e *entry) {
	if d.closed.Load() || e.size > d.maxObject || !d.gate.admit(e.size) {
		return
	}
	d.mu.Lock()
	d.pending[e.item]++
	d.mu.Unlock()
	select {
	case d.queue <- e:
	default:
		d.settle(e.item)
		d.stats.diskDropped.Add(1)
	}
}

// settle accounts for one queued write of k leaving the queue and reports whether it was
// cancelled by a removal after it was queued.
func (d *diskStore) settle(k uint64) (cancelled bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending[k]--; d.pending[k] <= 0 {
		delete(d.pending, k)
	}
	if d.tomb[k] > 0 {
		if d.tomb[k]--; d.tomb[k] == 0 {
			delete(d.tomb, k)
		}
		return true
	}
	return false
}

// writer writes queued entries until the queue is closed.
func (d *diskStore) writer() {
	defer d.wg.Done()
	for e := range d.queue {
		if d.settle(e.item) {
			continue // removed (purged, invalidated) while queued
		}
		w, err := d.create()
		if err == nil {
			_, err = w.Write(e.body)
		}
		if err == nil {
			err = w.commit(e)
			_ = w.f.Close()
		}
		if err != nil {
			if w != nil {
				w.abort()
			}
			if !d.gate.failed(err) {
				d.log.Warn("cache: disk write failed", "key", e.key, "err", err)
			}
		}
	}
}

// close stops the writer after it has written everything queued.
func (d *diskStore) close() {
	d.mu.Lock()
	already := d.closed.Swap(true)
	d.mu.Unlock()
	if already {
		return
	}
	close(d.queue)
	d.wg.Wait()
}

// rewriteMeta rewrites a disk-only object's file with refreshed metadata (after a 304), in the
// background, copying the body from the current file.
func (d *diskStore) rewriteMeta(it *diskItem, e *entry) {
	d.mu.Lock()
	if d.closed.Load() {
		d.mu.Unlock()
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		f, err := d.openFile(it)
		if err != nil {
			return
		}
		defer f.Close()
		w, err := d.create()
		if err != nil {
			return
		}
		meta := *e
		meta.body = nil
		if _, err = io.Copy(w, io.NewSectionReader(f, bodyOffset, it.e.size)); err == nil {
			err = w.commit(&meta)
		}
		_ = w.f.Close()
		if err != nil {
			w.abort()
			if !d.gate.failed(err) {
				d.log.Warn("cache: disk metadata rewrite failed", "key", e.key, "err", err)
			}
		}
	}()
}

// diskWriter writes one entry file: the body streams in (readers may read what is written so
// far with ReadAt), then commit adds the metadata and the checksum and renames it into place.
type diskWriter struct {
	d    *diskStore
	f    *os.File
	name string // current name (temporary until commit)
	crc  hash.Hash32
	n    atomic.Int64 // body bytes written
}

// create starts a new entry file under a temporary name.
func (d *diskStore) create() (*diskWriter, error) {
	if !d.gate.admit(0) {
		return nil, errDiskFull
	}
	f, err := os.CreateTemp(d.dir, tmpPrefix+"*")
	if err != nil {
		d.gate.failed(err)
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	w := &diskWriter{d: d, f: f, name: f.Name(), crc: crc32.New(crcTable)}
	if _, err := w.f.Write([]byte(diskMagic)); err != nil {
		w.abort()
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	w.crc.Write([]byte(diskMagic))
	return w, nil
}

// Write appends body bytes.
func (w *diskWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.crc.Write(p[:n])
	w.n.Add(int64(n))
	if err != nil {
		w.d.gate.failed(err)
		return n, fmt.Errorf("cache: disk tier: %w", err)
	}
	return n, nil
}

// ReadAt reads body bytes already written.
func (w *diskWriter) ReadAt(p []byte, off int64) (int, error) {
	return w.f.ReadAt(p, int64(len(diskMagic))+off)
}

// commit finishes the file for e (whose size must equal the bytes written), makes it durable
// and renames it into place.
func (w *diskWriter) commit(e *entry) error {
	mb, err := json.Marshal(metaOf(e))
	if err != nil {
		return fmt.Errorf("cache: disk meta: %w", err)
	}
	if e.size != w.n.Load() {
		return fmt.Errorf("cache: disk tier: body is %d bytes, entry says %d", w.n.Load(), e.size)
	}
	var tr [trailerSize]byte
	binary.BigEndian.PutUint32(tr[0:4], uint32(len(mb)))
	binary.BigEndian.PutUint64(tr[4:12], uint64(e.size))
	w.crc.Write(mb)
	w.crc.Write(tr[:12])
	binary.BigEndian.PutUint32(tr[12:16], w.crc.Sum32())
	_, err = w.f.Write(mb)
	if err == nil {
		_, err = w.f.Write(tr[:])
	}
	if err == nil {
		err = w.f.Sync()
	}
	if err != nil {
		w.d.gate.failed(err)
		return fmt.Errorf("cache: disk tier: %w", err)
	}
	path := w.d.pathOf(e.item)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("cache: disk tier: %w", err)
	}
	size := int64(len(diskMagic)) + e.size + int64(len(mb)) + trailerSize
	if err := os.Rename(w.f.Name(), path); err != nil {
		return fmt.Errorf("cache: disk tier: %w", err)
	}
	w.name = path
	meta := *e
	meta.body = nil
	it := &diskItem{e: &meta, path: path, fileSize: size}
	it.atime = e.used
	if it.atime == nil {
		it.atime = new(atomic.Int64)
	}
	if it.atime.Load() == 0 {
		it.atime.Store(w.d.now().Unix()) // otherwise keep the entry's last use, not the write time
	}
	it.verified.Store(true)
	w.d.add(it)
	if w.d.onAdd != nil {
		w.d.onAdd(it.e)
	}
	w.d.evict()
	return nil
}

// abort deletes an unfinished file.
func (w *diskWriter) abort() {
	_ = w.f.Close()
	_ = os.Remove(w.name)
}

// evict removes the least recently used files until the tier is within 90% of its budget.
func (d *diskStore) evict() {
	d.mu.Lock()
	if d.used <= d.budget {
		d.mu.Unlock()
		return
	}
	all := make([]*diskItem, 0, len(d.items))
	for _, it := range d.items {
		all = append(all, it)
	}
	slices.SortFunc(all, func(a, b *diskItem) int { return int(a.atime.Load() - b.atime.Load()) })
	var victims []*diskItem
	for _, it := range all {
		if d.used <= d.budget/10*9 {
			break
		}
		delete(d.items, it.e.item)
		d.used -= it.fileSize
		victims = append(victims, it)
	}
	d.mu.Unlock()
	for _, it := range victims {
		_ = os.Remove(it.path)
		d.stats.diskEvictions.Add(1)
		d.onRemove(it.e)
	}
}

// readAll reads and checks a whole entry file, returning its body.
func (d *diskStore) readAll(it *diskItem) ([]byte, error) {
	data, err := os.ReadFile(it.path)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != it.fileSize || !checksumOK(data) {
		return nil, errCorrupt
	}
	it.atime.Store(d.now().Unix())
	it.verified.Store(true)
	return data[len(diskMagic) : int64(len(diskMagic))+it.e.size], nil
}

// checksumOK verifies a whole file held in memory.
func checksumOK(data []byte) bool {
	n := len(data) - 4
	return crc32.Checksum(data[:n], crcTable) == binary.BigEndian.Uint32(data[n:])
}

// openFile opens an entry file for reading its body (at offset bodyOffset), checking the
// checksum the first time it is used after start-up.
func (d *diskStore) openFile(it *diskItem) (*os.File, error) {
	f, err := os.Open(it.path)
	if err != nil {
		return nil, err
	}
	if !it.verified.Load() {
		h := crc32.New(crcTable)
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, it.fileSize-4)); err != nil {
			f.Close()
			return nil, err
		}
		var sum [4]byte
		if _, err := f.ReadAt(sum[:], it.fileSize-4); err != nil || h.Sum32() != binary.BigEndian.Uint32(sum[:]) {
			f.Close()
			return nil, errCorrupt
		}
		it.verified.Store(true)
	}
	it.atime.Store(d.now().Unix())
	return f, nil
}

// fileBody is the body of a disk-tier entry read from its file (opened by openFile): a reader
// of its section, and an io.WriterTo that hands the writer the file itself at the body's
// offset (an *io.LimitedReader over the *os.File), so that a socket sends it with
// sendfile(2) instead of copying it through memory.
type fileBody struct {
	*io.SectionReader
	f   *os.File
	off int64 // where the body starts in the file
}

// newFileBody returns the body of n bytes at off in f.
func newFileBody(f *os.File, off, n int64) *fileBody {
	return &fileBody{SectionReader: io.NewSectionReader(f, off, n), f: f, off: off}
}

// WriteTo writes the rest of the body to w, from the file's own offset.
func (b *fileBody) WriteTo(w io.Writer) (int64, error) {
	pos, _ := b.Seek(0, io.SeekCurrent)
	if _, err := b.f.Seek(b.off+pos, io.SeekStart); err != nil {
		return 0, fmt.Errorf("cache: disk body: %w", err)
	}
	n, err := io.Copy(w, &io.LimitedReader{R: b.f, N: b.Size() - pos})
	_, _ = b.Seek(pos+n, io.SeekStart)
	return n, err
}

// bodyOffset is where the body starts in an entry file.
const bodyOffset = int64(len(diskMagic))
