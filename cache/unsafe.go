package cache

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// serveUnsafe forwards a request with an unsafe or unknown method. A non-error response
// invalidates the target URI and the same-origin URIs in Location and Content-Location
// (RFC 9111 §4.4). A POST response that is explicitly fresh and names its own URI in
// Content-Location is stored for later GETs (RFC 9110 §9.3.3).
func (c *Cache) serveUnsafe(w ResponseWriter, r *http.Request, f Fetcher) (Outcome, error) {
	resp, err := f.Fetch(r.Clone(r.Context()))
	if err != nil {
		return c.originError(w, r, err, "method")
	}
	c.stats.misses.Add(1)
	if resp.StatusCode < 400 {
		c.invalidate(r.URL, r.Host, resp.Header)
	}
	if r.Method == http.MethodPost && resp.StatusCode == http.StatusOK && c.postStorable(r, resp) {
		key := string(appendKey(nil, r.URL, r.Host))
		h := primaryHash(key)
		rq := noDirectives
		get := r.Clone(r.Context())
		get.Method = http.MethodGet
		return c.fresh(newFlight(h, key), false, w, get, h, &rq, lookupResult{}, resp, c.now(), c.now(), "method")
	}
	defer resp.Body.Close()
	return Outcome{Code: CodeMiss, Fetched: true}, c.writeOrigin(w, r, resp, "fwd=method; fwd-status="+strconv.Itoa(resp.StatusCode))
}

// postStorable reports a POST response that may serve later GETs: explicit freshness and a
// Content-Location equal to the request's URI (RFC 9110 §9.3.3, RFC 9111 §4).
func (c *Cache) postStorable(r *http.Request, resp *http.Response) bool {
	d := parseResponseDirectives(resp.Header)
	if !explicitFreshness(resp.Header, &d) {
		return false
	}
	loc := resp.Header.Get(hdrContentLocation)
	if loc == "" {
		return false
	}
	u, err := r.URL.Parse(loc)
	return err == nil && sameOrigin(u, r.URL, r.Host) && keyOf(u) == string(appendKey(nil, r.URL, r.Host))
}

// invalidate removes the stored responses for the target URI and the same-origin URIs named
// by Location and Content-Location (RFC 9111 §4.4).
func (c *Cache) invalidate(target *url.URL, host string, h http.Header) {
	c.stats.invalidations.Add(1)
	c.st.purge(string(appendKey(nil, target, host)), false)
	for _, f := range []string{hdrLocation, hdrContentLocation} {
		v := h.Get(f)
		if v == "" {
			continue
		}
		u, err := target.Parse(v)
		if err != nil || !sameOrigin(u, target, host) {
			continue
		}
		if u.Host == "" {
			u.Host = host
		}
		c.st.purge(keyOf(u), false)
	}
}

// sameOrigin compares scheme and authority (RFC 6454), as the keys normalise them.
func sameOrigin(u, target *url.URL, host string) bool {
	th := target.Host
	if th == "" {
		th = host
	}
	uh := u.Host
	if uh == "" {
		uh = th
	}
	a := appendKey(nil, &url.URL{Scheme: u.Scheme, Host: uh}, "")
	b := appendKey(nil, &url.URL{Scheme: target.Scheme, Host: th}, "")
	return string(a) == string(b)
}

// servePurge handles the PURGE method: only from cache.purge_allow networks (else 403); 200
// with the number of responses removed, or 404 when nothing was stored.
func (c *Cache) servePurge(w ResponseWriter, r *http.Request) (Outcome, error) {
	now := c.now()
	text := func(status int, msg string, cs string) error {
		h := http.Header{hdrContentType: {"application/json"}}
		return c.writeMade(w, r, status, h, strings.NewReader(msg), int64(len(msg)), nil, now, cs)
	}
	if !c.purgeAllowed(r.RemoteAddr) {
		return Outcome{Code: CodeDenied}, text(http.StatusForbidden, `{"error":"PURGE not allowed from this address"}`+"\n", "detail=purge-denied")
	}
	n := c.st.purge(string(appendKey(nil, r.URL, r.Host)), false)
	c.stats.purges.Add(1)
	body, _ := json.Marshal(map[string]int{"purged": n})
	status := http.StatusOK
	if n == 0 {
		status = http.StatusNotFound
	}
	return Outcome{Code: CodeNone}, text(status, string(body)+"\n", "detail=purge")
}

// purgeAllowed checks a client's "ip:port" against cache.purge_allow.
func (c *Cache) purgeAllowed(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range c.purgeAllow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
