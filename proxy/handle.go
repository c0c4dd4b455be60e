package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// handle serves one request: refusals (unreadable request, policy), local answers, CONNECT
// tunnels, or the proxied path through the cache or straight upstream. Exactly one response is
// written to s.
func (srv *Server) handle(s *slot) {
	if s.perr != nil {
		s.writeError(s.perr)
		return
	}
	if perr := srv.admit(s); perr != nil {
		s.writeError(perr)
		srv.afterBody(s)
		return
	}
	switch s.mode {
	case modeLocal:
		srv.answerLocally(s)
	case modeConnect:
		srv.tunnel(s)
		return
	default:
		if s.upgrade {
			srv.serveUpgrade(s)
			if s.status == http.StatusSwitchingProtocols {
				return
			}
			break
		}
		srv.serveProxied(s)
	}
	if !s.written {
		s.writeUpstreamError(errors.New("proxy: no response"))
	}
	srv.afterBody(s)
}

// admit applies the policy to s in order — loop detection, classification (route), then for
// forward and CONNECT requests the ACL, authentication, deny lists and CONNECT ports, then
// method rules — and returns the refusal to send, or nil.
func (srv *Server) admit(s *slot) *protoError {
	s.lv = srv.live.Load()
	if viaLoop(s.Values("Via"), srv.cfg.ViaPseudonym) {
		return &protoError{status: http.StatusLoopDetected, msg: "forwarding loop detected: this request already went through " + srv.cfg.ViaPseudonym}
	}
	if perr := srv.classify(s); perr != nil {
		return perr
	}
	if s.mode == modeForward || s.mode == modeConnect {
		if perr := srv.admitForward(s); perr != nil {
			return perr
		}
	}
	return srv.admitMethod(s)
}

// classify decides the request's mode and route. Absolute-form is forward proxying (or the PAC
// file when addressed to the proxy itself); origin-form needs a route.
func (srv *Server) classify(s *slot) *protoError {
	if s.req == nil {
		return srv.classifyLean(s)
	}
	r := s.req
	pac := s.lv.cfg.PAC.Enabled && r.URL.Path == pacPath && (r.Method == http.MethodGet || r.Method == http.MethodHead)
	switch {
	case r.Method == http.MethodConnect:
		s.mode = modeConnect
	case r.URL.Scheme != "":
		s.mode, s.pool = modeForward, srv.fwd
		if r.URL.User != nil && r.URL.Scheme != "ftp" {
			return bad("userinfo in an http(s) URL is not accepted (RFC 9110 §4.2.4)")
		}
		if pac && srv.isSelf(r.URL.Host) {
			s.mode = modeLocal
		}
	case r.RequestURI == "*":
		s.mode = modeLocal
	default:
		if r.Host == "" { // HTTP/1.0 without Host: the address the client connected to
			r.Host = s.c.localAddr()
		}
		rt := s.lv.routes.lookup(r.Host, r.URL.Path)
		if pac && (rt == nil || srv.isSelf(r.Host)) {
			s.mode = modeLocal
			return nil
		}
		if rt == nil {
			return bad("no route for host %q: this is a proxy; send absolute-form requests (http://host/path) to use it as a forward proxy", r.Host)
		}
		s.mode, s.pool, s.keys = modeReverse, rt.pool, rt.keys
		r.URL.Scheme, r.URL.Host = "http", strings.ToLower(r.Host) // allocates only for upper case
	}
	return nil
}

// classifyLean is classify for a lean request (leanHead) read from its head: absolute-form is
// forward proxying (or the PAC file addressed to the proxy itself); origin-form takes a reverse
// route by Host and path, or is the PAC file. Its decoded request, should it be built later,
// gets a reverse route's scheme and host then (request).
func (srv *Server) classifyLean(s *slot) *protoError {
	h := s.head
	if s.leanForward() {
		_, auth := s.leanURL()
		_, rest, _ := splitAbsolute(h.Target())
		path := rest
		if i := bytes.IndexByte(rest, '?'); i >= 0 {
			path = rest[:i]
		}
		method := s.method()
		s.mode, s.pool = modeForward, srv.fwd
		if s.lv.cfg.PAC.Enabled && string(path) == pacPath && (method == http.MethodGet || method == http.MethodHead) && srv.isSelf(string(auth)) {
			s.mode = modeLocal
		}
		return nil
	}
	host, target := h.Host(), h.Target()
	path := target
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		path = target[:i]
	}
	method := s.method()
	pac := s.lv.cfg.PAC.Enabled && string(path) == pacPath && (method == http.MethodGet || method == http.MethodHead)
	rt := s.lv.routes.lookup(transient(host), transient(path))
	if pac && (rt == nil || srv.isSelf(string(host))) {
		s.mode = modeLocal
		return nil
	}
	if rt == nil {
		return bad("no route for host %q: this is a proxy; send absolute-form requests (http://host/path) to use it as a forward proxy", host)
	}
	s.mode, s.pool, s.keys = modeReverse, rt.pool, rt.keys
	return nil
}

// admitForward applies the forward-proxy policy.
func (srv *Server) admitForward(s *slot) *protoError {
	p := s.lv.policy
	if !s.lv.cfg.Forward {
		return &protoError{status: http.StatusForbidden, msg: "forward proxying is disabled on this proxy"}
	}
	if !p.allowed(s.c.ip) {
		return &protoError{status: http.StatusForbidden, msg: "client address " + s.c.ipStr + " may not use this proxy"}
	}
	user, perr := p.authenticate(s)
	if perr != nil {
		return perr
	}
	s.user = user
	var scheme, host string
	var port int
	if s.leanForward() {
		var auth []byte
		scheme, auth = s.leanURL()
		host, port = leanHostPort(transient(auth), scheme)
	} else {
		r := s.request()
		hostport := r.URL.Host
		if r.Method == http.MethodConnect {
			hostport = r.Host
		}
		scheme = r.URL.Scheme
		host, port = targetHostPort(hostport, scheme)
	}
	if !s.c.ip.IsLoopback() && isLocalDestination(host) {
		return &protoError{status: http.StatusForbidden, msg: "clients on other hosts may not reach the proxy's own loopback services"}
	}
	if p.deniedHost(host) || p.denyPorts[port] {
		return &protoError{status: http.StatusForbidden, msg: fmt.Sprintf("destination %s is denied by policy", net.JoinHostPort(host, strconv.Itoa(port)))}
	}
	if s.mode == modeConnect && !p.connectPorts[port] {
		return &protoError{status: http.StatusForbidden, msg: fmt.Sprintf("CONNECT to port %d is not allowed", port)}
	}
	if scheme == "ftp" && (srv.opts.FTP == nil || !srv.cfg.FTP.Enabled) {
		return &protoError{status: http.StatusNotImplemented, msg: "ftp:// URLs are not served: the FTP gateway is disabled on this proxy"}
	}
	if s.mode == modeForward && scheme != "http" && scheme != "https" && scheme != "ftp" {
		return bad("unsupported URL scheme %q", scheme)
	}
	return nil
}

// admitMethod applies the method rules: TRACE off by default, OPTIONS/TRACE at Max-Forwards 0
// answered locally, Expect.
func (srv *Server) admitMethod(s *slot) *protoError {
	method := s.method()
	if method == http.MethodTrace && !s.lv.cfg.AllowTrace {
		return &protoError{status: http.StatusMethodNotAllowed, msg: "TRACE is disabled on this proxy",
			extra: "Allow: " + allowMethods(s.lv.cfg.AllowTrace) + "\r\n"}
	}
	if (method == http.MethodOptions || method == http.MethodTrace) && maxForwards(s.request().Header) == 0 {
		s.mode = modeLocal
	}
	if ex := s.Values("Expect"); ex != nil && !s.proto10 {
		if len(ex) != 1 || !strings.EqualFold(strings.TrimSpace(ex[0]), "100-continue") {
			return &protoError{status: http.StatusExpectationFailed, msg: "only Expect: 100-continue is supported"}
		}
		if s.body != nil {
			s.body.expect = true
		}
	}
	return nil
}

// serveProxied sends a forward or reverse request through the cache when there is one, else
// straight upstream.
func (srv *Server) serveProxied(s *slot) {
	s.stripHopByHop()
	if perr := s.bufferChunked(); perr != nil {
		s.writeError(perr)
		return
	}
	seq, watch := s.seq, s.h2 == nil // an HTTP/2 stream holds no reader role to hand on
	if srv.opts.Cache != nil {
		if watch {
			s.c.enterCache(seq)
		}
		out, err := srv.opts.Cache.Serve(s, s, s)
		if watch {
			s.c.leaveCache(seq)
		}
		s.outcome = out
		if err != nil && !s.written {
			s.writeUpstreamError(err)
		}
		return
	}
	// The stall watch hands the reader role on if a pipelined request arrives meanwhile;
	// nothing shares the fetch, so a client that goes away cancels it.
	if watch {
		s.c.enterCache(seq)
	}
	resp, err := s.fetch(cache.Upstream{}, s.c.ctx)
	if watch {
		s.c.leaveCache(seq)
	}
	if err != nil {
		s.writeUpstreamError(err)
		return
	}
	defer resp.Body.Close()
	_ = s.WriteResponse(resp)
}

// bufferChunked reads a chunked request body up to proxy.request_buffer before anything goes
// upstream, so a malformed or oversized chunked body is refused with nothing sent. A body that
// fits is forwarded with a Content-Length; a longer one streams (buffered part first).
func (s *slot) bufferChunked() *protoError {
	if s.req == nil && !s.head.Chunked || s.req != nil && s.req.ContentLength >= 0 {
		return nil
	}
	r := s.request()
	limit := int64(s.c.srv.cfg.RequestBuffer)
	var buf bytes.Buffer
	_, err := io.CopyN(&buf, r.Body, limit+1)
	switch {
	case errors.Is(err, io.EOF):
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(buf.Bytes())), int64(buf.Len())
		r.TransferEncoding = nil
		return nil
	case err != nil:
		var perr *protoError
		if errors.As(err, &perr) {
			s.closeAfter = true
			return perr
		}
		s.closeAfter = true
		return bad("reading the request body: %v", err)
	}
	body := r.Body
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf.Bytes()), body), body}
	return nil
}

// afterBody makes sure the request body was read to its end before the next request is read:
// a short rest is drained, otherwise the connection closes after the response.
func (srv *Server) afterBody(s *slot) {
	b := s.body
	if b == nil {
		return
	}
	s.body = nil
	if !b.settle() {
		s.closeAfter = true
	}
}

// answerLocally answers requests addressed to the proxy itself: the PAC file, OPTIONS (at
// Max-Forwards 0 or "*") and TRACE at Max-Forwards 0.
func (srv *Server) answerLocally(s *slot) {
	r := s.request()
	switch {
	case r.Method == http.MethodTrace:
		srv.answerTrace(s)
	case r.Method == http.MethodOptions:
		head := wire.StatusLine(http.StatusOK) + "Allow: " + allowMethods(s.lv.cfg.AllowTrace) + "\r\nContent-Length: 0\r\n"
		_ = s.WriteStored([]byte(head), nil, nil)
	default:
		srv.servePAC(s)
	}
}

// allowMethods lists the methods the proxy forwards, for Allow (with TRACE when allowed).
func allowMethods(trace bool) string {
	m := "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT"
	if trace {
		m += ", TRACE"
	}
	return m
}

// answerTrace echoes the request (without credentials) as message/http (RFC 9110 §9.3.8).
func (srv *Server) answerTrace(s *slot) {
	r := s.request()
	var b bytes.Buffer
	b.WriteString(r.Method + " " + r.RequestURI + " " + r.Proto + "\r\n")
	h := r.Header.Clone()
	for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
		h.Del(k)
	}
	if r.Host != "" {
		b.WriteString("Host: " + r.Host + "\r\n")
	}
	_ = h.Write(&b)
	b.WriteString("\r\n")
	head := wire.StatusLine(http.StatusOK) + "Content-Type: message/http\r\nContent-Length: " + itoa(b.Len()) + "\r\n"
	_ = s.WriteStored([]byte(head), nil, b.Bytes())
}

// isLocalDestination reports destinations on the proxy host itself: "localhost", loopback and
// unspecified addresses (names that resolve there are for deny_hosts).
func isLocalDestination(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && (a.Unmap().IsLoopback() || a.IsUnspecified())
}

// targetHostPort returns the destination host and port of a forward or CONNECT request to
// hostport (the URL's host, or CONNECT's authority), the port by scheme when it names none.
func targetHostPort(hostport, scheme string) (string, int) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]"), defaultPort(scheme)
	}
	port, _ := strconv.Atoi(portStr)
	return host, port
}

// defaultPort is the port a URL of the scheme names by default.
func defaultPort(scheme string) int {
	switch scheme {
	case "https":
		return 443
	case "ftp":
		return 21
	}
	return 80
}

// leanHostPort is targetHostPort for a lean authority (leanAuthority: no brackets, at most
// one colon, then digits), without SplitHostPort's error for a missing port.
func leanHostPort(auth, scheme string) (string, int) {
	host, portStr, ok := strings.Cut(auth, ":")
	if !ok {
		return host, defaultPort(scheme)
	}
	port, _ := strconv.Atoi(portStr)
	return host, port
}
