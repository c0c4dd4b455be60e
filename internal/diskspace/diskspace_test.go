package diskspace

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWarnerOncePerInterval: many failures within an interval log one line; the next
// interval's line carries the count of the suppressed ones.
func TestWarnerOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	w := NewWarner(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	now := time.Unix(1000, 0)
	w.now = func() time.Time { return now }
	logged := 0
	for range 100 {
		if w.Warn("disk full") {
			logged++
		}
	}
	now = now.Add(time.Minute)
	if w.Warn("disk full") {
		logged++
	}
	if logged != 2 {
		t.Fatalf("logged %d lines, want 2:\n%s", logged, buf.String())
	}
	if !strings.Contains(buf.String(), "suppressed=99") {
		t.Fatalf("second line lacks the suppressed count:\n%s", buf.String())
	}
}

// TestIsFull: ENOSPC and EDQUOT, wrapped or not, are "full"; other errors are not.
func TestIsFull(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.ENOSPC, true},
		{fmt.Errorf("write: %w", syscall.EDQUOT), true},
		{syscall.EIO, false},
		{nil, false},
	} {
		if got := IsFull(tc.err); got != tc.want {
			t.Errorf("IsFull(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
