package cache

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// MountAdmin registers the cache's admin endpoints on mux (the e2e tests serve them on a
// listener of their own).
func MountAdmin(c *Cache, mux *http.ServeMux) { c.mountAdmin(mux) }

// WaitReclaimed waits until the objects of purged tags are removed from storage.
func WaitReclaimed(c *Cache) { c.st.ban.reclaimer.Wait() }

// FlightFollowers is how many requests wait on (or are served by) the fetch in progress for
// the primary key key, 0 without one.
func FlightFollowers(c *Cache, key string) int {
	fl := c.flights.get(primaryHash(key), key)
	if fl == nil {
		return 0
	}
	return int(fl.followers.Load())
}

// FillTagged stores n synthetic fresh objects (max-age=3600, a 64-byte body) under
// base+"/t/<i>", each carrying tag, straight into storage as a fetch would, and returns how
// many stored responses the index then holds. base is "http://host".
func FillTagged(c *Cache, base string, n int, tag string) int {
	fillTagged(c, base, n, []string{tag})
	_, items := c.st.counts()
	return items
}

// fillTagged is FillTagged for the package's own tests.
func fillTagged(c *Cache, base string, n int, tags []string) {
	now := c.now()
	body := bytes.Repeat([]byte("t"), 64)
	for i := range n {
		key := base + "/t/" + strconv.Itoa(i)
		h := primaryHash(key)
		e := &entry{
			key: key, item: itemKey(h, key, ""), status: 200, size: int64(len(body)), body: body,
			header: http.Header{"Cache-Control": {"max-age=3600"}, "Date": {now.UTC().Format(http.TimeFormat)}},
			timing: timing{requestTime: now, responseTime: now}, policy: policy{lifetime: time.Hour, swr: -1, sie: -1},
			used: new(atomic.Int64), tags: tags, purged: newPurgeMark(),
		}
		c.st.put(h, e.build(), false)
		if i%512 == 511 && c.st.mem != nil {
			c.st.mem.Wait() // ristretto drops Sets when its buffers are full
		}
	}
	if c.st.mem != nil {
		c.st.mem.Wait()
	}
}
