package cache

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Cache-Status (RFC 9211) parameter strings, after "outpost; ".
const (
	statusHit = "hit"
)

// errSwapFail means a disk entry could not be read; the request goes to the origin.
var errSwapFail = errors.New("cache: disk entry unreadable")

// codeHit picks the result code of a hit: negative hits are stored error responses.
func codeHit(e *entry, base Code) Outcome {
	if e.status >= 400 {
		base = CodeNegativeHit
	}
	return Outcome{Code: base, Hit: true}
}

// serveLookup is the general GET/HEAD path: request directives, the index (Vary, disk tier),
// the freshness decision, then serving from storage or going forward to the origin.
func (c *Cache) serveLookup(w ResponseWriter, r *http.Request, f Fetcher, key string, h uint64, now time.Time) (Outcome, error) {
	rq := parseRequestDirectives(r.Header)
	lr := c.st.lookup(h, key, r.Header)
	if lr.e == nil && (r.Method == http.MethodHead || len(r.Header[hdrRange]) > 0) && c.awaitFlight(r, h, key) {
		lr = c.st.lookup(h, key, r.Header) // HEAD and Range do not join flights: wait, then look again
	}
	if lr.e == nil {
		if rq.onlyIfCached {
			return c.onlyIfCached(w, r)
		}
		return c.forward(w, r, f, key, h, &rq, lookupResult{}, lr.miss)
	}
	if lr.e.partial != nil {
		return c.servePartial(w, r, f, key, h, &rq, lr, now)
	}
	v, why := decide(lr.e.timing, lr.e.policy, &rq, now)
	var out Outcome
	var err error
	switch v {
	case useFresh:
		out, err = c.serveStored(w, r, lr, now, statusHit, codeHit(lr.e, hitCode(lr)))
	case useStale:
		c.stats.staleServed.Add(1)
		out, err = c.serveStored(w, r, lr, now, "hit; detail=max-stale", Outcome{Code: CodeStaleHit, Hit: true})
	case useStaleRevalidate:
		bf, ok := f.(BackgroundFetcher)
		if !ok {
			return c.forward(w, r, f, key, h, &rq, lr, fwdFor(why))
		}
		c.stats.staleServed.Add(1)
		c.refreshInBackground(r, bf.Background(), key, h, rq, lr)
		out, err = c.serveStored(w, r, lr, now, "hit; detail=stale-while-revalidate", Outcome{Code: CodeStaleHit, Hit: true})
	default:
		if rq.onlyIfCached {
			return c.onlyIfCached(w, r)
		}
		return c.forward(w, r, f, key, h, &rq, lr, fwdFor(why))
	}
	if errors.Is(err, errSwapFail) {
		out, err = c.forward(w, r, f, key, h, &rq, lookupResult{}, "miss")
		out.Code = CodeSwapFailMiss
	}
	return out, err
}

// awaitFlight waits (at most collapse_timeout) for a fetch of key in progress to finish and
// reports whether there was one.
func (c *Cache) awaitFlight(r *http.Request, h uint64, key string) bool {
	fl := c.flights.get(h, key)
	if fl == nil {
		return false
	}
	t := time.NewTimer(c.cfg.CollapseTimeout)
	defer t.Stop()
	select {
	case <-fl.left:
	case <-t.C:
	case <-r.Context().Done():
	}
	return true
}

// hitCode is TCP_MEM_HIT for the memory tier, TCP_HIT for the disk tier.
func hitCode(lr lookupResult) Code {
	if lr.e.body != nil {
		return CodeMemHit
	}
	return CodeHit
}

// fwdFor maps a reason to go forward to the Cache-Status fwd value (RFC 9211 §2.2), with the
// reason's token as detail when it is more than plain staleness.
func fwdFor(why Reason) string {
	switch why {
	case ServeReqNoCache, ServePragmaNoCache, ServeReqMaxAge, ServeReqMinFresh:
		return "request; detail=" + why.Token
	case ServeStale, Reason{}:
		return "stale"
	}
	return "stale; detail=" + why.Token
}

// serveStored answers from a stored response: a 304 or 412 for preconditions, a 206 or 416 for
// ranges, or the whole response, from memory or from the disk tier.
func (c *Cache) serveStored(w ResponseWriter, r *http.Request, lr lookupResult, now time.Time, cs string, out Outcome) (Outcome, error) {
	e := lr.e
	switch evalConditions(r.Header, r.Method, e.status, e.etag, e.lastMod, e.header.Get(hdrDate)) {
	case condNotModified:
		c.stats.notModified.Add(1)
		if !out.Fetched {
			c.stats.hits.Add(1)
			out.Code = CodeIMSHit
		}
		return out, c.writeMade(w, r, http.StatusNotModified, notModifiedHeader(e.header), nil, -1, e, now, cs)
	case condPreconditionErr:
		return out, c.writeMade(w, r, http.StatusPreconditionFailed, http.Header{}, nil, 0, e, now, cs)
	}
	if ranges, ok := c.wantRanges(r, e); ok {
		return c.serveRanges(w, r, lr, ranges, now, cs, out)
	}
	if e.body != nil || e.size == 0 && lr.disk == nil {
		return c.writeStored(w, r, e, now, cs, out)
	}
	if c.st.mem != nil && e.size <= c.st.memMax {
		body, err := c.st.disk.readAll(lr.disk)
		if err != nil {
			c.st.disk.drop(lr.disk, err)
			return out, errSwapFail
		}
		e = e.withBody(body)
		c.st.put(primaryHash(e.key), e, false)
		c.stats.diskHits.Add(1)
		return c.writeStored(w, r, e, now, cs, out)
	}
	return c.streamFromDisk(w, r, lr, now, cs, out)
}

// streamFromDisk sends a large disk-tier object without loading it into memory.
func (c *Cache) streamFromDisk(w ResponseWriter, r *http.Request, lr lookupResult, now time.Time, cs string, out Outcome) (Outcome, error) {
	f, err := c.st.disk.openFile(lr.disk)
	if err != nil {
		c.st.disk.drop(lr.disk, err)
		return out, errSwapFail
	}
	defer f.Close()
	c.stats.hits.Add(1)
	c.stats.diskHits.Add(1)
	body := io.NewSectionReader(f, bodyOffset, lr.e.size)
	return out, c.writeMade(w, r, lr.e.status, lr.e.header.Clone(), body, lr.e.size, lr.e, now, cs)
}

// writeStored writes an in-memory entry with its pre-serialised head: Age and Cache-Status are
// formatted into a pooled buffer passed as extra.
func (c *Cache) writeStored(w ResponseWriter, r *http.Request, e *entry, now time.Time, cs string, out Outcome) (Outcome, error) {
	e.touch(now)
	xb := getBuf()
	xb.b = appendStatusFields(xb.b[:0], e, now, cs)
	body := e.body
	if r.Method == http.MethodHead || !bodyAllowed(e.status) {
		body = nil
	}
	err := w.WriteStored(e.head, xb.b, body)
	putBuf(xb)
	if out.Hit {
		c.stats.hits.Add(1)
		if out.Code == CodeMemHit {
			c.stats.memHits.Add(1)
		}
	}
	return out, err
}

// appendStatusFields appends "Age: n" (RFC 9111 §5.1) and our Cache-Status member
// (RFC 9211) with the remaining freshness as ttl.
func appendStatusFields(b []byte, e *entry, now time.Time, cs string) []byte {
	age := e.timing.currentAge(now)
	b = append(b, "Age: "...)
	b = strconv.AppendInt(b, min(int64(age/time.Second), maxDelta), 10)
	b = append(b, "\r\nCache-Status: outpost; "...)
	b = append(b, cs...)
	b = append(b, "; ttl="...)
	b = strconv.AppendInt(b, int64((e.policy.lifetime-age)/time.Second), 10)
	return append(b, "\r\n"...)
}

// addStatusFields sets Age (unless the header carries the origin's own, on the response that
// fetched it) and appends our Cache-Status member on a header being sent.
func addStatusFields(h http.Header, e *entry, now time.Time, cs string) {
	line := appendStatusFields(nil, e, now, cs)
	for l := range strings.SplitSeq(strings.TrimSuffix(string(line), "\r\n"), "\r\n") {
		k, v, _ := strings.Cut(l, ": ")
		if k == hdrAge && len(h[hdrAge]) > 0 {
			continue
		}
		h.Add(k, v)
	}
}

// writeMade writes a response the cache makes (304, 412, 206, 416, 504, a disk stream). When e
// is set, Age and Cache-Status describe it.
func (c *Cache) writeMade(w ResponseWriter, r *http.Request, status int, h http.Header, body io.Reader, length int64, e *entry, now time.Time, cs string) error {
	if e != nil {
		addStatusFields(h, e, now, cs)
	} else {
		h.Add(hdrCacheStatus, "outpost; "+cs)
	}
	resp := &http.Response{
		Status: strconv.Itoa(status) + " " + statusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, ContentLength: length, Body: http.NoBody, Request: r,
	}
	if body != nil && r.Method != http.MethodHead && bodyAllowed(status) {
		resp.Body = io.NopCloser(body)
	}
	if !bodyAllowed(status) {
		resp.ContentLength = -1
	}
	return w.WriteResponse(resp)
}

// onlyIfCached answers a request with only-if-cached that storage cannot satisfy with 504
// (RFC 9111 §5.2.1.7).
func (c *Cache) onlyIfCached(w ResponseWriter, r *http.Request) (Outcome, error) {
	msg := "504 Gateway Timeout: only-if-cached and no usable stored response\n"
	h := http.Header{hdrContentType: {"text/plain; charset=utf-8"}}
	err := c.writeMade(w, r, http.StatusGatewayTimeout, h, strings.NewReader(msg), int64(len(msg)), nil, c.now(), "fwd=miss; detail=only-if-cached")
	return Outcome{Code: CodeMiss}, err
}

// wantRanges returns the satisfiable ranges of a Range request that storage should answer
// (RFC 9110 §14.2): GET, a stored 200, and an If-Range that still matches (§13.1.5).
func (c *Cache) wantRanges(r *http.Request, e *entry) ([]byteRange, bool) {
	v := r.Header[hdrRange]
	if len(v) != 1 || r.Method != http.MethodGet || e.status != http.StatusOK {
		return nil, false
	}
	if ir := r.Header.Get(hdrIfRange); ir != "" && !ifRangeMatches(ir, e) {
		return nil, false
	}
	return parseRange(v[0], e.size)
}

// ifRangeMatches compares If-Range with the stored validators: a strong ETag match, or an
// exact Last-Modified date match (RFC 9110 §13.1.5).
func ifRangeMatches(ir string, e *entry) bool {
	ir = strings.TrimSpace(ir)
	if strings.HasPrefix(ir, `"`) || strings.HasPrefix(ir, "W/") {
		return e.etag != "" && etagMatch(ir, e.etag, true)
	}
	t, err := parseHTTPDate(ir)
	lm, err2 := parseHTTPDate(e.lastMod)
	return err == nil && err2 == nil && t.Equal(lm)
}

// serveRanges answers a range request from a stored full response: 416 when nothing is
// satisfiable, a single 206 part, or multipart/byteranges.
func (c *Cache) serveRanges(w ResponseWriter, r *http.Request, lr lookupResult, ranges []byteRange, now time.Time, cs string, out Outcome) (Outcome, error) {
	e := lr.e
	out.Code = CodeHit
	if len(ranges) == 0 {
		h := http.Header{hdrContentRange: {"bytes */" + strconv.FormatInt(e.size, 10)}}
		return out, c.writeMade(w, r, http.StatusRequestedRangeNotSatisfiable, h, nil, 0, e, now, cs)
	}
	var src io.ReaderAt
	if e.body != nil {
		src = bytes.NewReader(e.body)
	} else {
		f, err := c.st.disk.openFile(lr.disk)
		if err != nil {
			c.st.disk.drop(lr.disk, err)
			return out, errSwapFail
		}
		defer f.Close()
		src = io.NewSectionReader(f, bodyOffset, e.size)
	}
	c.stats.hits.Add(1)
	h := e.header.Clone()
	if len(ranges) == 1 {
		rg := ranges[0]
		h.Set(hdrContentRange, contentRange(rg, e.size))
		return out, c.writeMade(w, r, http.StatusPartialContent, h, io.NewSectionReader(src, rg.start, rg.end-rg.start+1), rg.end-rg.start+1, e, now, cs)
	}
	body, n, ctype := multipartRanges(src, ranges, e.size, e.header.Get(hdrContentType))
	h.Set(hdrContentType, ctype)
	return out, c.writeMade(w, r, http.StatusPartialContent, h, body, n, e, now, cs)
}

// multipartRanges streams a multipart/byteranges body (RFC 9110 §14.6) and its exact length.
func multipartRanges(src io.ReaderAt, ranges []byteRange, size int64, ctype string) (io.Reader, int64, string) {
	var hdrs bytes.Buffer
	mw := multipart.NewWriter(&hdrs)
	var readers []io.Reader
	var n int64
	for _, rg := range ranges {
		ph := textproto.MIMEHeader{}
		if ctype != "" {
			ph.Set(hdrContentType, ctype)
		}
		ph.Set(hdrContentRange, contentRange(rg, size))
		hdrs.Reset()
		_, _ = mw.CreatePart(ph)
		part := bytes.Clone(hdrs.Bytes())
		readers = append(readers, bytes.NewReader(part), io.NewSectionReader(src, rg.start, rg.end-rg.start+1))
		n += int64(len(part)) + rg.end - rg.start + 1
	}
	hdrs.Reset()
	_ = mw.Close()
	tail := bytes.Clone(hdrs.Bytes())
	readers = append(readers, bytes.NewReader(tail))
	n += int64(len(tail))
	return io.MultiReader(readers...), n, "multipart/byteranges; boundary=" + mw.Boundary()
}
