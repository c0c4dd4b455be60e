package cache

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// This file stores and combines partial content (RFC 9111 §3.3, §3.4): a 206 to a single-range
// request is kept as a partial entry (the representation's length, the byte ranges held and
// its validators); later 206s with the same strong validator are combined with it; a complete
// combination becomes an ordinary stored 200. A range request inside what is held is served
// from it (§3.3 needs no validator for that); a full GET completes a held prefix that has a
// strong validator with a range request for the rest.

// parseContentRange parses "bytes first-last/complete" (RFC 9110 §14.4) with a known length.
func parseContentRange(v string) (r byteRange, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return r, 0, false
	}
	span, length, found := strings.Cut(rest, "/")
	first, last, found2 := strings.Cut(span, "-")
	if !found || !found2 {
		return r, 0, false
	}
	a, ok1 := parseDigits(first)
	b, ok2 := parseDigits(last)
	n, ok3 := parseDigits(length)
	if !ok1 || !ok2 || !ok3 || a > b || b >= n {
		return r, 0, false
	}
	return byteRange{a, b}, n, true
}

// strongValidator reports a strong ETag or a Last-Modified to combine partial responses by.
func strongValidator(h http.Header) bool {
	etag := h.Get(hdrETag)
	return etag != "" && !strings.HasPrefix(etag, "W/") || etag == "" && h.Get(hdrLastModified) != ""
}

// sameRepresentation reports whether two sets of fields carry the same strong validator
// (RFC 9111 §3.4).
func sameRepresentation(a, b http.Header) bool {
	ea, eb := a.Get(hdrETag), b.Get(hdrETag)
	if ea != "" || eb != "" {
		return etagMatch(ea, eb, true)
	}
	la := a.Get(hdrLastModified)
	return la != "" && la == b.Get(hdrLastModified)
}

// addRange merges r into a sorted, non-overlapping coverage list.
func addRange(cover []byteRange, r byteRange) []byteRange {
	out := make([]byteRange, 0, len(cover)+1)
	for _, c := range cover {
		switch {
		case c.end+1 < r.start:
			out = append(out, c)
		case r.end+1 < c.start:
			out = append(out, r)
			r = c
		default:
			r = byteRange{min(r.start, c.start), max(r.end, c.end)}
		}
	}
	return append(out, r)
}

// covers reports whether every range lies inside the coverage.
func covers(cover []byteRange, ranges []byteRange) bool {
	for _, r := range ranges {
		in := false
		for _, c := range cover {
			if c.start <= r.start && r.end <= c.end {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// servePartial handles a request that found a partial entry (t.lr).
func (t *txn) servePartial() (Outcome, error) {
	c, r, e := t.c, t.r, t.lr.e
	v, _ := decide(e.timing, e.livePolicy(), &t.rq, t.now)
	usable := v == useFresh || v == useStale
	if r.Values(hdrRange) != nil && r.Method() == http.MethodGet {
		if ranges, ok := c.wantRanges(r, e); usable && ok && len(ranges) > 0 && covers(e.partial, ranges) {
			return t.serveRanges(ranges, statusHit, Outcome{Code: CodeHit, Hit: true})
		}
		return t.fetchRange()
	}
	if r.Method() == http.MethodGet && usable && len(e.partial) == 1 && e.partial[0].start == 0 && strongValidator(e.header) {
		return t.completePartial()
	}
	t.lr = lookupResult{}
	return t.forward("partial")
}

// fetchRange forwards a range request and stores a single-part 206 it gets back.
func (t *txn) fetchRange() (Outcome, error) {
	c := t.c
	t.fwd = "uri-miss"
	if t.lr.e != nil {
		t.fwd = "partial"
	}
	if err := t.fetch(Upstream{}); err != nil {
		return t.originError(err)
	}
	resp := t.resp
	if resp.StatusCode == http.StatusOK {
		t.lr, t.fl, t.registered = lookupResult{}, newFlight(t.h, t.key), false
		return t.fresh()
	}
	defer resp.Body.Close()
	c.stats.misses.Add(1)
	out := Outcome{Code: CodeMiss, Fetched: true}
	cs := "fwd=" + t.fwd + "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	e, body, ok := t.partialEntry(t.lr.e)
	if !ok {
		if resp.StatusCode == http.StatusPartialContent {
			cs += "; detail=" + NotStoredPartial.Token
		}
		return out, t.writeOrigin(resp, cs)
	}
	if body == nil {
		return t.originError(io.ErrUnexpectedEOF)
	}
	c.st.put(t.h, e, e.partial == nil)
	c.stats.stored.Add(1)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return out, t.writeOrigin(resp, cs+"; stored")
}

// partialEntry reads a storable 206 (t.resp) and combines it with old. ok is false when the
// response is not storable (it is then passed on as received); body is nil when it was cut
// short.
func (t *txn) partialEntry(old *entry) (e *entry, body []byte, ok bool) {
	c, resp := t.c, t.resp
	part, total, valid := parseContentRange(resp.Header.Get(hdrContentRange))
	d := parseResponseDirectives(resp.Header)
	if resp.StatusCode != http.StatusPartialContent || !valid || c.st.mem == nil || total > c.st.memMax ||
		storable(http.StatusOK, resp.Header, &d, &t.rq, t.r.Values(hdrAuthorization) != nil) != (Reason{}) {
		return nil, nil, false
	}
	n := part.end - part.start + 1
	body, err := io.ReadAll(io.LimitReader(resp.Body, n+1))
	if err != nil {
		return nil, nil, true
	}
	if int64(len(body)) != n {
		// The body disagrees with Content-Range: relay it as received, do not store it.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		return nil, nil, false
	}
	e = t.newEntry(&d)
	delete(e.header, hdrContentRange)
	e.status, e.size = http.StatusOK, total
	buf := make([]byte, total)
	var cover []byteRange
	if old != nil && old.partial != nil && old.size == total && old.secondary == e.secondary && sameRepresentation(old.header, e.header) {
		copy(buf, old.body)
		cover = old.partial
	}
	copy(buf[part.start:], body)
	cover = addRange(cover, part)
	e.body = buf
	if len(cover) != 1 || cover[0] != (byteRange{0, total - 1}) {
		e.partial = cover
	}
	return e.build(), body, true
}

// completePartial answers a full GET for a held prefix by asking the origin for the rest
// (with If-Range, RFC 9110 §13.1.5) and combining the two.
func (t *txn) completePartial() (Outcome, error) {
	c, e := t.c, t.lr.e
	u := forStorage(nil)
	u.Range = "bytes=" + strconv.FormatInt(e.partial[0].end+1, 10) + "-"
	u.IfRange = e.etag
	if u.IfRange == "" {
		u.IfRange = e.lastMod
	}
	t.fwd = "partial"
	if err := t.fetch(u); err != nil {
		return t.originError(err)
	}
	if t.resp.StatusCode == http.StatusOK {
		t.lr, t.fl, t.registered = lookupResult{}, newFlight(t.h, t.key), false
		return t.fresh()
	}
	full, _, ok := t.partialEntry(e)
	t.resp.Body.Close()
	t.lr = lookupResult{}
	if !ok || full == nil || full.partial != nil {
		return t.forward("partial")
	}
	c.st.put(t.h, full, true)
	c.stats.stored.Add(1)
	c.stats.misses.Add(1)
	return c.writeStored(t.w, t.r.Method(), full, c.now(), "fwd=partial; fwd-status=206; stored", Outcome{Code: CodeMiss, Fetched: true})
}
