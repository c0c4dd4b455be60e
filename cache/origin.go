package cache

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// forward goes to the origin for a request storage could not satisfy: a miss, or a stored
// response (lr.e) that must be validated. Concurrent GETs for one key share one fetch.
func (c *Cache) forward(w ResponseWriter, r *http.Request, f Fetcher, key string, h uint64, rq *reqDirectives, lr lookupResult, fwd string) (Outcome, error) {
	if r.Method == http.MethodHead {
		return c.forwardHead(w, r, f, lr, fwd)
	}
	if len(r.Header[hdrRange]) > 0 && lr.e == nil {
		return c.fetchRange(w, r, f, key, h, rq, lr)
	}
	if c.cfg.Collapse && !rq.noStore {
		fl, leader := c.flights.join(h, key)
		if !leader {
			return c.follow(fl, w, r, f, key, h, rq, lr, fwd)
		}
		return c.lead(fl, true, w, r, f, h, rq, lr, fwd)
	}
	return c.lead(newFlight(h, key), false, w, r, f, h, rq, lr, fwd)
}

// originRequest derives the request sent to the origin for storage: a GET without the
// client's preconditions and Range (the cache answers those itself), with the stored
// response's validators when revalidating (RFC 9111 §4.3.1), and a context that a departing
// client does not cancel (others may share the fetch).
func originRequest(r *http.Request, stale *entry) *http.Request {
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.Method = http.MethodGet
	for _, f := range []string{hdrIfNoneMatch, hdrIfModifiedSince, hdrIfMatch, hdrIfUnmodifiedSince, hdrRange, hdrIfRange} {
		delete(req.Header, f)
	}
	if stale != nil {
		if stale.etag != "" {
			req.Header.Set(hdrIfNoneMatch, stale.etag)
		}
		if stale.lastMod != "" {
			req.Header.Set(hdrIfModifiedSince, stale.lastMod)
		}
	}
	return req
}

// lead performs a flight's fetch and answers its own client; registered flights are also
// published to followers.
func (c *Cache) lead(fl *flight, registered bool, w ResponseWriter, r *http.Request, f Fetcher, h uint64, rq *reqDirectives, lr lookupResult, fwd string) (Outcome, error) {
	req := originRequest(r, lr.e)
	reqTime := c.now()
	resp, err := f.Fetch(req)
	respTime := c.now()
	if err == nil && resp.StatusCode == http.StatusNotModified && lr.e != nil {
		if selects304(resp.Header, lr.e) {
			return c.refreshed(fl, registered, w, r, lr, resp, reqTime, respTime, fwd)
		}
		// The 304 is about another representation (RFC 9111 §4.3.4): ask again unconditionally.
		resp.Body.Close()
		lr = lookupResult{}
		reqTime = c.now()
		resp, err = f.Fetch(originRequest(r, nil))
		respTime = c.now()
	}
	if err != nil || resp.StatusCode >= 500 && resp.StatusCode <= 504 {
		if c.staleAllowed(lr, rq, err) {
			c.abandon(fl, registered)
			if resp != nil {
				defer resp.Body.Close()
			}
			if out, served, werr := c.serveStaleOnError(w, r, lr, resp, err, fwd); served || err != nil {
				return out, werr
			}
			return Outcome{Code: CodeMiss, Fetched: true}, c.writeOrigin(w, r, resp, "fwd="+fwd+"; fwd-status="+strconv.Itoa(resp.StatusCode))
		}
		if err != nil {
			c.abandon(fl, registered)
			return c.originError(w, r, err, fwd)
		}
	}
	return c.fresh(fl, registered, w, r, h, rq, lr, resp, reqTime, respTime, fwd)
}

// abandon publishes a failed flight: followers go to the origin themselves.
func (c *Cache) abandon(fl *flight, registered bool) {
	select {
	case <-fl.ready:
	default:
		fl.publish(nil, false, false)
	}
	if registered {
		c.flights.leave(fl)
	}
	fl.release()
}

// refreshed handles a 304 to a revalidation: the stored header is updated (RFC 9111 §4.3.4)
// and the stored response served, to this client and to followers.
func (c *Cache) refreshed(fl *flight, registered bool, w ResponseWriter, r *http.Request, lr lookupResult, resp *http.Response, reqTime, respTime time.Time, fwd string) (Outcome, error) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	e := c.updatedEntry(lr.e, resp.Header, reqTime, respTime)
	c.storeRefreshed(lr, e)
	c.stats.refreshHits.Add(1)
	fl.disk = lr.disk
	fl.publish(e, true, true)
	if registered {
		c.flights.leave(fl)
	}
	fl.release()
	lr.e = e
	return c.serveStored(w, r, lr, c.now(), "fwd="+fwd+"; fwd-status=304; stored", Outcome{Code: CodeRefreshHit, Fetched: true})
}

// selects304 reports whether a 304 applies to the stored response (RFC 9111 §4.3.4): its
// strong validator, when it has one, must match the stored one.
func selects304(h http.Header, e *entry) bool {
	etag := h.Get(hdrETag)
	if etag == "" || e.etag == "" {
		return true
	}
	return etagMatch(etag, e.etag, false)
}

// updatedEntry applies a 304's (or HEAD response's) header to a stored response
// (RFC 9111 §3.2, §4.3.4): its fields replace the stored ones except framing fields.
func (c *Cache) updatedEntry(old *entry, upd http.Header, reqTime, respTime time.Time) *entry {
	d := parseResponseDirectives(upd)
	merged := old.header.Clone()
	for k, v := range storedHeader(upd, &d, c.cfg.StripCDNCacheControl, respTime) {
		if k == hdrContentRange {
			continue // framing of a partial response, not of the stored one
		}
		merged[k] = v
	}
	e := *old
	e.header = merged
	dm := parseResponseDirectives(merged)
	e.timing = newTiming(upd, reqTime, respTime)
	lifetime, heur := freshnessLifetime(e.status, merged, &dm, respTime, c.heur)
	e.policy, e.heuristic = newPolicy(&dm, lifetime), heur
	return e.build()
}

// storeRefreshed puts a refreshed entry back: in memory with its body, or as updated disk
// metadata for a disk-only object.
func (c *Cache) storeRefreshed(lr lookupResult, e *entry) {
	if e.body != nil {
		c.st.put(primaryHash(e.key), e, true)
		return
	}
	if lr.disk != nil {
		c.st.disk.updateMeta(lr.disk, e)
	}
}

// staleAllowed says whether a stale stored response may be served because the origin failed
// (err set) or answered 5xx (RFC 5861 §4, RFC 9111 §4.2.4).
func (c *Cache) staleAllowed(lr lookupResult, rq *reqDirectives, err error) bool {
	if lr.e == nil {
		return false
	}
	window := time.Duration(-1)
	if (err == nil && c.cfg.StaleOn5xx) || (err != nil && c.cfg.StaleOnError) {
		window = c.cfg.StaleMax
	}
	return staleOnErrorAllowed(lr.e.timing, lr.e.policy, rq, c.now(), window)
}

// serveStaleOnError serves the stale response; served is false when its disk copy failed.
func (c *Cache) serveStaleOnError(w ResponseWriter, r *http.Request, lr lookupResult, resp *http.Response, err error, fwd string) (Outcome, bool, error) {
	status := "502"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	c.stats.staleServed.Add(1)
	cs := "fwd=" + fwd + "; fwd-status=" + status + "; detail=stale-if-error"
	out, werr := c.serveStored(w, r, lr, c.now(), cs, Outcome{Code: CodeStaleHit, Hit: true, Fetched: true})
	if errors.Is(werr, errSwapFail) {
		if err != nil {
			o, e := c.originError(w, r, err, fwd)
			return o, false, e
		}
		return Outcome{}, false, nil
	}
	return out, true, werr
}

// originError answers a failed fetch: 504 for a timeout, 502 otherwise (never a dropped
// connection).
func (c *Cache) originError(w ResponseWriter, r *http.Request, err error, fwd string) (Outcome, error) {
	status := http.StatusBadGateway
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	c.log.Debug("cache: origin fetch failed", "url", r.URL.String(), "err", err)
	msg := strconv.Itoa(status) + " " + statusText(status) + ": origin unreachable\n"
	h := http.Header{hdrContentType: {"text/plain; charset=utf-8"}}
	werr := c.writeMade(w, r, status, h, strings.NewReader(msg), int64(len(msg)), nil, c.now(), "fwd="+fwd+"; detail=origin-error")
	return Outcome{Code: CodeMiss, Fetched: true}, werr
}

// fresh handles a new response from the origin: stored and shared when RFC 9111 §3 allows,
// otherwise passed to this client only.
func (c *Cache) fresh(fl *flight, registered bool, w ResponseWriter, r *http.Request, h uint64, rq *reqDirectives, lr lookupResult, resp *http.Response, reqTime, respTime time.Time, fwd string) (Outcome, error) {
	code := CodeMiss
	if lr.e != nil {
		code = CodeRefreshMiss
		c.stats.refreshMisses.Add(1)
		if rq.noCache || rq.pragmaNoCache {
			code = CodeClientRefreshMiss
		}
	}
	c.stats.misses.Add(1)
	out := Outcome{Code: code, Fetched: true}
	cs := "fwd=" + fwd + "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	d := parseResponseDirectives(resp.Header)
	why := storable(resp.StatusCode, resp.Header, &d, rq, len(r.Header[hdrAuthorization]) > 0)
	if why == (Reason{}) {
		why = c.sizeCheck(resp.ContentLength)
	}
	var e *entry
	if why == (Reason{}) {
		e = c.newEntry(fl.key, h, r, resp, &d, reqTime, respTime)
		if e.policy.lifetime == 0 && !e.heuristic && e.etag == "" && e.lastMod == "" && !explicitFreshness(resp.Header, &d) {
			why = NotStoredNoFreshness
		}
	}
	if why != (Reason{}) {
		c.stats.notStored.Add(1)
		c.abandon(fl, registered)
		if lr.e != nil && resp.StatusCode < 500 {
			c.st.purge(lr.e.key, false) // the origin no longer lets this be stored
		}
		defer resp.Body.Close()
		if evalConditions(r.Header, r.Method, resp.StatusCode, resp.Header.Get(hdrETag), resp.Header.Get(hdrLastModified), resp.Header.Get(hdrDate)) == condNotModified {
			// The client's own validators still match: answer its conditional request.
			h := notModifiedHeader(resp.Header)
			h.Add(hdrCacheStatus, "outpost; "+cs+"; detail="+why.Token)
			return out, w.WriteResponse(&http.Response{StatusCode: http.StatusNotModified, Status: "304 Not Modified",
				Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, ContentLength: -1, Body: http.NoBody, Request: r})
		}
		return out, c.writeOrigin(w, r, resp, cs+"; detail="+why.Token)
	}
	fl.expect = resp.ContentLength
	fl.publish(e, true, false)
	if resp.ContentLength >= 0 && resp.ContentLength <= c.st.memMax {
		fl.buf = make([]byte, 0, resp.ContentLength)
	}
	fl.refs.Add(1)
	c.pumps.Add(1)
	go c.pump(fl, registered, resp.Body, e, h)
	defer fl.release()
	if lr.e != nil && resp.ContentLength >= 0 && resp.ContentLength <= c.st.memMax && c.staleAllowed(lr, rq, io.ErrUnexpectedEOF) {
		// A revalidation that may fall back to the stale response takes the whole new body
		// first: an origin failing mid-body then still leaves this client a complete response.
		if err := fl.wait(); err != nil {
			out, _, werr := c.serveStaleOnError(w, r, lr, nil, err, fwd)
			return out, werr
		}
	}
	return out, c.respondFlight(w, r, fl, e, c.leaderHeader(resp.Header, respTime), resp.ContentLength, cs+"; stored")
}

// leaderHeader is the header of the response as the client that fetched it receives it: the
// origin's end-to-end fields, including those a qualified no-cache or private keeps out of
// storage (they only may not be reused, RFC 9111 §5.2.2.4, §5.2.2.7), and the origin's Age as
// received (RFC 9111 §5.1: the response was not served from storage).
func (c *Cache) leaderHeader(origin http.Header, respTime time.Time) http.Header {
	h := storedHeader(origin, &respDirectives{}, c.cfg.StripCDNCacheControl, respTime)
	if age := origin[hdrAge]; len(age) > 0 {
		h[hdrAge] = age
	}
	return h
}

// sizeCheck refuses responses whose declared length no tier can keep.
func (c *Cache) sizeCheck(length int64) Reason {
	limit := c.st.memMax
	if c.st.mem == nil {
		limit = -1
	}
	if c.st.disk != nil {
		limit = max(limit, c.st.disk.maxObject)
	}
	if limit < 0 || length > limit {
		return NotStoredTooLarge
	}
	return Reason{}
}

// newEntry builds the stored form of a response (without its body).
func (c *Cache) newEntry(key string, h uint64, r *http.Request, resp *http.Response, d *respDirectives, reqTime, respTime time.Time) *entry {
	hdr := storedHeader(resp.Header, d, c.cfg.StripCDNCacheControl, respTime)
	vary := varyNames(resp.Header)
	sec := secondaryKey(vary, r.Header)
	lifetime, heur := freshnessLifetime(resp.StatusCode, resp.Header, d, respTime, c.heur)
	e := &entry{
		key: key, secondary: sec, item: itemKey(h, key, sec), vary: vary,
		status: resp.StatusCode, header: hdr, size: resp.ContentLength,
		timing: newTiming(resp.Header, reqTime, respTime), policy: newPolicy(d, lifetime), heuristic: heur,
		used: new(atomic.Int64),
	}
	e.used.Store(respTime.Unix())
	e.etag, e.lastMod = hdr.Get(hdrETag), hdr.Get(hdrLastModified)
	return e
}

// pump reads the origin body into the flight, then stores the complete response.
func (c *Cache) pump(fl *flight, registered bool, body io.ReadCloser, e *entry, h uint64) {
	defer c.pumps.Done()
	defer fl.release()
	err := c.fill(fl, body, e.size)
	body.Close()
	if err == nil && e.size >= 0 && fl.n != e.size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && fl.overflow {
		err = errTooLarge
	}
	if err != nil {
		if errors.Is(err, errTooLarge) {
			err = nil // the readers have the whole body; it is only not stored
		}
		fl.finish(err)
		c.stats.notStored.Add(1)
		c.log.Debug("cache: not stored", "key", e.key, "reason", NotStoredIncomplete.String(), "err", err)
		if fl.spill != nil {
			_ = os.Remove(fl.spill.name) // readers keep their descriptor until release
		}
		if registered {
			c.flights.leave(fl)
		}
		return
	}
	// Store before waking the readers for the last time, so that when a client has its whole
	// response the next request finds it stored.
	final := *e
	final.size = fl.n
	final.build()
	if fl.spill != nil {
		if cerr := fl.spill.commit(&final); cerr != nil {
			c.log.Warn("cache: disk store failed", "key", e.key, "err", cerr)
			_ = os.Remove(fl.spill.name) // readers keep their descriptor until release
		} else {
			c.st.put(h, &final, false)
		}
	} else {
		c.st.put(h, final.withBody(fl.body()), true)
		if c.st.mem != nil {
			c.st.mem.Wait()
		}
	}
	c.stats.stored.Add(1)
	if registered {
		c.flights.leave(fl)
	}
	fl.finish(nil)
}

// errTooLarge marks a body that outgrew every tier while it streamed.
var errTooLarge = errors.New("cache: object larger than the storage limits")

// errAbandoned stops reading an origin body that no client reads and no tier can keep.
var errAbandoned = errors.New("cache: body abandoned: no reader and too large to store")

// storeLimit is the largest body the flight can still store.
func (c *Cache) storeLimit(fl *flight) int64 {
	if fl.spill != nil {
		return c.st.disk.maxObject
	}
	return c.st.memMax
}

// fill copies the origin body into the flight, moving to a disk file past the memory limit.
func (c *Cache) fill(fl *flight, body io.Reader, declared int64) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if fl.spill == nil && !fl.overflow && c.st.disk != nil && fl.n+int64(n) > c.st.memMax {
				w, derr := c.st.disk.create()
				if derr == nil {
					if derr = fl.spillTo(w); derr != nil {
						w.abort()
					}
				}
			}
			if werr := fl.write(buf[:n]); werr != nil {
				return werr
			}
			if !fl.overflow && fl.n > c.storeLimit(fl) {
				if fl.refs.Load() <= 1 {
					return errAbandoned // nobody reads it and it cannot be stored: stop
				}
				fl.overflowNow()
				c.flights.leave(fl) // no new followers: they could not start from byte 0
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// respondFlight answers one client from a flight's response, streaming the body as it arrives
// (or with a 304/412 when the client's preconditions say so).
func (c *Cache) respondFlight(w ResponseWriter, r *http.Request, fl *flight, e *entry, h http.Header, length int64, cs string) error {
	now := c.now()
	switch evalConditions(r.Header, r.Method, e.status, e.etag, e.lastMod, e.header.Get(hdrDate)) {
	case condNotModified:
		return c.writeMade(w, r, http.StatusNotModified, notModifiedHeader(e.header), nil, -1, e, now, cs)
	case condPreconditionErr:
		return c.writeMade(w, r, http.StatusPreconditionFailed, http.Header{}, nil, 0, e, now, cs)
	}
	body := fl.reader()
	defer body.Close()
	if h == nil {
		h = e.header.Clone()
	}
	return c.writeMade(w, r, e.status, h, body, length, e, now, cs)
}

// follow waits for another request's flight and is served from it; on a timeout, a failed
// fetch, an unshareable response or a different Vary selection it goes to the origin alone.
func (c *Cache) follow(fl *flight, w ResponseWriter, r *http.Request, f Fetcher, key string, h uint64, rq *reqDirectives, lr lookupResult, fwd string) (Outcome, error) {
	fl.followers.Add(1)
	t := time.NewTimer(c.cfg.CollapseTimeout)
	defer t.Stop()
	select {
	case <-fl.ready:
	case <-t.C:
		return c.lead(newFlight(h, key), false, w, r, f, h, rq, lr, fwd)
	case <-r.Context().Done():
		return Outcome{Code: CodeMiss}, r.Context().Err()
	}
	e := fl.e
	if !fl.shareable || e == nil || secondaryKey(e.vary, r.Header) != e.secondary {
		return c.lead(newFlight(h, key), false, w, r, f, h, rq, lr, fwd)
	}
	c.stats.collapsed.Add(1)
	if fl.refreshed {
		return c.serveStored(w, r, lookupResult{e: e, disk: fl.disk}, c.now(), "fwd="+fwd+"; fwd-status=304; collapsed", Outcome{Code: CodeRefreshHit})
	}
	return Outcome{Code: CodeMiss}, c.respondFlight(w, r, fl, e, nil, e.size, "fwd="+fwd+"; collapsed")
}

// forwardHead forwards a HEAD request that storage could not answer; a 200 whose validators
// match the stored response freshens its header (RFC 9111 §4.3.5), one that does not match
// removes it.
func (c *Cache) forwardHead(w ResponseWriter, r *http.Request, f Fetcher, lr lookupResult, fwd string) (Outcome, error) {
	reqTime := c.now()
	resp, err := f.Fetch(r.Clone(r.Context()))
	respTime := c.now()
	if err != nil {
		return c.originError(w, r, err, fwd)
	}
	defer resp.Body.Close()
	c.stats.misses.Add(1)
	if lr.e != nil && resp.StatusCode == http.StatusOK {
		if headMatches(resp, lr.e) {
			c.storeRefreshed(lr, c.updatedEntry(lr.e, resp.Header, reqTime, respTime))
		} else {
			c.st.purge(lr.e.key, false)
		}
	}
	return Outcome{Code: CodeMiss, Fetched: true}, c.writeOrigin(w, r, resp, "fwd="+fwd+"; fwd-status="+strconv.Itoa(resp.StatusCode))
}

// headMatches reports whether a HEAD response describes the stored representation: same
// validator, or, without validators, the same length (RFC 9111 §4.3.5).
func headMatches(resp *http.Response, e *entry) bool {
	if etag := resp.Header.Get(hdrETag); etag != "" || e.etag != "" {
		return etag != "" && e.etag != "" && etagMatch(etag, e.etag, false)
	}
	if lm := resp.Header.Get(hdrLastModified); lm != "" || e.lastMod != "" {
		return lm == e.lastMod
	}
	return resp.ContentLength < 0 || resp.ContentLength == e.size
}

// writeOrigin sends an origin response that is not stored, with our Cache-Status and without
// the targeted fields meant for us.
func (c *Cache) writeOrigin(w ResponseWriter, r *http.Request, resp *http.Response, cs string) error {
	resp.Header = resp.Header.Clone()
	delete(resp.Header, hdrOutpostCC)
	if c.cfg.StripCDNCacheControl {
		delete(resp.Header, hdrCDNCacheControl)
	}
	resp.Header.Add(hdrCacheStatus, "outpost; "+cs)
	return w.WriteResponse(resp)
}

// refreshInBackground revalidates a stale response after serving it (stale-while-revalidate,
// RFC 5861 §3), at most once at a time per stored response.
func (c *Cache) refreshInBackground(r *http.Request, f Fetcher, key string, h uint64, rq reqDirectives, lr lookupResult) {
	if c.closed.Load() {
		return
	}
	if _, busy := c.refreshing.LoadOrStore(lr.e.item, struct{}{}); busy {
		return
	}
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.Method = http.MethodGet
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer c.refreshing.Delete(lr.e.item)
		rq := noDirectives
		_, _ = c.lead(newFlight(h, key), false, discard{}, req, f, h, &rq, lr, "stale")
	}()
}
