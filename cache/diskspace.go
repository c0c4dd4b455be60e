package cache

import (
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/outpost-proxy/outpost/internal/diskspace"
)

// Disk full. The disk tier stops admitting new objects while its file system is (nearly)
// full — statfs shows less than diskMinFree beyond the object, or a write failed with ENOSPC
// or EDQUOT — and admits again once space returns. Memory hits and the objects already on
// disk are served throughout; an object refused by the disk tier is still served to its
// client (and kept in memory when it fits). Each refusal is counted
// (outpost_cache_disk_refused_total); the warning is logged once per diskFullLogEvery, with
// the number of refusals it stands for, instead of once per object.

const (
	// diskMinFree is the free space the disk tier leaves on its file system (as nginx's
	// proxy_cache_path min_free, but refusing new objects rather than evicting): 1% of the
	// file system, within these bounds.
	diskMinFreeLow, diskMinFreeHigh = 256 << 10, 256 << 20
	// diskRecheck is how long a statfs answer is trusted before asking again.
	diskRecheck = time.Second
	// diskFullLogEvery is the interval of the "disk tier full" warning.
	diskFullLogEvery = time.Minute
)

// errDiskFull is what create answers while the gate refuses.
var errDiskFull = fmt.Errorf("cache: disk tier full: %w", syscall.ENOSPC)

// diskGate is the disk tier's admission check for a filling file system.
type diskGate struct {
	dir     string
	minFree int64
	recheck time.Duration
	now     func() time.Time
	stats   *counters
	warn    *diskspace.Warner
	log     *slog.Logger

	mu      sync.Mutex
	free    int64     // bytes free at the last statfs (or 0 after a failed write)
	checked time.Time // when free was measured; zero: measure now
	full    bool      // refusing since the last measurement
}

// newDiskGate returns the gate for the file system holding dir.
func newDiskGate(dir string, log *slog.Logger, stats *counters, now func() time.Time) *diskGate {
	return &diskGate{dir: dir, minFree: -1, recheck: diskRecheck, now: now, stats: stats,
		warn: diskspace.NewWarner(log, diskFullLogEvery), log: log}
}

// admit reports whether an object of size bytes may be written now; a refusal is counted and
// (rate-limited) logged.
func (g *diskGate) admit(size int64) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	now := g.now()
	if g.checked.IsZero() || now.Sub(g.checked) >= g.recheck {
		g.measure(now)
	}
	minFree := max(g.minFree, 0)
	ok := g.free >= minFree+size
	free, wasFull := g.free, g.full
	g.full = !ok
	g.mu.Unlock()
	if ok {
		if wasFull {
			g.log.Info("cache: disk tier admitting again", "dir", g.dir, "free", free)
		}
		return true
	}
	g.stats.diskRefused.Add(1)
	g.warn.Warn("cache: disk tier full: not storing new objects on disk", "dir", g.dir, "free", free, "min_free", minFree)
	return false
}

// measure asks statfs (the caller holds mu). A failing statfs admits: the write will tell.
func (g *diskGate) measure(now time.Time) {
	g.checked = now
	free, size, err := diskspace.Space(g.dir)
	if err != nil {
		free = 1 << 62
	}
	if g.minFree < 0 && err == nil {
		g.minFree = min(max(size/100, diskMinFreeLow), diskMinFreeHigh)
	}
	g.free = free
}

// failed notes a write error: ENOSPC/EDQUOT closes the gate until the next measurement. It
// reports whether err was "disk full" (the caller then need not log it itself).
func (g *diskGate) failed(err error) bool {
	if g == nil || !diskspace.IsFull(err) {
		return false
	}
	g.mu.Lock()
	g.free, g.checked = 0, g.now()
	g.mu.Unlock()
	g.stats.diskRefused.Add(1)
	g.warn.Warn("cache: disk tier full: write failed", "dir", g.dir, "err", err)
	return true
}
