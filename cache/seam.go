package cache

import (
	"net/http"
	"strconv"
	"time"
)

// This file is the seam between the proxy and the cache. The proxy implements ResponseWriter
// and Fetcher; the cache implements Handler. Neither side reaches past it.

// Request is the cache's read-only view of one client request. The proxy fills it from the
// head it parsed (a memory hit then needs no *http.Request and no header map); FromHTTP wraps
// an *http.Request. The request has passed policy and header hygiene. The view handed to Serve
// is valid while Serve runs. A Request may also implement KeyRuler to carry its route's
// cache-key rules (keyrules.go).
type Request interface {
	// Method is the request method ("GET", "HEAD", "PURGE", ...).
	Method() string
	// AppendURL appends the target URI in absolute form, scheme://host path?query (see
	// AppendTargetURL): forward requests as the client named it, reverse requests with scheme
	// "http" and the request's Host, so the cache keys forward and reverse requests alike.
	AppendURL(b []byte) []byte
	// Values returns the values of the header field with the canonical name (one per field
	// line), nil without allocating when the field is absent and non-nil when it is present,
	// even empty.
	Values(name string) []string
	// HasAny reports whether any of the header fields with the canonical names is present
	// (the fast hit asks once for every field that changes how a hit is served).
	HasAny(names []string) bool
	// RemoteAddr is the client's "ip:port".
	RemoteAddr() string
	// Done is closed when the client has gone (nil when that is not known).
	Done() <-chan struct{}
}

// Upstream says how the request sent to the origin differs from the client's: the cache's
// additions. The proxy builds the upstream request from its own head and applies them.
type Upstream struct {
	// Store asks for the fetch the cache stores: a GET, without the client's preconditions
	// (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since) and Range/If-Range,
	// which the cache answers itself. Without it the client's request goes as it came.
	Store bool
	// IfNoneMatch and IfModifiedSince, when set, are the stored response's validators
	// (revalidation, RFC 9111 §4.3.1).
	IfNoneMatch, IfModifiedSince string
	// Range and IfRange, when set, ask for the rest of a partially stored response
	// (RFC 9110 §14.2, §13.1.5).
	Range, IfRange string
}

// storeDrops are the client's fields a fetch for storage goes without.
var storeDrops = [...]string{hdrIfNoneMatch, hdrIfModifiedSince, hdrIfMatch, hdrIfUnmodifiedSince, hdrRange, hdrIfRange}

// Method is the upstream request's method for a client's request with method client.
func (u Upstream) Method(client string) string {
	if u.Store {
		return http.MethodGet
	}
	return client
}

// ChangesHeader reports whether ApplyHeader would change h.
func (u Upstream) ChangesHeader(h http.Header) bool {
	if u.IfNoneMatch != "" || u.IfModifiedSince != "" || u.Range != "" || u.IfRange != "" {
		return true
	}
	return u.Store && HeaderHasAny(h, storeDrops[:])
}

// ApplyHeader turns h, a copy of the client's header (after hygiene), into the upstream
// request's header.
func (u Upstream) ApplyHeader(h http.Header) {
	if u.Store {
		for _, f := range storeDrops {
			delete(h, f)
		}
	}
	for _, f := range [...]struct{ name, value string }{
		{hdrIfNoneMatch, u.IfNoneMatch}, {hdrIfModifiedSince, u.IfModifiedSince},
		{hdrRange, u.Range}, {hdrIfRange, u.IfRange},
	} {
		if f.value != "" {
			h[f.name] = []string{f.value}
		}
	}
}

// Fetcher reaches the origin on the cache's behalf, for one request. The proxy implements it
// with its upstream pools: the request has already passed policy and header hygiene, and
// hop-by-hop fields are stripped from the response it returns. The caller closes the response
// body. A client's departure does not cancel a fetch (others may share it).
//
// The Fetcher handed to Serve is bound to its request (the proxy's slot and the upstream pool
// policy chose): it is valid while Serve runs, from any goroutine the cache starts, and not
// after Serve returned; work that outlives Serve uses BackgroundFetcher.
type Fetcher interface {
	Fetch(u Upstream) (*http.Response, error)
}

// UnavailableError is a Fetcher's error when it knows the upstream is down without trying it
// (every origin of a route fails its active health check). Like any failed fetch it lets the
// cache serve a stale response where the object allows it (stale_on_error); otherwise the
// client gets 503 with Retry-After (RFC 9110 §15.6.4, §10.2.3) instead of 502.
type UnavailableError struct {
	Err        error
	RetryAfter time.Duration // when to try again; rounded up to whole seconds, at least 1
}

func (e *UnavailableError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// RetryAfterSeconds is the Retry-After value: RetryAfter in whole seconds, at least 1.
func (e *UnavailableError) RetryAfterSeconds() int {
	return max(1, int((e.RetryAfter+time.Second-1)/time.Second))
}

// ResponseWriter carries one response back to the client, in the connection's pipeline order.
// The proxy implements it. Exactly one of WriteStored or WriteResponse is called per request.
type ResponseWriter interface {
	// WriteStored writes a response held in memory by the cache, without allocating.
	//
	// head is the stored, pre-serialised status line and end-to-end header fields, each line
	// ending in CRLF, without the final blank line; it carries Content-Length when the
	// response has a body. extra holds fields computed for this request (Age, Cache-Status,
	// ...), pre-serialised the same way; it may be empty. body is the payload to send (nil for
	// HEAD, 304 and other bodiless responses). The proxy appends its own connection fields
	// (Via, Connection, Keep-Alive) and the blank line, then the body. head and body belong to
	// the cache and are immutable: the proxy may hold them until the bytes are written, never
	// edit them. extra is valid only during the call (the cache may reuse its buffer): the
	// proxy copies it (into its connection's output buffer) before returning.
	WriteStored(head, extra, body []byte) error

	// WriteResponse writes a response that is not served from memory: fetched from the origin,
	// read from the disk tier, or made by the cache (304, 504 only-if-cached, 206 ranges). The
	// proxy applies hop-by-hop hygiene, adds its connection fields, frames the body
	// (Content-Length when resp.ContentLength >= 0, chunked for HTTP/1.1 clients otherwise,
	// close-delimited for HTTP/1.0 clients) and streams resp.Body, which it does not close: the
	// caller does. For a HEAD request the proxy sends no body.
	WriteResponse(resp *http.Response) error
}

// Outcome says what the cache did for one request, for the access log and metrics.
type Outcome struct {
	// Code is the Squid-style result code.
	Code Code
	// Hit is true when the response body came from storage without a fetch.
	Hit bool
	// Fetched is true when the origin was asked.
	Fetched bool
}

// Code is a Squid-style result code (the access log's "TCP_MISS/200" column). The zero value
// is CodeUnset: the cache did not answer the request.
type Code uint8

// Result codes. The cache answers with all but CodeTunnel, which the proxy logs for CONNECT
// tunnels and protocol upgrades.
const (
	CodeUnset             Code = iota // not answered by the cache
	CodeNone                          // NONE: answered without storage or origin (PURGE, local answers, refusals)
	CodeMiss                          // TCP_MISS: fetched from the origin
	CodeHit                           // TCP_HIT: served from storage (disk tier, ranges)
	CodeMemHit                        // TCP_MEM_HIT: served from the memory tier
	CodeRefreshHit                    // TCP_REFRESH_HIT: revalidated, the origin answered 304
	CodeRefreshMiss                   // TCP_REFRESH_MISS: revalidated, the origin sent a new response
	CodeClientRefreshMiss             // TCP_CLIENT_REFRESH_MISS: the client's no-cache forced a new response
	CodeIMSHit                        // TCP_IMS_HIT: the client's conditional request answered from storage
	CodeStaleHit                      // TCP_STALE_HIT: a stale response served (max-stale, stale-while-revalidate, stale-if-error)
	CodeNegativeHit                   // TCP_NEGATIVE_HIT: a stored error response served
	CodeSwapFailMiss                  // TCP_SWAPFAIL_MISS: the disk copy was unreadable, fetched instead
	CodeDenied                        // TCP_DENIED: refused by policy
	CodeTunnel                        // TCP_TUNNEL: a CONNECT tunnel or a protocol upgrade
)

// codeNames are the codes as Squid logs them, by Code.
var codeNames = [...]string{
	CodeUnset: "-", CodeNone: "NONE", CodeMiss: "TCP_MISS", CodeHit: "TCP_HIT", CodeMemHit: "TCP_MEM_HIT",
	CodeRefreshHit: "TCP_REFRESH_HIT", CodeRefreshMiss: "TCP_REFRESH_MISS",
	CodeClientRefreshMiss: "TCP_CLIENT_REFRESH_MISS", CodeIMSHit: "TCP_IMS_HIT",
	CodeStaleHit: "TCP_STALE_HIT", CodeNegativeHit: "TCP_NEGATIVE_HIT",
	CodeSwapFailMiss: "TCP_SWAPFAIL_MISS", CodeDenied: "TCP_DENIED", CodeTunnel: "TCP_TUNNEL",
}

// String is the code as Squid logs it ("-" for CodeUnset).
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Handler answers proxied requests through the cache, using f to reach the origin when it
// must. It writes exactly one response to w (or returns an error if w failed or the request
// could not be answered at all, in which case the proxy sends 502 if nothing was written).
// Requests the cache never handles (CONNECT, OPTIONS/TRACE answered by the proxy itself) are not
// passed to it.
type Handler interface {
	Serve(w ResponseWriter, r Request, f Fetcher) (Outcome, error)
}

// BackgroundFetcher is an optional interface a Fetcher may implement. Background returns a
// copy of the request and a Fetcher for it that stay usable after Serve has returned — not
// tied to the client's connection or pipeline slot — which the cache uses to refresh a stale
// response in the background after serving it (stale-while-revalidate, RFC 5861 §3). When the
// Fetcher passed to Serve does not implement it, the cache revalidates in the foreground
// instead.
type BackgroundFetcher interface {
	Background() (Request, Fetcher)
}

// FromHTTP returns the Request view of r: its method, URL (with r.Host when r.URL has no host),
// header, RemoteAddr and context. It does not allocate.
func FromHTTP(r *http.Request) Request { return httpRequest{r} }

// httpRequest is an *http.Request seen as a Request.
type httpRequest struct{ r *http.Request }

// Method returns r.Method.
func (h httpRequest) Method() string { return h.r.Method }

// AppendURL appends r's target URI in absolute form.
func (h httpRequest) AppendURL(b []byte) []byte { return AppendTargetURL(b, h.r.URL, h.r.Host) }

// Values returns r.Header[name] (name is canonical).
func (h httpRequest) Values(name string) []string { return h.r.Header[name] }

// HasAny reports whether r.Header has any of the canonical names.
func (h httpRequest) HasAny(names []string) bool { return HeaderHasAny(h.r.Header, names) }

// HeaderHasAny reports whether h has any of the canonical names. It does not allocate: a small
// header is scanned by name, a large one looked up name by name.
func HeaderHasAny(h http.Header, names []string) bool {
	if len(h) > 2*len(names) {
		for _, n := range names {
			if _, ok := h[n]; ok {
				return true
			}
		}
		return false
	}
	var lens uint64 // the names' lengths, as bits: most field names are skipped by length
	for _, n := range names {
		lens |= 1 << (len(n) & 63)
	}
	for k := range h {
		if lens&(1<<(len(k)&63)) == 0 {
			continue
		}
		for _, n := range names {
			if k == n {
				return true
			}
		}
	}
	return false
}

// RemoteAddr returns r.RemoteAddr.
func (h httpRequest) RemoteAddr() string { return h.r.RemoteAddr }

// Done returns r's context's Done channel.
func (h httpRequest) Done() <-chan struct{} { return h.r.Context().Done() }

// firstValue returns the first value of the named field, "" when absent.
func firstValue(r fields, name string) string {
	if v := r.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}
