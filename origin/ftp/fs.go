package ftp

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/spf13/afero"
)

// jailFS is one session's file system: an afero.Fs over an os.Root, so no name (symlinks
// included) resolves outside the user's directory. Read-only sessions get EPERM (550) for
// every change; stored files are capped at maxUpload bytes (552).
type jailFS struct {
	root      *os.Root
	readOnly  bool
	maxUpload int64
	stats     *fsStats
	// full is set when a write of this session failed for lack of space, until the
	// transfer's failure reply has been turned into 452 (see diskfull.go).
	full atomic.Bool
}

// fsStats counts open files (to let Shutdown wait for transfers) and bytes moved.
type fsStats struct {
	open     atomic.Int64 // files currently open through any session
	sent     atomic.Int64 // bytes read from files (downloads)
	received atomic.Int64 // bytes written to files (uploads)
}

var _ afero.Fs = (*jailFS)(nil)

// rel turns the library's absolute, slash-separated name into a name relative to the root.
func rel(name string) string {
	p := path.Clean("/" + name)
	if p == "/" {
		return "."
	}
	return p[1:]
}

// errReadOnly is returned for changes on a read-only session.
var errReadOnly = fmt.Errorf("read-only account: %w", fs.ErrPermission)

// writable returns errReadOnly on read-only sessions.
func (j *jailFS) writable() error {
	if j.readOnly {
		return errReadOnly
	}
	return nil
}

// Name names the file system.
func (j *jailFS) Name() string { return "outpost-jail" }

// Create creates or truncates name for writing.
func (j *jailFS) Create(name string) (afero.File, error) {
	return j.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, fileMode)
}

// Modes of what clients create, whatever the library asks for (it asks 0777 for uploads):
// files are never executable, directories are traversable (both then minus the umask).
const (
	fileMode os.FileMode = 0o644
	dirMode  os.FileMode = 0o755
)

// Mkdir creates a directory (mode 0755).
func (j *jailFS) Mkdir(name string, _ os.FileMode) error {
	if err := j.writable(); err != nil {
		return err
	}
	return j.root.Mkdir(rel(name), dirMode)
}

// MkdirAll creates a directory and its parents (mode 0755, as Mkdir).
func (j *jailFS) MkdirAll(name string, _ os.FileMode) error {
	if err := j.writable(); err != nil {
		return err
	}
	return j.root.MkdirAll(rel(name), dirMode)
}

// Open opens name for reading.
func (j *jailFS) Open(name string) (afero.File, error) {
	return j.OpenFile(name, os.O_RDONLY, 0)
}

// OpenFile opens name; writes go through the upload limit.
func (j *jailFS) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	writing := flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0
	if writing {
		if err := j.writable(); err != nil {
			return nil, err
		}
	}
	r := rel(name)
	var startSize int64 = -1 // -1: the file did not exist before
	if writing {
		if fi, err := j.root.Stat(r); err == nil {
			startSize = fi.Size()
		}
	}
	if flag&os.O_CREATE != 0 {
		perm = fileMode
	}
	f, err := j.root.OpenFile(r, flag, perm)
	if err != nil {
		if diskspace.IsFull(err) {
			j.full.Store(true)
		}
		return nil, err
	}
	if flag&os.O_TRUNC != 0 && startSize > 0 {
		startSize = 0
	}
	jf := &jailFile{File: f, fs: j, rel: r, startSize: startSize}
	if flag&os.O_APPEND != 0 {
		if _, err := jf.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, err
		}
	}
	j.stats.open.Add(1)
	return jf, nil
}

// Remove deletes a file or an empty directory.
func (j *jailFS) Remove(name string) error {
	if err := j.writable(); err != nil {
		return err
	}
	return j.root.Remove(rel(name))
}

// RemoveAll deletes a tree.
func (j *jailFS) RemoveAll(name string) error {
	if err := j.writable(); err != nil {
		return err
	}
	if rel(name) == "." {
		return fmt.Errorf("refusing to remove the root: %w", fs.ErrPermission)
	}
	return j.root.RemoveAll(rel(name))
}

// Rename moves oldname to newname, both inside the root.
func (j *jailFS) Rename(oldname, newname string) error {
	if err := j.writable(); err != nil {
		return err
	}
	return j.root.Rename(rel(oldname), rel(newname))
}

// Stat describes name, following symlinks that stay inside the root.
func (j *jailFS) Stat(name string) (os.FileInfo, error) { return j.root.Stat(rel(name)) }

// Chmod changes permission bits.
func (j *jailFS) Chmod(name string, mode os.FileMode) error {
	if err := j.writable(); err != nil {
		return err
	}
	return j.root.Chmod(rel(name), mode)
}

// Chown is refused: the server runs as one system user.
func (j *jailFS) Chown(string, int, int) error {
	return fmt.Errorf("chown: %w", fs.ErrPermission)
}

// Chtimes sets access and modification times (MFMT).
func (j *jailFS) Chtimes(name string, atime, mtime time.Time) error {
	if err := j.writable(); err != nil {
		return err
	}
	return j.root.Chtimes(rel(name), atime, mtime)
}

// jailFile is an open file of a session; it counts bytes and enforces the upload limit.
type jailFile struct {
	*os.File
	fs        *jailFS
	rel       string
	startSize int64 // size before this upload, -1 if the file is new
	pos       int64 // write position, for the size limit
	rollback  bool  // the upload failed (size limit, disk full): undo it at Close
	full      bool  // a write failed for lack of space
	closed    bool
}

// errTooBig is returned when an upload passes max_upload_size; the library answers 552.
var errTooBig = fmt.Errorf("file exceeds the upload size limit: %w", ftpserver.ErrStorageExceeded)

// Read counts downloaded bytes.
func (f *jailFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.fs.stats.sent.Add(int64(n))
	return n, err
}

// WriteTo sends the rest of the file to w (with sendfile when w is a socket), counting it.
func (f *jailFile) WriteTo(w io.Writer) (int64, error) {
	n, err := f.File.WriteTo(w)
	f.fs.stats.sent.Add(n)
	return n, err
}

// Write writes unless the file would pass the upload limit.
func (f *jailFile) Write(p []byte) (int, error) {
	if f.fs.maxUpload > 0 && f.pos+int64(len(p)) > f.fs.maxUpload {
		f.rollback = true
		return 0, errTooBig
	}
	n, err := f.File.Write(p)
	f.pos += int64(n)
	f.fs.stats.received.Add(int64(n))
	if diskspace.IsFull(err) {
		f.rollback, f.full = true, true
		f.fs.full.Store(true)
	}
	return n, err
}

// WriteString writes s through Write.
func (f *jailFile) WriteString(s string) (int, error) { return f.Write([]byte(s)) }

// WriteAt is not used by the server; it is refused so the limit cannot be bypassed.
func (f *jailFile) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("WriteAt is not supported")
}

// ReadFrom copies through Write (hiding *os.File's ReadFrom, which would skip the limit).
func (f *jailFile) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.CopyBuffer(writerOnly{f}, r, make([]byte, 64<<10))
	f.drainAfterFull(r)
	return n, err
}

// writerOnly hides every method but Write.
type writerOnly struct{ io.Writer }

// Seek moves the file position (REST) and keeps the write position in step.
func (f *jailFile) Seek(offset int64, whence int) (int64, error) {
	n, err := f.File.Seek(offset, whence)
	if err == nil {
		f.pos = n
	}
	return n, err
}

// Close closes the file; an upload that hit the limit or filled the disk is rolled back to
// its previous size (or removed if it was new).
func (f *jailFile) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.fs.stats.open.Add(-1)
	if f.rollback && f.startSize >= 0 {
		f.File.Truncate(f.startSize)
	}
	err := f.File.Close()
	if diskspace.IsFull(err) {
		f.rollback = true
		f.fs.full.Store(true)
	}
	if f.rollback && f.startSize < 0 {
		f.fs.root.Remove(f.rel)
	}
	return err
}

// ReadDir lists a directory sorted by name (the library uses it for LIST, NLST and MLSD).
func (j *jailFS) ReadDir(name string) ([]os.FileInfo, error) {
	f, err := j.root.Open(rel(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	infos, err := f.Readdir(-1)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(infos, func(a, b os.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	return infos, nil
}
