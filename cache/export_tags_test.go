package cache

import "net/http"

// MountAdmin registers the cache's admin endpoints on mux (the e2e tests serve them on a
// listener of their own).
func MountAdmin(c *Cache, mux *http.ServeMux) { c.mountAdmin(mux) }

// FlightFollowers is how many requests wait on (or are served by) the fetch in progress for
// the primary key key, 0 without one.
func FlightFollowers(c *Cache, key string) int {
	fl := c.flights.get(primaryHash(key), key)
	if fl == nil {
		return 0
	}
	return int(fl.followers.Load())
}
