package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// tunnel serves CONNECT: dial the target (policy already allowed its port), answer 200, then
// copy bytes both ways until both sides have finished, with half-close passed through and an
// idle timeout. The connection carries nothing else afterwards.
func (srv *Server) tunnel(s *slot) {
	if s.h2 != nil {
		srv.tunnelH2(s)
		return
	}
	c, r := s.c, s.request()
	start := time.Now()
	ctx, cancel := context.WithTimeout(c.ctx, srv.cfg.Upstream.ConnectTimeout)
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
	s.written, s.status, s.closeAfter = true, 200, true
	err = s.writeNow(func(bw *bufio.Writer) {
		_, _ = bw.Write(wire.AppendStatusLineReason(bw.AvailableBuffer(), http.StatusOK, "Connection established"))
		_, _ = bw.Write(srv.viaLine)
		_, _ = bw.WriteString("\r\n")
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

// pipe copies client→upstream (starting with what the reader has buffered) and
// upstream→client until both directions end; it returns the byte counts.
func (srv *Server) pipe(c *conn, up net.Conn) (toUp, toClient int64) {
	idle := srv.cfg.TunnelIdleTimeout
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		toUp = copyHalf(up, c.br, c.nc, &last, idle, c.nc)
	}()
	toClient = copyHalf(c.nc, up, up, &last, idle, up)
	wg.Wait()
	return toUp, toClient
}

// copyHalf copies src to dst. Each read waits at most idle; it gives up only when neither
// direction moved for idle (last holds the latest activity). On EOF it half-closes dst; on any
// other error it closes both ends so the other direction stops too.
func copyHalf(dst net.Conn, src io.Reader, srcConn net.Conn, last *atomic.Int64, idle time.Duration, other net.Conn) int64 {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		_ = srcConn.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			_ = dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = dst.Close()
				_ = other.Close()
				return total
			}
			total += int64(n)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
			continue
		}
		if errors.Is(err, io.EOF) {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
				return total
			}
		}
		_ = dst.Close()
		_ = other.Close()
		return total
	}
}
