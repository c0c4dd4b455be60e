package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// The HTTP/2 front end. A TLS connection that chose "h2" in ALPN is served by x/net/http2's
// server (framing, HPACK, flow control, stream limits and its defences: see newH2Front). Each
// stream's request arrives as an *http.Request and enters the same path as an HTTP/1.x
// request: serveStream makes it a slot — the one per-request value — whose request is decoded
// already (like a non-lean HTTP/1.x request), and hands it to srv.handle: policy (admit) →
// handle → cache.Serve(s, s, s) → upstream (HTTP/1.1 to the origin) → the access log and
// metrics. Only the writing differs: the slot's h2 field is set, and WriteStored and
// WriteResponse (respond.go) send the response through the stream's http.ResponseWriter
// (writeStoredH2, writeResponseH2) instead of the connection's pipeline. Streams run
// concurrently, one goroutine each (x/net/http2 starts at most max_concurrent_streams
// handlers per connection), so nothing of the pipeline's ordering applies to them.
//
// Requests map as an HTTP/2 proxy's do (RFC 9113 §8.3.1, §8.5): :scheme https is a request
// for a site behind the proxy (origin-form, routed by :authority); :scheme http on this TLS
// connection is a forward-proxy request for that http:// URL (what browsers send to an HTTPS
// proxy for http:// pages), the absolute form of HTTP/1.1; CONNECT opens a tunnel on the
// stream.

// h2Front is the HTTP/2 server shared by the proxy's h2 connections.
type h2Front struct {
	h2 *http2.Server
	hs *http.Server // the base configuration: header list size; its Shutdown sends GOAWAY
}

// newH2Front configures the HTTP/2 server from [proxy.http2] and the proxy's timeouts. Its
// defences, from x/net/http2 (tests in h2attack_test.go attack a running proxy with each):
//   - rapid reset (CVE-2023-44487): at most max_concurrent_streams handlers run per connection;
//     streams opened and reset faster than handlers finish queue up, and a queue beyond 4×
//     that ends the connection with ENHANCE_YOUR_CALM ("too_many_early_resets");
//   - CONTINUATION floods (CVE-2024-27316): a header block is bounded by max_header_list_size
//     across HEADERS and CONTINUATION frames; a block that exceeds it ends the connection
//     without being decoded further;
//   - control-frame floods (PING, SETTINGS; CVE-2019-9512/9515): at most 10000 queued replies.
func newH2Front(s *Server) *h2Front {
	c := s.cfg.HTTP2
	f := &h2Front{
		h2: &http2.Server{
			MaxConcurrentStreams:         uint32(c.MaxConcurrentStreams),
			MaxReadFrameSize:             uint32(c.MaxReadFrameSize),
			MaxUploadBufferPerStream:     int32(c.StreamWindow),
			MaxUploadBufferPerConnection: int32(c.ConnectionWindow),
			IdleTimeout:                  s.cfg.IdleTimeout,
			WriteByteTimeout:             s.cfg.WriteTimeout,
			CountError:                   func(kind string) { s.m.h2Errors.WithLabelValues(kind).Inc() },
		},
		// x/net/http2 logs connection errors (an attack's among them) through ErrorLog: at
		// debug level, counted in http2_errors_total.
		hs: &http.Server{MaxHeaderBytes: int(c.MaxHeaderListSize), IdleTimeout: s.cfg.IdleTimeout,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)},
	}
	_ = http2.ConfigureServer(f.hs, f.h2) // registers GOAWAY on f.hs.Shutdown
	return f
}

// shutdown sends GOAWAY on every h2 connection: they finish their streams, take no new ones,
// and close.
func (f *h2Front) shutdown(ctx context.Context) { _ = f.hs.Shutdown(ctx) }

// serveH2 serves an h2 connection (nc: the tls.Conn, or the plain one with what was read of
// it first) until it ends.
func (c *conn) serveH2(nc net.Conn) {
	f := c.srv.h2
	f.h2.ServeConn(nc, &http2.ServeConnOpts{Context: c.ctx, BaseConfig: f.hs, Handler: http.HandlerFunc(c.serveStream)})
	// Handlers may still run (or be about to start): those that started hold a reference and
	// the connection closes after the last; none starts from here on (serveStream).
	c.mu.Lock()
	c.h2Done = true
	c.mu.Unlock()
}

// h2cPreface reports whether a plain connection's first bytes are HTTP/2's client preface
// ([proxy.http2] h2c): the buffered bytes begin it, and the rest arrives within
// read_header_timeout. Anything else is read as HTTP/1.x.
func (c *conn) h2cPreface() bool {
	if c.tls || !c.srv.cfg.HTTP2.H2C || c.srv.h2 == nil {
		return false
	}
	buf, _ := c.br.Peek(c.br.Buffered())
	n := min(len(buf), len(http2.ClientPreface))
	if n == 0 || string(buf[:n]) != http2.ClientPreface[:n] {
		return false
	}
	c.armRead(time.Now(), c.srv.cfg.ReadHeaderTimeout)
	p, err := c.br.Peek(len(http2.ClientPreface))
	return err == nil && string(p) == http2.ClientPreface
}

// serveH2C serves HTTP/2 on a plain connection that opened with the client preface: the bytes
// read so far, then the socket.
func (c *conn) serveH2C() {
	c.srv.m.connsH2C.Inc()
	read, _ := c.br.Peek(c.br.Buffered())
	pc := &prefixConn{Conn: c.nc, pre: append([]byte(nil), read...)}
	c.releaseBuffers()
	c.setReadDeadline(time.Time{})
	c.serveH2(pc)
}

// prefixConn is a connection whose first reads return pre.
type prefixConn struct {
	net.Conn
	pre []byte
}

// Read returns what is left of pre, then reads the connection.
func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// h2Stream is the HTTP/2 side of a slot: the stream's response writer.
type h2Stream struct {
	w       http.ResponseWriter
	aborted bool // the response could not be completed: the stream is reset
}

// h2Request is a stream's slot and writer, allocated together.
type h2Request struct {
	slot
	st h2Stream
}

// flush sends what was written to the stream (x/net/http2's writer is an http.Flusher).
func (st *h2Stream) flush() error {
	if f, ok := st.w.(interface{ FlushError() error }); ok {
		return f.FlushError()
	}
	if f, ok := st.w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

// setWriteDeadline bounds the stream's next writes (x/net/http2's writer has per-stream
// deadlines).
func (st *h2Stream) setWriteDeadline(t time.Time) {
	if d, ok := st.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(t)
	}
}

// serveStream serves one stream's request through the proxy's request path (handle), then
// records it like any request.
func (c *conn) serveStream(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	if c.h2Done { // the connection is over: nothing can be answered
		c.mu.Unlock()
		return
	}
	c.refs.Add(1) // the connection closes, and Shutdown returns, after its last stream
	c.mu.Unlock()
	defer c.release()
	hr := &h2Request{slot: slot{c: c}, st: h2Stream{w: w}}
	s, st := &hr.slot, &hr.st
	s.slotState = slotState{start: time.Now(), req: r, h2: st, isHEAD: r.Method == http.MethodHead,
		reqBytes: int64(len(r.Method)+len(r.RequestURI)+len(r.Host)+len(" HTTP/2.0\r\nHost: \r\n\r\n")) + headerSize(r.Header)}
	r.RemoteAddr = c.remote
	if c.tls && r.TLS == nil && r.Method != http.MethodConnect {
		// :scheme http over TLS: a forward-proxy request for an http:// URL (on h2c, every
		// request is :scheme http and routed as a reverse one).
		r.URL.Scheme, r.URL.Host = "http", r.Host
		r.RequestURI = r.URL.String()
	}
	if max := int64(c.srv.cfg.MaxBodySize); max > 0 && r.Method != http.MethodConnect {
		if r.ContentLength > max {
			s.perr = errBodyTooLarge
		} else if r.ContentLength != 0 {
			r.Body = &maxBody{r: r.Body, left: max}
		}
	}
	c.srv.handle(s)
	c.mu.Lock()
	c.srv.record(s, &c.logBuf, time.Now())
	c.mu.Unlock()
	if st.aborted {
		panic(http.ErrAbortHandler) // x/net/http2 resets the stream: the client sees it incomplete
	}
}

// maxBody is an HTTP/2 request body held to proxy.max_body_size (the HTTP/1.x body reader
// holds its own): reading past it fails with 413's error.
type maxBody struct {
	r    io.ReadCloser
	left int64
}

// Read reads from the body, failing once more than the limit arrived.
func (b *maxBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

// Close closes the body.
func (b *maxBody) Close() error { return b.r.Close() }

// headerSize is the size of h as HTTP/1.1 would carry it (HPACK sends less), for the log.
func headerSize(h http.Header) int64 {
	var n int
	for name, values := range h {
		for _, v := range values {
			n += len(name) + len(v) + 4
		}
	}
	return int64(n)
}

// writeStoredH2 sends a stored response (WriteStored's arguments) on the stream: the head's
// fields and extra as the response header, less those HTTP/2 forbids (h2Forbidden), with Via;
// the body unless the request was HEAD.
func (s *slot) writeStoredH2(head, extra, body []byte) error {
	st := s.h2
	h := st.w.Header()
	status := wire.StatusOf(head)
	_, fields, _ := bytes.Cut(head, []byte("\r\n")) // the fields after the status line
	addFields(h, fields, extra)
	if via := h["Via"]; len(via) > 0 {
		h["Via"] = append(via, s.c.srv.viaValue)
	} else {
		h["Via"] = s.c.srv.viaValues // shared, read-only: its capacity is its length
	}
	s.status = status
	s.ctype = fieldValue(head, "\r\nContent-Type:") // the stored head's bytes: no copy
	st.w.WriteHeader(status)
	s.bytesOut += int64(len(head) + len(extra))
	if s.isHEAD || len(body) == 0 {
		return nil
	}
	n, err := st.w.Write(body)
	s.bytesOut += int64(n)
	if err != nil {
		st.aborted = true
		return fmt.Errorf("proxy: h2 stream: %w", err)
	}
	return nil
}

// addFields adds the serialised "Name: value\r\n" lines of a head and its extra fields to h,
// but the connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2; the cache's stored heads
// hold none, the proxy's own answers keep theirs, such as a 407's Proxy-Authenticate). The names and values are
// substrings of one copy of both, and the values' slices share one array: two allocations for
// a head, not two per field.
func addFields(h http.Header, head, extra []byte) {
	text := string(head) + "\r\n" + string(extra)
	vals := make([]string, 0, bytes.Count(head, []byte("\n"))+bytes.Count(extra, []byte("\n"))+2)
	for len(text) > 0 {
		line := text
		if i := strings.Index(text, "\r\n"); i >= 0 {
			line, text = text[:i], text[i+2:]
		} else {
			text = ""
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || len(name) == 0 {
			continue
		}
		n := textproto.CanonicalMIMEHeaderKey(name) // the cache's are canonical already: no copy
		if h2Forbidden(n) {
			continue
		}
		vals = append(vals, strings.TrimSpace(value))
		if old := h[n]; len(old) > 0 {
			h[n] = append(old, vals[len(vals)-1])
		} else {
			h[n] = vals[len(vals)-1 : len(vals) : len(vals)] // capped: a later append copies
		}
	}
}

// h2Forbidden reports the connection-specific fields an HTTP/2 message may not carry
// (RFC 9113 §8.2.2; TE only as "trailers", which no response needs).
func h2Forbidden(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te":
		return true
	}
	return false
}

// writeResponseH2 streams a response that is not in memory (WriteResponse's argument) on the
// stream: end-to-end fields, Content-Length when known, Via, then the body, flushed as it
// arrives, and its trailers.
func (s *slot) writeResponseH2(resp *http.Response) error {
	st := s.h2
	code := resp.StatusCode
	if code < 200 || code > 999 {
		return fmt.Errorf("proxy: invalid final status %d", code)
	}
	h := st.w.Header()
	drop := wire.ConnectionTokens(resp.Header)
	for name, values := range resp.Header {
		if wire.IsHopByHop(name) || name == "Content-Length" || drop[name] {
			continue
		}
		for _, v := range values {
			h[name] = append(h[name], wire.SanitizeValue(v))
		}
	}
	bodyless := s.isHEAD || code == http.StatusNoContent || code == http.StatusNotModified
	if resp.ContentLength >= 0 && code != http.StatusNoContent && code != http.StatusNotModified {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	h["Via"] = append(h["Via"], s.c.srv.viaValue)
	s.status = code
	if ct := h["Content-Type"]; len(ct) > 0 {
		s.ctype = []byte(ct[0])
	}
	st.w.WriteHeader(code)
	s.bytesOut += int64(len("HTTP/1.1 200 OK\r\n\r\n")) + headerSize(h)
	if bodyless {
		return nil
	}
	n, err := st.copyBody(resp.Body, resp.ContentLength)
	s.bytesOut += n
	if err != nil {
		st.aborted = true
		return fmt.Errorf("proxy: copying response body: %w", err)
	}
	for name, values := range resp.Trailer { // known once the body has ended
		h[http.TrailerPrefix+name] = values
	}
	return nil
}

// copyBody copies the body (limit bytes, or to EOF when limit < 0) to the stream, flushing
// after each read while more is to come, so a body that trickles in reaches the client as it
// arrives.
func (st *h2Stream) copyBody(body io.Reader, limit int64) (int64, error) {
	buf := chunkBufs.Get().(*[16 << 10]byte)
	defer chunkBufs.Put(buf)
	var n int64
	for limit < 0 || n < limit {
		p := buf[:]
		if limit >= 0 && int64(len(p)) > limit-n {
			p = p[:limit-n]
		}
		m, rerr := body.Read(p)
		if m > 0 {
			if _, err := st.w.Write(p[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		switch {
		case rerr == io.EOF && (limit < 0 || n == limit):
			return n, nil
		case rerr == io.EOF:
			return n, io.ErrUnexpectedEOF
		case rerr != nil:
			return n, rerr
		}
		if m > 0 && (limit < 0 || n < limit) {
			if err := st.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// tunnelH2 serves CONNECT on an HTTP/2 stream (RFC 9113 §8.5): dial the target (policy allowed
// it), answer 200, then the stream's DATA frames are the tunnel's bytes both ways, until
// either side ends or nothing moves for tunnel_idle_timeout.
func (srv *Server) tunnelH2(s *slot) {
	r, st := s.req, s.h2
	start := time.Now()
	ctx, cancel := context.WithTimeout(s.c.ctx, srv.cfg.Upstream.ConnectTimeout)
	up, err := srv.dialer.DialContext(ctx, "tcp", r.Host)
	cancel()
	srv.m.upstreamSeconds.Observe(time.Since(start).Seconds())
	s.upstream = r.Host
	if err != nil {
		_, kind, _ := classifyError(err)
		s.fetchErr, s.errKind = err, kind
		srv.m.upstreamErrors.WithLabelValues(kind).Inc()
		s.writeUpstreamError(err)
		return
	}
	defer up.Close()
	s.written, s.status = true, http.StatusOK
	st.w.Header()["Via"] = []string{srv.viaValue}
	st.w.WriteHeader(http.StatusOK)
	if err := st.flush(); err != nil {
		return
	}
	idle := srv.cfg.TunnelIdleTimeout
	done := make(chan int64, 1)
	go func() { done <- copyTunnelUp(up, r.Body, idle) }()
	var toClient int64
	buf := make([]byte, 32<<10)
	for {
		_ = up.SetReadDeadline(time.Now().Add(idle))
		n, rerr := up.Read(buf)
		if n > 0 {
			st.setWriteDeadline(time.Now().Add(idle))
			if _, werr := st.w.Write(buf[:n]); werr != nil || st.flush() != nil {
				break
			}
			toClient += int64(n)
		}
		if rerr != nil {
			break
		}
	}
	_ = up.Close()
	_ = r.Body.Close()
	srv.m.bytesIn.Add(float64(<-done))
	s.bytesOut += toClient
}

// copyTunnelUp copies the stream's request body (the client's tunnel bytes) to the target,
// half-closing it at the end of the stream; it returns the bytes copied.
func copyTunnelUp(up net.Conn, body io.Reader, idle time.Duration) int64 {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := body.Read(buf)
		if n > 0 {
			_ = up.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := up.Write(buf[:n]); werr != nil {
				return total
			}
			total += int64(n)
		}
		if errors.Is(err, io.EOF) {
			if cw, ok := up.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return total
		}
		if err != nil {
			_ = up.Close()
			return total
		}
	}
}
