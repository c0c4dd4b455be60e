package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"unsafe"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// A slot's request is its own wire.RequestHead (the reader swaps it in from the connection
// and reads the next request into another), so the head outlives the reader moving on and a
// memory hit is served from it without an *http.Request or a header map: policy, the cache's
// view (cache.Request), the access log and the metrics read the head. The *http.Request is
// built from it only where it is needed (request): for the upstream fetch, upgrades, CONNECT,
// TRACE/OPTIONS, the PAC file. Requests the head view cannot read exactly as net/url would
// (not leanHead: escapes in the path, userinfo, IPv6 literals, ftp:// — the gateway —, chunked
// bodies) have theirs decoded by readRequest at once, as before.

// headPool holds request heads (their buffers) of slots and connections that idle.
var headPool = sync.Pool{New: func() any { return new(wire.RequestHead) }}

// putHead gives a request head back to headPool (nil: nothing).
func putHead(h *wire.RequestHead) {
	if h != nil {
		headPool.Put(h)
	}
}

// leanHead reports whether the head view serves the request exactly as its *http.Request
// would, so that building it can wait: no chunked body (bufferChunked needs the request), and
// a target whose path has only bytes net/url keeps as they are (no percent-escapes: the path is
// then its own decoded form) — origin-form with a non-empty Host, or absolute-form http:// or
// https:// (lowercase) with a plain authority (leanAuthority) and a path.
func leanHead(h *wire.RequestHead) bool {
	if h.Chunked {
		return false
	}
	path := h.Target()
	if path[0] != '/' {
		auth, rest, ok := splitAbsolute(path)
		if !ok || !leanAuthority(auth) {
			return false
		}
		path = rest
	} else if len(h.Host()) == 0 {
		return false
	}
	for _, b := range path {
		switch {
		case b == '?':
			return true // the query is kept raw
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("/-._~!$&'()*+,;=:@", b) >= 0:
		default:
			return false
		}
	}
	return true
}

// splitAbsolute splits an absolute-form http:// or https:// target (lowercase scheme) into its
// authority and its path with the query; ok is false for any other target or one without a
// path.
func splitAbsolute(t []byte) (auth, rest []byte, ok bool) {
	switch {
	case bytes.HasPrefix(t, []byte("http://")):
		t = t[len("http://"):]
	case bytes.HasPrefix(t, []byte("https://")):
		t = t[len("https://"):]
	default:
		return nil, nil, false
	}
	i := bytes.IndexByte(t, '/')
	if i <= 0 {
		return nil, nil, false
	}
	return t[:i], t[i:], true
}

// leanAuthority reports an authority net/url takes as it is: a host name or IPv4 address
// (letters, digits, '.', '-'), then optionally ':' and a port of digits. Userinfo, IPv6
// literals and escapes are decoded the slow way.
func leanAuthority(a []byte) bool {
	host, port, hasPort := bytes.Cut(a, []byte{':'})
	if len(host) == 0 || hasPort && len(port) == 0 {
		return false
	}
	for _, b := range port {
		if !isDigit(b) {
			return false
		}
	}
	for _, b := range host {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '-') {
			return false
		}
	}
	return true
}

// leanForward reports a lean absolute-form request (the head's target is the URL).
func (s *slot) leanForward() bool { return s.req == nil && s.head.Target()[0] != '/' }

// leanURL returns a lean absolute-form request's scheme and authority (the URL's Host).
func (s *slot) leanURL() (scheme string, auth []byte) {
	t := s.head.Target()
	scheme = "http"
	if t[4] == 's' {
		scheme = "https"
	}
	auth, _, _ = splitAbsolute(t)
	return scheme, auth
}

// request returns the slot's *http.Request, decoding it from the head the first time: with
// the body reader, the client's address, and what policy and serveProxied did to it so far
// (a reverse route's scheme and host, hop-by-hop fields stripped).
func (s *slot) request() *http.Request {
	if s.req != nil {
		return s.req
	}
	r, err := s.head.NewRequest()
	if err != nil { // readRequest checked lean heads decode (FuzzReadRequest): not reached
		panic("proxy: lean request head failed to decode: " + err.Error()) // the connection's recoverPanic ends it
	}
	if b := s.body; b != nil {
		r.Body, r.ContentLength = b, s.head.ContentLength
	}
	r.RemoteAddr, r.TLS = s.c.remote, s.c.tlsState
	if s.mode == modeReverse {
		r.URL.Scheme, r.URL.Host = "http", strings.ToLower(r.Host)
	}
	if s.stripped {
		wire.StripHopByHop(r.Header)
	}
	s.req = r
	return r
}

// method returns the request method, "" for a request that could not be read.
func (s *slot) method() string {
	switch {
	case s.req != nil:
		return s.req.Method
	case s.head != nil:
		return s.head.MethodString()
	}
	return ""
}

// transient returns b as a string without copying, for a call that does not keep it (a route
// lookup) while the slot holds its head.
func transient(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// The slot is the cache's view of its request (cache.Request) while Serve runs: the request
// as read and checked, its URL absolute (classify sets scheme and host for reverse routes).

var _ cache.Request = (*slot)(nil)

// Method returns the request method.
func (s *slot) Method() string { return s.method() }

// AppendURL appends the target URI in absolute form.
func (s *slot) AppendURL(b []byte) []byte {
	if s.req != nil {
		return cache.AppendTargetURL(b, s.req.URL, s.req.Host)
	}
	if s.leanForward() { // the URL as sent: net/url keeps a lean one verbatim
		return append(b, s.head.Target()...)
	}
	// A lean reverse request: http://, the Host lowercased (as classify would set URL.Host),
	// the target as sent (net/url keeps a lean path and any query verbatim).
	b = append(b, "http://"...)
	for _, c := range s.head.Host() {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return append(b, s.head.Target()...)
}

// Values returns the values of the header field with the canonical name, nil when absent.
func (s *slot) Values(name string) []string {
	if s.req != nil {
		return s.req.Header[name]
	}
	v, _ := s.headValues(name, true)
	return v
}

// HasAny reports whether any of the header fields with the canonical names is present.
func (s *slot) HasAny(names []string) bool {
	if s.req != nil {
		return cache.HeaderHasAny(s.req.Header, names)
	}
	for _, n := range names {
		if _, ok := s.headValues(n, false); ok {
			return true
		}
	}
	return false
}

// RemoteAddr returns the client's "ip:port".
func (s *slot) RemoteAddr() string { return s.c.remote }

// KeyRules returns the reverse route's cache-key rules (cache.KeyRuler), nil for none.
func (s *slot) KeyRules() *cache.KeyRules { return s.keys }

// Done returns nil: a client's departure does not end the cache's work for it (the write
// fails instead).
func (s *slot) Done() <-chan struct{} { return nil }

// noCache is Cache-Control as Pragma: no-cache implies it (a fresh slice each time: callers
// own what Values returns).
func noCache() []string { return []string{"no-cache"} }

// headValues reads the field with the canonical name from the head as the decoded request's
// Header would hold it: without Host and Transfer-Encoding, without hop-by-hop fields once
// serveProxied stripped them, Cache-Control: no-cache for Pragma: no-cache. The values are
// copies (collect), made only when the field is there; ok reports presence.
func (s *slot) headValues(name string, collect bool) (v []string, ok bool) {
	h := s.head
	if name == "Host" || name == "Transfer-Encoding" || s.stripped && s.hopByHop(name) {
		return nil, false
	}
	if !h.Has(name) {
		if name == "Cache-Control" && h.HasToken("Pragma", "no-cache") {
			if collect {
				v = noCache()
			}
			return v, true
		}
		return nil, false
	}
	if !collect {
		return nil, true
	}
	for i := range h.Len() {
		if n, val := h.Field(i); bytes.EqualFold(n, []byte(name)) {
			v = append(v, string(val))
		}
	}
	return v, true
}

// hopByHop reports whether the canonical name is a hop-by-hop field of this request (one of
// wire's list or named by Connection), which serveProxied strips.
func (s *slot) hopByHop(name string) bool {
	if wire.IsHopByHop(name) {
		return true
	}
	for i := range s.head.Len() {
		if n, v := s.head.Field(i); bytes.EqualFold(n, []byte("Connection")) && wire.ListHasToken(v, name) {
			return true
		}
	}
	return false
}

// stripHopByHop strips the hop-by-hop fields before the request goes on (the head view
// leaves them out from here on).
func (s *slot) stripHopByHop() {
	s.stripped = true
	if s.req != nil {
		wire.StripHopByHop(s.req.Header)
	}
}
