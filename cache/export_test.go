package cache

import (
	"net/http"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// This file exports test hooks to the external test package (cache_test), which runs the RFC
// table through the real proxy.

// Driver sends a case's requests and reports what the origin saw.
type Driver interface {
	// Do sends one request (hdr lines are "Name: value") and returns the client's view.
	Do(method, path string, hdr ...string) Response
	// Advance moves the clock shared by the cache and the origin's Date fields.
	Advance(d time.Duration)
	// OriginCount is how many requests reached the origin.
	OriginCount() int
	// LastSeen is the header of the origin's last request.
	LastSeen() http.Header
}

// Response is one response as the client saw it. Code is the Outcome code when the driver
// knows it ("" otherwise).
type Response struct {
	Status int
	Header http.Header
	Body   string
	Code   string
}

// DriverFactory starts a driver for one case: an origin running handler (n counts requests
// from 1) and a cache configured by mod.
type DriverFactory func(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, n int), mod func(*config.CacheConfig)) Driver

// RunRFCTable runs every case of the RFC table with drivers from newDriver; skip maps case
// names to the reason they cannot run with this driver.
func RunRFCTable(t *testing.T, newDriver DriverFactory, skip map[string]string) {
	for _, tc := range rfcCases() {
		t.Run(tc.name, func(t *testing.T) {
			if why, ok := skip[tc.name]; ok {
				t.Skip(why)
			}
			tc.runWith(t, newDriver)
		})
	}
}

// SetClock replaces the cache's clock.
func SetClock(c *Cache, now func() time.Time) { c.now = now }

// FakeClock is the harness's settable clock.
type FakeClock = fakeClock

// NewFakeClock returns a clock at the current second.
func NewFakeClock() *FakeClock { return &fakeClock{t: time.Now().UTC().Truncate(time.Second)} }

// Settle waits for background work: pumps, revalidations, the memory tier's buffers.
func Settle(c *Cache) {
	c.bg.Wait()
	c.pumps.Wait()
	if c.st.mem != nil {
		c.st.mem.Wait()
	}
}
