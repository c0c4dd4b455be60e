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

	"github.com/cespare/xxhash/v2"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// This file is a request's way through the cache, top to bottom: Serve, the fast memory hit,
// the general path (txn: directives, the index, the freshness decision) and the answers made
// from storage. A miss continues in origin.go.

// Serve answers one proxied request (see Handler).
func (c *Cache) Serve(w ResponseWriter, r Request, f Fetcher) (Outcome, error) {
	switch r.Method() {
	case http.MethodGet, http.MethodHead:
		return c.serveRead(w, r, f)
	case "PURGE":
		return c.servePurge(w, r)
	default:
		return c.serveUnsafe(w, r, f)
	}
}

// noDirectives is a request without Cache-Control or Pragma.
var noDirectives = reqDirectives{maxAge: -1, maxStale: -1, minFresh: -1, staleIfError: -1}

// changesHit are the request fields that change how a fresh hit is served: cache directives,
// preconditions and ranges.
var changesHit = [...]string{hdrCacheControl, hdrPragma, hdrRange, hdrIfNoneMatch, hdrIfModifiedSince,
	hdrIfMatch, hdrIfUnmodifiedSince}

// plainRequest reports a request without any of the fields in changesHit.
func plainRequest(r Request) bool { return !r.HasAny(changesHit[:]) }

// serveRead serves GET and HEAD. The fast path — a plain request for a fresh object without
// Vary in memory — builds the key in a pooled buffer, checks freshness and writes the stored
// head and body with WriteStored, without allocating.
func (c *Cache) serveRead(w ResponseWriter, r Request, f Fetcher) (Outcome, error) {
	kb := getBuf()
	kb.b = normalizeKey(r.AppendURL(kb.b[:0]), 0)
	if kr := rulesOf(r); kr != nil {
		kb.b = kr.apply(kb.b, r)
	}
	h := xxhash.Sum64(kb.b)
	now := c.now()
	if plainRequest(r) {
		if e := c.st.memGet(h, kb.b, ""); e != nil && e.partial == nil {
			if v, _ := decide(e.timing, e.livePolicy(), &noDirectives, now); v == useFresh {
				putBuf(kb)
				return c.writeStored(w, r.Method(), e, now, statusHit, codeHit(e, CodeMemHit))
			}
		}
	}
	key := string(kb.b)
	putBuf(kb)
	return c.newTxn(w, r, f, key, h, now).serveLookup()
}

// Cache-Status (RFC 9211) parameter strings, after "<name>; ".
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

// txn is one request on the general path (everything but the fast memory hit in cache.go):
// the writer, the request, its key and directives and what storage holds for it, then, when it
// goes to the origin, its Cache-Status fwd value, its flight and the fetch's outcome. The
// functions of serve.go, origin.go and partial.go are its methods; it lives for one Serve call
// (a background revalidation makes its own).
type txn struct {
	c   *Cache
	w   ResponseWriter
	r   Request
	f   Fetcher
	key string // primary key
	h   uint64 // its hash
	now time.Time
	rq  reqDirectives
	lr  lookupResult // the stored response found, if any

	// Going forward (origin.go).
	fwd        string  // Cache-Status fwd value (RFC 9211 §2.2)
	fl         *flight // the fetch this request leads or follows
	registered bool    // fl is in the flight group (others may follow it)
	resp       *http.Response
	reqTime    time.Time // when the fetch was sent
	respTime   time.Time // when its response header arrived
}

// newTxn starts the general path for r.
func (c *Cache) newTxn(w ResponseWriter, r Request, f Fetcher, key string, h uint64, now time.Time) *txn {
	return &txn{c: c, w: w, r: r, f: f, key: key, h: h, now: now, rq: parseRequestDirectives(r)}
}

// serveLookup is the general GET/HEAD path: request directives, the index (Vary, disk tier),
// the freshness decision, then serving from storage or going forward to the origin.
func (t *txn) serveLookup() (Outcome, error) {
	c, r := t.c, t.r
	t.lr = c.st.lookup(t.h, t.key, r)
	if t.lr.e == nil && (r.Method() == http.MethodHead || r.Values(hdrRange) != nil) && c.awaitFlight(r, t.h, t.key) {
		t.lr = c.st.lookup(t.h, t.key, r) // HEAD and Range do not join flights: wait, then look again
	}
	if t.lr.e == nil {
		if t.rq.onlyIfCached {
			return t.onlyIfCached()
		}
		return t.forward(t.lr.miss)
	}
	if t.lr.e.partial != nil {
		return t.servePartial()
	}
	v, why := decide(t.lr.e.timing, t.lr.e.livePolicy(), &t.rq, t.now)
	var out Outcome
	var err error
	switch v {
	case useFresh:
		out, err = t.serveStored(statusHit, codeHit(t.lr.e, hitCode(t.lr)))
	case useStale:
		c.stats.staleServed.Add(1)
		out, err = t.serveStored("hit; detail=max-stale", Outcome{Code: CodeStaleHit, Hit: true})
	case useStaleRevalidate:
		bf, ok := t.f.(BackgroundFetcher)
		if !ok {
			return t.forward(fwdFor(why))
		}
		c.stats.staleServed.Add(1)
		br, bfetch := bf.Background()
		t.refreshInBackground(br, bfetch)
		out, err = t.serveStored("hit; detail=stale-while-revalidate", Outcome{Code: CodeStaleHit, Hit: true})
	default:
		if t.rq.onlyIfCached {
			return t.onlyIfCached()
		}
		return t.forward(fwdFor(why))
	}
	if errors.Is(err, errSwapFail) {
		t.lr = lookupResult{}
		out, err = t.forward("miss")
		out.Code = CodeSwapFailMiss
	}
	return out, err
}

// awaitFlight waits (at most collapse_timeout) for a fetch of key in progress to finish and
// reports whether there was one.
func (c *Cache) awaitFlight(r Request, h uint64, key string) bool {
	fl := c.flights.get(h, key)
	if fl == nil {
		return false
	}
	t := time.NewTimer(c.knobs().cfg.CollapseTimeout)
	defer t.Stop()
	select {
	case <-fl.left:
	case <-t.C:
	case <-r.Done():
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

// serveStored answers from the stored response t.lr: a 304 or 412 for preconditions, a 206 or
// 416 for ranges, or the whole response, from memory or from the disk tier.
func (t *txn) serveStored(cs string, out Outcome) (Outcome, error) {
	c, r, e := t.c, t.r, t.lr.e
	switch evalConditions(r, r.Method(), e.status, e.etag, e.lastMod, e.header.Get(hdrDate)) {
	case condNotModified:
		c.stats.notModified.Add(1)
		if !out.Fetched {
			c.stats.hits.Add(1)
			out.Code = CodeIMSHit
		}
		return out, t.writeMade(made{status: http.StatusNotModified, header: notModifiedHeader(e.header), length: -1}, e, cs)
	case condPreconditionErr:
		return out, t.writeMade(made{status: http.StatusPreconditionFailed, header: http.Header{}}, e, cs)
	}
	if ranges, ok := c.wantRanges(r, e); ok {
		return t.serveRanges(ranges, cs, out)
	}
	if e.body != nil || e.size == 0 && t.lr.disk == nil {
		return c.writeStored(t.w, r.Method(), e, t.now, cs, out)
	}
	if c.st.mem != nil && e.size <= c.st.memMax {
		body, err := c.st.disk.readAll(t.lr.disk)
		if err != nil {
			c.st.disk.drop(t.lr.disk, err)
			return out, errSwapFail
		}
		e = e.withBody(body)
		c.st.put(primaryHash(e.key), e, false)
		c.stats.diskHits.Add(1)
		return c.writeStored(t.w, r.Method(), e, t.now, cs, out)
	}
	return t.streamFromDisk(cs, out)
}

// streamFromDisk sends a large disk-tier object without loading it into memory.
func (t *txn) streamFromDisk(cs string, out Outcome) (Outcome, error) {
	c, lr := t.c, t.lr
	f, err := c.st.disk.openFile(lr.disk)
	if err != nil {
		c.st.disk.drop(lr.disk, err)
		return out, errSwapFail
	}
	defer f.Close()
	c.stats.hits.Add(1)
	c.stats.diskHits.Add(1)
	body := newFileBody(f, bodyOffset, lr.e.size) // sent with sendfile(2) by a proxy that can
	return out, t.writeMade(made{status: lr.e.status, header: lr.e.header.Clone(), body: body, length: lr.e.size}, lr.e, cs)
}

// writeStored writes an in-memory entry with its pre-serialised head: Age and Cache-Status are
// formatted into a pooled buffer passed as extra. The fast path calls it without a txn.
func (c *Cache) writeStored(w ResponseWriter, method string, e *entry, now time.Time, cs string, out Outcome) (Outcome, error) {
	e.touch(now)
	cs = c.withKey(cs, e.key)
	xb := getBuf()
	xb.b = appendStatusFields(xb.b[:0], c.statusName(), e, now, cs)
	body := e.body
	if method == http.MethodHead || !bodyAllowed(e.status) {
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
// (RFC 9211, named name) with the remaining freshness as ttl.
func appendStatusFields(b []byte, name string, e *entry, now time.Time, cs string) []byte {
	age := e.timing.currentAge(now)
	b = append(b, "Age: "...)
	b = strconv.AppendInt(b, min(int64(age/time.Second), maxDelta), 10)
	b = append(b, "\r\nCache-Status: "...)
	b = append(b, name...)
	b = append(b, "; "...)
	b = append(b, cs...)
	b = append(b, "; ttl="...)
	b = strconv.AppendInt(b, int64((e.livePolicy().lifetime-age)/time.Second), 10)
	return append(b, "\r\n"...)
}

// addStatusFields sets Age (unless the header carries the origin's own, on the response that
// fetched it) and appends our Cache-Status member on a header being sent.
func addStatusFields(h http.Header, name string, e *entry, now time.Time, cs string) {
	line := appendStatusFields(nil, name, e, now, cs)
	for l := range strings.SplitSeq(strings.TrimSuffix(string(line), "\r\n"), "\r\n") {
		k, v, _ := strings.Cut(l, ": ")
		if k == hdrAge && len(h[hdrAge]) > 0 {
			continue
		}
		h.Add(k, v)
	}
}

// made is a response the cache makes (304, 412, 206, 416, 504, a disk stream, an error).
type made struct {
	status int
	header http.Header
	body   io.Reader // nil: none
	length int64     // Content-Length, -1 when unknown or bodiless
}

// writeMade writes a response the cache makes. When e is set, Age and Cache-Status describe
// it.
func (t *txn) writeMade(m made, e *entry, cs string) error {
	cs = t.c.withKey(cs, t.key)
	if e != nil {
		addStatusFields(m.header, t.c.statusName(), e, t.now, cs)
	} else {
		m.header.Add(hdrCacheStatus, t.c.statusName()+"; "+cs)
	}
	resp := &http.Response{
		Status: wire.StatusText(m.status), StatusCode: m.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: m.header, ContentLength: m.length, Body: http.NoBody,
	}
	if m.body != nil && t.r.Method() != http.MethodHead && bodyAllowed(m.status) {
		resp.Body = io.NopCloser(m.body)
	}
	if !bodyAllowed(m.status) {
		resp.ContentLength = -1
	}
	return t.w.WriteResponse(resp)
}

// textBody is a small plain-text (or JSON) body the cache makes.
func textBody(status int, ctype, msg string) made {
	return made{status: status, header: http.Header{hdrContentType: {ctype}}, body: strings.NewReader(msg), length: int64(len(msg))}
}

// onlyIfCached answers a request with only-if-cached that storage cannot satisfy with 504
// (RFC 9111 §5.2.1.7).
func (t *txn) onlyIfCached() (Outcome, error) {
	m := textBody(http.StatusGatewayTimeout, "text/plain; charset=utf-8", "504 Gateway Timeout: only-if-cached and no usable stored response\n")
	return Outcome{Code: CodeMiss}, t.writeMade(m, nil, "fwd=miss; detail=only-if-cached")
}

// wantRanges returns the satisfiable ranges of a Range request that storage should answer
// (RFC 9110 §14.2): GET, a stored 200, and an If-Range that still matches (§13.1.5).
func (c *Cache) wantRanges(r Request, e *entry) ([]byteRange, bool) {
	v := r.Values(hdrRange)
	if len(v) != 1 || r.Method() != http.MethodGet || e.status != http.StatusOK {
		return nil, false
	}
	if ir := firstValue(r, hdrIfRange); ir != "" && !ifRangeMatches(ir, e) {
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

// serveRanges answers a range request from the stored full response t.lr: 416 when nothing
// is satisfiable, a single 206 part, or multipart/byteranges.
func (t *txn) serveRanges(ranges []byteRange, cs string, out Outcome) (Outcome, error) {
	c, lr, e := t.c, t.lr, t.lr.e
	out.Code = CodeHit
	if len(ranges) == 0 {
		h := http.Header{hdrContentRange: {"bytes */" + strconv.FormatInt(e.size, 10)}}
		return out, t.writeMade(made{status: http.StatusRequestedRangeNotSatisfiable, header: h}, e, cs)
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
		n := rg.end - rg.start + 1
		return out, t.writeMade(made{status: http.StatusPartialContent, header: h, body: io.NewSectionReader(src, rg.start, n), length: n}, e, cs)
	}
	body, n, ctype := multipartRanges(src, ranges, e.size, e.header.Get(hdrContentType))
	h.Set(hdrContentType, ctype)
	return out, t.writeMade(made{status: http.StatusPartialContent, header: h, body: body, length: n}, e, cs)
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
