package cache

import (
	"net/http"
	"strconv"
)

// This file is the seam between the proxy and the cache. The proxy implements ResponseWriter
// and Fetcher; the cache implements Handler. Neither side reaches past it.

// Fetcher reaches the origin on the cache's behalf. The proxy implements it with its upstream
// pools: the request has already passed policy and header hygiene, and hop-by-hop fields are
// stripped from the response it returns. The caller closes the response body.
//
// The Fetcher handed to Serve is bound to its request (the proxy's slot and the upstream pool
// policy chose): it is valid while Serve runs, from any goroutine the cache starts, and not
// after Serve returned; work that outlives Serve uses BackgroundFetcher. The cache may add
// validators (If-None-Match, If-Modified-Since) or a Range to the request before fetching; it
// always passes a request derived from the client's with Clone.
type Fetcher interface {
	Fetch(r *http.Request) (*http.Response, error)
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
// passed to it. The proxy sets r.RemoteAddr to the client's "ip:port" and, for reverse routes,
// r.URL to the absolute URL of the origin resource as the client named it (scheme "http", the
// request's Host), so the cache keys forward and reverse requests alike.
type Handler interface {
	Serve(w ResponseWriter, r *http.Request, f Fetcher) (Outcome, error)
}

// BackgroundFetcher is an optional interface a Fetcher may implement. Background returns a
// Fetcher that stays usable after Serve has returned — one not tied to the client's connection
// or pipeline slot — which the cache uses to refresh a stale response in the background after
// serving it (stale-while-revalidate, RFC 5861 §3). When the Fetcher passed to Serve does not
// implement it, the cache revalidates in the foreground instead.
type BackgroundFetcher interface {
	Background() Fetcher
}
