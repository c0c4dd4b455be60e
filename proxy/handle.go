package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"

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
