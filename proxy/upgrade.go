package proxy

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// HTTP/1.1 Upgrade (RFC 9110 §7.8), e.g. WebSocket, through reverse routes and forward
// requests. A bodiless HTTP/1.1 GET with "Connection: upgrade" and an Upgrade field is an
// upgrade request: it waits for its predecessors and keeps the reader role (serial), so no
// request behind it is read or started; it never goes through the cache. Upgrade and
// Connection are hop-by-hop, so they are stripped with the rest and re-added deliberately.
// When the origin answers 101 Switching Protocols, the 101 goes to the client and the
// connection becomes a tunnel (pipe, as for CONNECT: both-way half-close, tunnel_idle_timeout);
// it carries nothing else afterwards. Any other answer is relayed as a normal response and the
// connection goes on as HTTP.

// isUpgrade reports whether the request asks to switch protocols (see the comment above).
func isUpgrade(h *wire.RequestHead) bool {
	return h.MethodIs(http.MethodGet) && !h.Proto10 && !h.HasBody() &&
		h.Has("Upgrade") && h.HasToken("Connection", "upgrade")
}

// serveUpgrade forwards an upgrade request straight upstream (no cache) and, on 101, splices
// the client and origin connections until both directions end.
func (srv *Server) serveUpgrade(s *slot) {
	r := s.request()
	protos := r.Header.Values("Upgrade")
	wire.StripHopByHop(r.Header)
	r.Header["Upgrade"] = protos
	r.Header["Connection"] = []string{"Upgrade"}
	resp, err := s.fetch(cache.Upstream{}, s.c.ctx)
	if err != nil {
		s.writeUpstreamError(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = s.WriteResponse(resp)
		return
	}
	up, ok := resp.Body.(net.Conn) // the upstream client's switchedConn (client.go)
	if !ok {
		s.writeUpstreamError(errors.New("proxy: the origin switched protocols without a usable connection"))
		return
	}
	srv.spliceUpgraded(s, resp, up)
}

// spliceUpgraded writes the 101 to the client, then copies bytes both ways (the client's
// buffered bytes first) until both directions end. The connection closes afterwards.
func (srv *Server) spliceUpgraded(s *slot, resp *http.Response, up net.Conn) {
	c := s.c
	s.written, s.status, s.closeAfter = true, http.StatusSwitchingProtocols, true
	err := s.writeNow(func(bw *bufio.Writer) {
		w := headWriter{bw: bw}
		w.str(wire.StatusLine(http.StatusSwitchingProtocols))
		w.endToEnd(resp.Header)
		w.field("Upgrade", wire.SanitizeValue(strings.Join(resp.Header.Values("Upgrade"), ", ")))
		w.str("Connection: Upgrade\r\n")
		w.str(string(srv.viaLine))
		w.str("\r\n")
		s.bytesOut += w.n
	})
	if err != nil {
		c.closeNow()
		return
	}
	in, out := srv.pipe(c, up)
	s.bytesOut += out
	srv.m.bytesIn.Add(float64(in))
	c.closeNow()
}
