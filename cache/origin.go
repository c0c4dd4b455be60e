package cache

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// This file is the miss: a request storage could not satisfy goes forward to the origin,
// leading a flight (one fetch that collapsed requests share) or following one, and the
// response is stored and streamed as it arrives (pump). Each step is a method of the
// request's txn (serve.go).

// forward goes to the origin for a request storage could not satisfy: a miss, or a stored
// response (t.lr.e) that must be validated. Concurrent GETs for one key share one fetch.
func (t *txn) forward(fwd string) (Outcome, error) {
	t.fwd = fwd
	if t.r.Method() == http.MethodHead {
		return t.forwardHead()
	}
	if t.r.Values(hdrRange) != nil && t.lr.e == nil {
		return t.fetchRange()
	}
	if t.c.knobs().cfg.Collapse && !t.rq.noStore {
		fl, leader := t.c.flights.join(t.h, t.key)
		if !leader {
			return t.follow(fl)
		}
		t.fl, t.registered = fl, true
		return t.lead()
	}
	return t.alone()
}

// alone leads a fetch of its own that nobody else joins.
func (t *txn) alone() (Outcome, error) {
	t.fl, t.registered = newFlight(t.h, t.key), false
	return t.lead()
}

// follow waits for another request's flight and is served from it; on a timeout, a failed
// fetch, an unshareable response or a different Vary selection it goes to the origin alone.
func (t *txn) follow(fl *flight) (Outcome, error) {
	c, r := t.c, t.r
	fl.followers.Add(1)
	timer := time.NewTimer(c.knobs().cfg.CollapseTimeout)
	defer timer.Stop()
	select {
	case <-fl.ready:
	case <-timer.C:
		return t.alone()
	case <-r.Done():
		return Outcome{Code: CodeMiss}, errClientGone
	}
	e := fl.e
	if !fl.shareable || e == nil || secondaryKey(e.vary, r) != e.secondary {
		return t.alone()
	}
	c.stats.collapsed.Add(1)
	t.now = c.now()
	if fl.refreshed {
		t.lr = lookupResult{e: e, disk: fl.disk}
		return t.serveStored("fwd="+t.fwd+"; fwd-status=304; collapsed", Outcome{Code: CodeRefreshHit})
	}
	if t.staleFallback(e.size) {
		// As the leader does (fresh): a follower that may fall back to its stale response
		// takes the whole new body first, so an origin failing mid-body leaves it the stale
		// response rather than a cut one.
		if err := fl.wait(); err != nil {
			out, _, werr := t.serveStaleOnError(err)
			return out, werr
		}
	}
	return Outcome{Code: CodeMiss}, t.respondFlight(fl, e, nil, "fwd="+t.fwd+"; collapsed")
}

// staleFallback says whether a revalidation whose new body has the declared size (-1:
// unknown) waits for the whole body before answering, so that an origin failing mid-body can
// still be answered with the stale response: when it fits the memory tier and stale-if-error
// (or stale_on_error) allows the stale response.
func (t *txn) staleFallback(size int64) bool {
	return t.lr.e != nil && size >= 0 && size <= t.c.st.memMax && t.staleAllowed(io.ErrUnexpectedEOF)
}

// forStorage is the fetch the cache stores: a GET without the client's preconditions and
// Range (the cache answers those itself), with the stored response's validators when
// revalidating (RFC 9111 §4.3.1).
func forStorage(stale *entry) Upstream {
	u := Upstream{Store: true}
	if stale != nil {
		u.IfNoneMatch, u.IfModifiedSince = stale.etag, stale.lastMod
	}
	return u
}

// fetch asks the origin through the Fetcher and records the response and its timing
// (RFC 9111 §4.2.3 needs both ends of the exchange).
func (t *txn) fetch(u Upstream) error {
	t.reqTime = t.c.now()
	resp, err := t.f.Fetch(u)
	t.respTime = t.c.now()
	t.resp = resp
	return err
}

// lead performs the flight's fetch and answers its own client; a registered flight is also
// published to followers.
func (t *txn) lead() (Outcome, error) {
	if out, ok, err := t.storedMeanwhile(); ok {
		return out, err
	}
	err := t.fetch(forStorage(t.lr.e))
	if err == nil && t.resp.StatusCode == http.StatusNotModified && t.lr.e != nil {
		if selects304(t.resp.Header, t.lr.e) {
			return t.refreshed()
		}
		// The 304 is about another representation (RFC 9111 §4.3.4): ask again unconditionally.
		t.resp.Body.Close()
		t.lr = lookupResult{}
		err = t.fetch(forStorage(nil))
	}
	resp := t.resp
	if err != nil || resp.StatusCode >= 500 && resp.StatusCode <= 504 {
		if t.staleAllowed(err) {
			t.abandon()
			if resp != nil {
				defer resp.Body.Close()
			}
			if out, served, werr := t.serveStaleOnError(err); served || err != nil {
				return out, werr
			}
			return Outcome{Code: CodeMiss, Fetched: true}, t.writeOrigin(resp, "fwd="+t.fwd+"; fwd-status="+strconv.Itoa(resp.StatusCode))
		}
		if err != nil {
			t.abandon()
			return t.originError(err)
		}
	}
	return t.fresh()
}

// fresh handles a new response from the origin (t.resp): stored and shared when RFC 9111 §3
// allows, otherwise passed to this client only.
func (t *txn) fresh() (Outcome, error) {
	c, r, resp, fl := t.c, t.r, t.resp, t.fl
	out := t.missOutcome()
	cs := "fwd=" + t.fwd + "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	d := parseResponseDirectives(resp.Header)
	why := storable(resp.StatusCode, resp.Header, &d, &t.rq, r.Values(hdrAuthorization) != nil)
	if why == (Reason{}) {
		why = c.sizeCheck(resp.ContentLength)
	}
	var e *entry
	if why == (Reason{}) {
		e = t.newEntry(&d)
		if e.policy.lifetime == 0 && !e.heuristic && e.etag == "" && e.lastMod == "" && !explicitFreshness(resp.Header, &d) {
			why = NotStoredNoFreshness
		}
	}
	if why != (Reason{}) {
		return out, t.passOn(why, cs)
	}
	fl.expect = resp.ContentLength
	fl.publish(e, true, false)
	if resp.ContentLength >= 0 && resp.ContentLength <= c.st.memMax {
		fl.buf = make([]byte, 0, resp.ContentLength)
	}
	fl.refs.Add(1)
	c.pumps.Add(1)
	c.st.flyStart(e.seq) // a tag purge meanwhile keeps its ban until this body is stored (tags.go)
	go c.pump(fl, t.registered, resp.Body, e, t.h)
	defer fl.release()
	if t.staleFallback(resp.ContentLength) {
		// A revalidation that may fall back to the stale response takes the whole new body
		// first: an origin failing mid-body then still leaves this client a complete response.
		if err := fl.wait(); err != nil {
			out, _, werr := t.serveStaleOnError(err)
			return out, werr
		}
	}
	t.now = c.now()
	return out, t.respondFlight(fl, e, c.leaderHeader(resp.Header, t.respTime), cs+"; stored")
}

// missOutcome counts a new response from the origin and names it: a miss, or the new
// response to a revalidation (forced by the client's no-cache or not).
func (t *txn) missOutcome() Outcome {
	code := CodeMiss
	if t.lr.e != nil {
		code = CodeRefreshMiss
		t.c.stats.refreshMisses.Add(1)
		if t.rq.noCache || t.rq.pragmaNoCache {
			code = CodeClientRefreshMiss
		}
	}
	t.c.stats.misses.Add(1)
	return Outcome{Code: code, Fetched: true}
}

// passOn answers with an origin response that is not stored (why says which rule): followers
// go to the origin themselves, a stored response the origin no longer lets be stored goes,
// and the client's own validators may still turn it into a 304.
func (t *txn) passOn(why Reason, cs string) error {
	c, r, resp := t.c, t.r, t.resp
	c.stats.notStored.Add(1)
	t.abandon()
	if t.lr.e != nil && resp.StatusCode < 500 {
		c.st.purge(t.lr.e.key, false) // the origin no longer lets this be stored
	}
	defer resp.Body.Close()
	if evalConditions(r, r.Method(), resp.StatusCode, resp.Header.Get(hdrETag), resp.Header.Get(hdrLastModified), resp.Header.Get(hdrDate)) == condNotModified {
		// The client's own validators still match: answer its conditional request.
		h := notModifiedHeader(resp.Header)
		h.Add(hdrCacheStatus, c.statusName()+"; "+c.withKey(cs+"; detail="+why.Token, t.key))
		return t.w.WriteResponse(&http.Response{StatusCode: http.StatusNotModified, Status: "304 Not Modified",
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, ContentLength: -1, Body: http.NoBody})
	}
	return t.writeOrigin(resp, cs+"; detail="+why.Token)
}

// newEntry builds the stored form of the origin's response (without its body).
func (t *txn) newEntry(d *respDirectives) *entry {
	c, resp := t.c, t.resp
	hdr := storedHeader(resp.Header, d, c.knobs().cfg.StripCDNCacheControl, t.respTime)
	vary := varyNames(resp.Header)
	sec := secondaryKey(vary, t.r)
	lifetime, heur := freshnessLifetime(resp.StatusCode, resp.Header, d, t.respTime, c.knobs().heur)
	e := &entry{
		key: t.key, secondary: sec, item: itemKey(t.h, t.key, sec), vary: vary,
		status: resp.StatusCode, header: hdr, size: resp.ContentLength,
		timing: newTiming(resp.Header, t.reqTime, t.respTime), policy: newPolicy(d, lifetime), heuristic: heur,
		used: new(atomic.Int64), tags: c.takeTags(hdr), purged: newPurgeMark(), seq: c.st.seq.Add(1),
	}
	e.used.Store(t.respTime.Unix())
	e.etag, e.lastMod = hdr.Get(hdrETag), hdr.Get(hdrLastModified)
	return e
}

// leaderHeader is the header of the response as the client that fetched it receives it: the
// origin's end-to-end fields, including those a qualified no-cache or private keeps out of
// storage (they only may not be reused, RFC 9111 §5.2.2.4, §5.2.2.7), and the origin's Age as
// received (RFC 9111 §5.1: the response was not served from storage).
func (c *Cache) leaderHeader(origin http.Header, respTime time.Time) http.Header {
	h := storedHeader(origin, &respDirectives{}, c.knobs().cfg.StripCDNCacheControl, respTime)
	c.stripTags(h)
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

// respondFlight answers the client from a flight's response, streaming the body as it
// arrives (or with a 304/412 when the client's preconditions say so). h is the header to
// send (nil: the stored one).
func (t *txn) respondFlight(fl *flight, e *entry, h http.Header, cs string) error {
	r := t.r
	switch evalConditions(r, r.Method(), e.status, e.etag, e.lastMod, e.header.Get(hdrDate)) {
	case condNotModified:
		return t.writeMade(made{status: http.StatusNotModified, header: notModifiedHeader(e.header), length: -1}, e, cs)
	case condPreconditionErr:
		return t.writeMade(made{status: http.StatusPreconditionFailed, header: http.Header{}}, e, cs)
	}
	body := fl.reader()
	defer body.Close()
	length := e.size // the declared length, as the flight expects it (-1 when unknown)
	if h == nil {
		h = e.header.Clone()
	}
	return t.writeMade(made{status: e.status, header: h, body: body, length: length}, e, cs)
}

// pump reads the origin body into the flight, then stores the complete response.
func (c *Cache) pump(fl *flight, registered bool, body io.ReadCloser, e *entry, h uint64) {
	defer c.pumps.Done()
	defer c.st.flyEnd(e.seq)
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

// abandon publishes a failed flight: followers go to the origin themselves.
func (t *txn) abandon() {
	fl := t.fl
	select {
	case <-fl.ready:
	default:
		fl.publish(nil, false, false)
	}
	if t.registered {
		t.c.flights.leave(fl)
	}
	fl.release()
}

// refreshed handles a 304 to a revalidation: the stored header is updated (RFC 9111 §4.3.4)
// and the stored response served, to this client and to followers.
func (t *txn) refreshed() (Outcome, error) {
	c, fl, resp := t.c, t.fl, t.resp
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	e := c.updatedEntry(t.lr.e, resp.Header, t.reqTime, t.respTime)
	c.storeRefreshed(t.lr, e)
	c.stats.refreshHits.Add(1)
	fl.disk = t.lr.disk
	fl.publish(e, true, true)
	if t.registered {
		c.flights.leave(fl)
	}
	fl.release()
	t.lr.e, t.now = e, c.now()
	return t.serveStored("fwd="+t.fwd+"; fwd-status=304; stored", Outcome{Code: CodeRefreshHit, Fetched: true})
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
	for k, v := range storedHeader(upd, &d, c.knobs().cfg.StripCDNCacheControl, respTime) {
		if k == hdrContentRange {
			continue // framing of a partial response, not of the stored one
		}
		merged[k] = v
	}
	e := *old
	e.header = merged
	e.purged = newPurgeMark() // a revalidated response is fresh again (softpurge.go)
	e.seq = c.st.seq.Add(1)   // and confirmed by the origin after any earlier tag purge
	if len(upd[c.tagRules.field]) > 0 {
		e.tags = c.takeTags(merged) // the 304's tags replace the stored ones
	}
	dm := parseResponseDirectives(merged)
	e.timing = newTiming(upd, reqTime, respTime)
	lifetime, heur := freshnessLifetime(e.status, merged, &dm, respTime, c.knobs().heur)
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

// staleAllowed says whether the stale stored response may be served because the origin
// failed (err set) or answered 5xx (RFC 5861 §4, RFC 9111 §4.2.4).
func (t *txn) staleAllowed(err error) bool {
	c := t.c
	if t.lr.e == nil {
		return false
	}
	window := time.Duration(-1)
	if (err == nil && c.knobs().cfg.StaleOn5xx) || (err != nil && c.knobs().cfg.StaleOnError) {
		window = c.knobs().cfg.StaleMax
	}
	return staleOnErrorAllowed(t.lr.e.timing, t.lr.e.livePolicy(), &t.rq, c.now(), window)
}

// serveStaleOnError serves the stale response after a failed fetch (err) or a 5xx (t.resp);
// served is false when its disk copy failed.
func (t *txn) serveStaleOnError(err error) (Outcome, bool, error) {
	status := "502"
	if err == nil {
		status = strconv.Itoa(t.resp.StatusCode)
	}
	t.c.stats.staleServed.Add(1)
	t.now = t.c.now()
	cs := "fwd=" + t.fwd + "; fwd-status=" + status + "; detail=stale-if-error"
	out, werr := t.serveStored(cs, Outcome{Code: CodeStaleHit, Hit: true, Fetched: true})
	if errors.Is(werr, errSwapFail) {
		if err != nil {
			o, e := t.originError(err)
			return o, false, e
		}
		return Outcome{}, false, nil
	}
	return out, true, werr
}

// originError answers a failed fetch: 504 for a timeout, 502 otherwise (never a dropped
// connection).
func (t *txn) originError(err error) (Outcome, error) {
	status := http.StatusBadGateway
	var ne net.Error
	var down *UnavailableError
	switch {
	case errors.As(err, &down):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		status = http.StatusGatewayTimeout
	}
	t.c.log.Debug("cache: origin fetch failed", "key", t.key, "err", err)
	t.now = t.c.now()
	m := textBody(status, "text/plain; charset=utf-8", wire.StatusText(status)+": origin unreachable\n")
	if down != nil {
		m.header.Set("Retry-After", strconv.Itoa(down.RetryAfterSeconds()))
	}
	return Outcome{Code: CodeMiss, Fetched: true}, t.writeMade(m, nil, "fwd="+t.fwd+"; detail=origin-error")
}

// forwardHead forwards a HEAD request that storage could not answer; a 200 whose validators
// match the stored response freshens its header (RFC 9111 §4.3.5), one that does not match
// removes it.
func (t *txn) forwardHead() (Outcome, error) {
	c := t.c
	if err := t.fetch(Upstream{}); err != nil {
		return t.originError(err)
	}
	resp := t.resp
	defer resp.Body.Close()
	c.stats.misses.Add(1)
	if t.lr.e != nil && resp.StatusCode == http.StatusOK {
		if headMatches(resp, t.lr.e) {
			c.storeRefreshed(t.lr, c.updatedEntry(t.lr.e, resp.Header, t.reqTime, t.respTime))
			resp.Header = resp.Header.Clone() // the stored entry may share it: writeOrigin edits
		} else {
			c.st.purge(t.lr.e.key, false)
		}
	}
	return Outcome{Code: CodeMiss, Fetched: true}, t.writeOrigin(resp, "fwd="+t.fwd+"; fwd-status="+strconv.Itoa(resp.StatusCode))
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
// the targeted fields meant for us. It edits resp.Header in place: the response is this
// transaction's alone (followers of an abandoned flight fetch for themselves), and a caller
// that shared its header with a stored entry passes a copy.
func (t *txn) writeOrigin(resp *http.Response, cs string) error {
	delete(resp.Header, hdrOutpostCC)
	t.c.stripTags(resp.Header)
	if t.c.knobs().cfg.StripCDNCacheControl {
		delete(resp.Header, hdrCDNCacheControl)
	}
	resp.Header.Add(hdrCacheStatus, t.c.statusName()+"; "+t.c.withKey(cs, t.key))
	return t.w.WriteResponse(resp)
}

// refreshInBackground revalidates the stale response t.lr after serving it
// (stale-while-revalidate, RFC 5861 §3) for r through f (a BackgroundFetcher's), at most once
// at a time per stored response. The revalidation is a txn of its own, answering nobody.
func (t *txn) refreshInBackground(r Request, f Fetcher) {
	c, item := t.c, t.lr.e.item
	if c.closed.Load() {
		return
	}
	if _, busy := c.refreshing.LoadOrStore(item, struct{}{}); busy {
		return
	}
	bg := &txn{c: c, w: discard{}, r: asGET{r}, f: f, key: t.key, h: t.h, now: t.now, rq: noDirectives, lr: t.lr, fwd: "stale"}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer c.refreshing.Delete(item)
		_, _ = bg.alone()
	}()
}

// errClientGone ends a request whose client went away while it waited.
var errClientGone = errors.New("cache: the client went away")

// asGET is a request seen as a GET (a fetch the cache makes for storage on its behalf).
type asGET struct{ Request }

// Method is GET.
func (asGET) Method() string { return http.MethodGet }
