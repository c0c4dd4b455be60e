package tmpfstest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/outpost-proxy/outpost/internal/diskspace"
)

// TestFillRelease: a filled tmpfs refuses a write with ENOSPC (diskspace.IsFull), a released
// one takes it; a read-only one refuses with EROFS.
func TestFillRelease(t *testing.T) {
	dir := Mount(t, 1<<20)
	f := Fill(t, dir, 0)
	if free, err := diskspace.Free(dir); err != nil || free != 0 {
		t.Fatalf("free after Fill = %d, %v; want 0", free, err)
	}
	err := os.WriteFile(filepath.Join(dir, "x"), make([]byte, 8192), 0o644)
	if !diskspace.IsFull(err) {
		t.Fatalf("write on a full tmpfs: %v, want ENOSPC", err)
	}
	f.Release(t)
	if err := os.WriteFile(filepath.Join(dir, "x"), make([]byte, 8192), 0o644); err != nil {
		t.Fatalf("write after Release: %v", err)
	}
	ReadOnly(t, dir)
	if err := os.Remove(filepath.Join(dir, "x")); !os.IsPermission(err) && !errorsIsEROFS(err) {
		t.Fatalf("remove on a read-only tmpfs: %v, want EROFS", err)
	}
	Writable(t, dir)
	if err := os.Remove(filepath.Join(dir, "x")); err != nil {
		t.Fatalf("remove after Writable: %v", err)
	}
}

func errorsIsEROFS(err error) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == syscall.EROFS
}
