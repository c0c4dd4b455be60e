// Package diskspace answers the two questions a component that writes to disk asks when the
// disk fills: how much room is left on the file system holding a path (statfs), and whether a
// write error means "no space" (ENOSPC, or EDQUOT for a quota). It also keeps the warning
// about a full disk to one line per interval, however many writes fail.
package diskspace

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// Free returns the bytes available to unprivileged writers on the file system holding path
// (statfs f_bavail × f_bsize: what df calls "Avail").
func Free(path string) (int64, error) {
	free, _, err := Space(path)
	return free, err
}

// Space returns the bytes available (as Free) and the size of the file system holding path.
func Space(path string) (free, size int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("diskspace: statfs %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// IsFull reports whether err says the file system (or the user's quota) has no room left.
func IsFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Warner logs a warning at most once per interval and counts what it did not log, so a
// full disk that fails every write yields one line per interval ("suppressed": N).
type Warner struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
	logged     int
}

// NewWarner returns a Warner writing to log at most once per interval (0: every time).
func NewWarner(log *slog.Logger, interval time.Duration) *Warner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Warner{log: log, interval: interval, now: time.Now}
}

// Warn logs msg with args unless a warning was logged less than the interval ago; it reports
// whether it logged.
func (w *Warner) Warn(msg string, args ...any) bool {
	w.mu.Lock()
	now := w.now()
	if !w.last.IsZero() && now.Sub(w.last) < w.interval {
		w.suppressed++
		w.mu.Unlock()
		return false
	}
	n := w.suppressed
	w.last, w.suppressed = now, 0
	w.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	w.log.Warn(msg, args...)
	w.mu.Lock()
	w.logged++
	w.mu.Unlock()
	return true
}

// Logged returns how many warnings were logged and how many are suppressed since the last.
func (w *Warner) Logged() (logged, suppressed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logged, w.suppressed
}
