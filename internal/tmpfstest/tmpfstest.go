// Package tmpfstest gives disk-full tests a small file system of their own: a tmpfs of a
// given size mounted on a test directory (unmounted at cleanup), filled to the brim and
// emptied again, or made read-only. Mounting needs root (CAP_SYS_ADMIN); where it is not
// permitted the test is skipped, saying so. Only tests import it.
package tmpfstest

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/outpost-proxy/outpost/internal/diskspace"
)

// Mount mounts a tmpfs of size bytes (rounded up to pages by the kernel) on a new temporary
// directory and returns its path. It is lazily unmounted when the test ends, so files a
// server still holds open do not keep it busy.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+strconv.FormatInt(size, 10)+",mode=0755"); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("disk-full test needs to mount a tmpfs (root, CAP_SYS_ADMIN): %v", err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Filler is a file that takes up the free space of a file system.
type Filler struct {
	path string
}

// Fill takes all but leave bytes of the free space of the file system holding dir (leave 0:
// all of it) with a file named .filler-N in dir, and returns it. Release gives the space back.
func Fill(t testing.TB, dir string, leave int64) *Filler {
	t.Helper()
	free, err := diskspace.Free(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, ".filler-")
	if err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	defer f.Close()
	if n := free - leave; n > 0 {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
			t.Fatalf("fill %s with %d bytes: %v", dir, n, err)
		}
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	return &Filler{path: f.Name()}
}

// Release removes the filler, giving its space back.
func (f *Filler) Release(t testing.TB) {
	t.Helper()
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("release %s: %v", f.path, err)
	}
}

// ReadOnly remounts the tmpfs at dir read-only (every write, rename and unlink then fails
// with EROFS, even for root) until Writable, or the end of the test.
func ReadOnly(t testing.TB, dir string) {
	t.Helper()
	remount(t, dir, syscall.MS_RDONLY)
	t.Cleanup(func() { _ = syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "") })
}

// Writable remounts the tmpfs at dir read-write.
func Writable(t testing.TB, dir string) {
	t.Helper()
	remount(t, dir, 0)
}

// remount changes the mount flags of the tmpfs at dir.
func remount(t testing.TB, dir string, flags uintptr) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_NOSUID|syscall.MS_NODEV|flags, ""); err != nil {
		t.Fatalf("remount %s: %v", dir, err)
	}
}
