package cache

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/tmpfstest"
)

// TestDiskFull runs the disk tier on a tmpfs the test fills: it stops admitting new objects
// (counted, one warning for all of them), keeps serving memory hits and the objects already
// on disk, serves refused objects to their clients all the same, and admits again once
// space returns.
func TestDiskFull(t *testing.T) {
	dir := tmpfstest.Mount(t, 8<<20)
	h := newHarness(t, sizedOrigin, diskConfig(dir))
	gate := h.c.st.disk.gate
	code := func(path string) string {
		t.Helper()
		res := h.do("GET", path)
		if want := bodyFor(strings.SplitN(path, "?", 2)[0], sizeOf(path)); res.status != 200 || res.body != string(want) {
			t.Fatalf("%s: %d with %d bytes, want 200 with the %d bytes of the origin", path, res.status, len(res.body), len(want))
		}
		return fmt.Sprint(res.out.Code)
	}

	h.do("GET", "/big?n=300000") // streamed to disk (past the memory object limit)
	h.do("GET", "/small?n=1000") // memory, and disk behind it
	waitDiskFiles(t, h, 2)

	fill := tmpfstest.Fill(t, dir, 0)
	h.clk.Advance(2 * diskRecheck)
	if got := code("/big?n=300000"); got != "TCP_HIT" {
		t.Fatalf("disk object on a full disk: %s, want TCP_HIT", got)
	}
	if got := code("/small?n=1000"); got != "TCP_MEM_HIT" {
		t.Fatalf("memory object on a full disk: %s, want TCP_MEM_HIT", got)
	}
	for i := range 20 {
		if got := code(fmt.Sprintf("/new%d?n=2000", i)); got != "TCP_MISS" {
			t.Fatalf("new object: %s", got)
		}
	}
	if got := code("/big2?n=300000"); got != "TCP_MISS" {
		t.Fatalf("large new object: %s", got)
	}
	if got := code("/big2?n=300000"); got != "TCP_MISS" {
		t.Fatalf("large object refused by the full disk tier: %s, want TCP_MISS again", got)
	}
	if got := code("/new0?n=2000"); got != "TCP_MEM_HIT" {
		t.Fatalf("small object refused by the disk: %s, want it kept in memory", got)
	}
	if n, _ := h.c.st.disk.usage(); n != 2 {
		t.Fatalf("disk tier holds %d objects on a full disk, want the 2 from before", n)
	}
	if refused := h.c.stats.diskRefused.Load(); refused < 22 {
		t.Fatalf("disk_refused_total = %d, want at least 22", refused)
	}
	if logged, suppressed := gate.warn.Logged(); logged != 1 || suppressed < 21 {
		t.Fatalf("disk-full warnings: %d logged, %d suppressed; want 1 per interval for all of them", logged, suppressed)
	}

	fill.Release(t)
	// Room by statfs, but not for this object: the write fails with ENOSPC mid-stream. The
	// client still gets the whole body, and the gate closes until the next measurement.
	fill = tmpfstest.Fill(t, dir, gate.minFree+100<<10)
	h.clk.Advance(2 * diskRecheck)
	before := h.c.stats.diskRefused.Load()
	code("/huge?n=600000")
	if h.c.stats.diskRefused.Load() == before {
		t.Fatal("a write that ran out of space was not counted")
	}
	if got := code("/huge?n=600000"); got != "TCP_MISS" {
		t.Fatalf("object whose disk write failed: %s, want TCP_MISS", got)
	}
	fill.Release(t)
	h.clk.Advance(2 * diskRecheck)
	code("/big3?n=300000")
	if got := code("/big3?n=300000"); got != "TCP_HIT" {
		t.Fatalf("large object once space returned: %s, want TCP_HIT (stored on disk)", got)
	}
	code("/after?n=1000")
	waitDiskFiles(t, h, 4)
}

// sizeOf is the n query parameter of a sizedOrigin path.
func sizeOf(path string) int {
	var n int
	fmt.Sscanf(path[strings.Index(path, "n=")+2:], "%d", &n)
	return n
}

// waitDiskFiles polls until the disk tier holds n objects (its writer runs behind).
func waitDiskFiles(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := h.c.st.disk.usage()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("disk tier holds %d objects, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
