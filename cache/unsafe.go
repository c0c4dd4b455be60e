package cache

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
)

// serveUnsafe forwards a request with an unsafe or unknown method. A non-error response
// invalidates the target URI and the same-origin URIs in Location and Content-Location
// (RFC 9111 §4.4). A POST response that is explicitly fresh and names its own URI in
// Content-Location is stored for later GETs (RFC 9110 §9.3.3).
func (c *Cache) serveUnsafe(w ResponseWriter, r Request, f Fetcher) (Outcome, error) {
	t := &txn{c: c, w: w, r: r, f: f, now: c.now(), rq: noDirectives, fwd: "method"}
	kr := rulesOf(r)
	t.key = string(kr.applyURL(normalizeKey(r.AppendURL(nil), 0))) // a URL still: parsed below
	if err := t.fetch(Upstream{}); err != nil {
		return t.originError(err)
	}
	resp := t.resp
	c.stats.misses.Add(1)
	target, err := url.Parse(t.key)
	if err != nil {
		target = &url.URL{}
	}
	if resp.StatusCode < 400 {
		c.invalidate(target, resp.Header, kr)
	}
	if r.Method() == http.MethodPost && resp.StatusCode == http.StatusOK && c.postStorable(target, t.key, resp, kr) {
		t.key = string(kr.appendHeaders([]byte(t.key), r))
		t.h = primaryHash(t.key)
		t.fl = newFlight(t.h, t.key)
		t.r = asGET{r}
		return t.fresh()
	}
	defer resp.Body.Close()
	return Outcome{Code: CodeMiss, Fetched: true}, t.writeOrigin(resp, "fwd=method; fwd-status="+strconv.Itoa(resp.StatusCode))
}

// postStorable reports a POST response that may serve later GETs: explicit freshness and a
// Content-Location equal to the request's URI (target, whose key is key) (RFC 9110 §9.3.3,
// RFC 9111 §4).
func (c *Cache) postStorable(target *url.URL, key string, resp *http.Response, kr *KeyRules) bool {
	d := parseResponseDirectives(resp.Header)
	if !explicitFreshness(resp.Header, &d) {
		return false
	}
	loc := resp.Header.Get(hdrContentLocation)
	if loc == "" {
		return false
	}
	u, err := target.Parse(loc)
	return err == nil && sameOrigin(u, target, "") && kr.urlKey(u) == key
}

// invalidate removes the stored responses for the target URI and the same-origin URIs named
// by Location and Content-Location (RFC 9111 §4.4), keyed by the route's rules kr.
func (c *Cache) invalidate(target *url.URL, h http.Header, kr *KeyRules) {
	c.stats.invalidations.Add(1)
	host := target.Host
	c.st.purgeKey(kr.urlKey(target), false)
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
		c.st.purgeKey(kr.urlKey(u), false)
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
// with the number of responses removed, or 404 when nothing was stored (and, with a fan-out,
// no other cache took the purge). The fan-out (purgefanout.go) passes it on. With tags in
// cache.tag_header or Surrogate-Key it purges those tags (tags.go) instead of the URL; with
// Soft-Purge: 1 it marks stale instead of removing (softpurge.go).
func (c *Cache) servePurge(w ResponseWriter, r Request) (Outcome, error) {
	t := &txn{c: c, w: w, r: r, now: c.now()}
	if !c.purgeAllowed(r.RemoteAddr()) {
		m := textBody(http.StatusForbidden, "application/json", `{"error":"PURGE not allowed from this address"}`+"\n")
		return Outcome{Code: CodeDenied}, t.writeMade(m, nil, "detail=purge-denied")
	}
	dir, prefix := parsePurgeMarker(r.Values(PurgeMarker))
	raw := r.AppendURL(nil)
	u, err := url.Parse(string(raw))
	if err != nil {
		m := textBody(http.StatusBadRequest, "application/json", `{"error":"PURGE of an unparsable URL"}`+"\n")
		return Outcome{Code: CodeNone}, t.writeMade(m, nil, "detail=purge-bad-url")
	}
	tags, named := c.purgeTagsOf(r)
	if named && len(tags) == 0 {
		m := textBody(http.StatusBadRequest, "application/json", `{"error":"PURGE names no valid tag (visible ASCII, no commas; space-separated in Surrogate-Key)"}`+"\n")
		return Outcome{Code: CodeNone}, t.writeMade(m, nil, "detail=purge-bad-tag")
	}
	spec := purgeSpec{key: purgeKeyOf(rulesOf(r), u, raw, prefix), prefix: prefix, tags: tags, soft: softPurgeRequested(r.Values(SoftPurgeField))}
	n := 0
	rep := c.purgeEverywhere(PurgeTarget{URL: u, Prefix: prefix, Tags: spec.tags, Soft: spec.soft, Arrived: dir, Via: r.Values("Via")}, func() {
		n = c.apply(spec)
	})
	body, _ := json.Marshal(purgeAnswer{Purged: n, Tags: spec.tags, Soft: spec.soft, PurgeReport: rep})
	status := http.StatusOK
	if n == 0 && (rep == nil || rep.Forwarded == 0) { // with a fan-out, another cache may have removed it here first
		status = http.StatusNotFound
	}
	return Outcome{Code: CodeNone}, t.writeMade(textBody(status, "application/json", string(body)+"\n"), nil, "detail=purge")
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
	for _, p := range c.knobs().purgeAllow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
