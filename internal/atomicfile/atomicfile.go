// Package atomicfile replaces files atomically and durably: readers see the old content or
// the new, never a part, and the new content is on disk when Write returns.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with what fill writes: into a temporary file in the same directory
// (created with its parents as needed), fsynced, renamed over path, and the directory fsynced.
// On an error before the rename path is left as it was.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // after the rename there is nothing left to remove
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	for _, step := range []func() error{func() error { return f.Chmod(perm) }, f.Sync, f.Close,
		func() error { return os.Rename(f.Name(), path) }} {
		if err := step(); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	// The rename is durable only once the directory is synced: a failure there is reported
	// (mail accepted with 250 depends on it), though path already holds the new content.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// WriteBytes replaces path with data, as Write does.
func WriteBytes(path string, perm os.FileMode, data []byte) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
