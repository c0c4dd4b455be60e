// Package dnsredirect is Outpost's authoritative GeoDNS: it serves zones from config and zone
// files and answers steered names with the nearest healthy edges of a pool, choosing by an
// explicit networks map, an ASN map, geographic distance and a default pool, in a configurable
// order. See README.md.
package dnsredirect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// readersPerSocket is how many goroutines read each UDP socket.
const readersPerSocket = 1

// Server is the DNS component.
type Server struct {
	env    component.Env
	log    *slog.Logger
	m      *metrics
	health *healthSet

	mu  sync.Mutex // serialises Reload
	cfg config.DNSConfig
	st  atomic.Pointer[state]
	rrl atomic.Pointer[rrl]
	tap atomic.Pointer[tap] // nil: dnstap off (dnstap.go)

	udp   []*net.UDPConn
	tcp   net.Listener
	addrs []string

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // readers, TCP connections, watcher, notifies
	tcpSem  chan struct{}
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	closed  atomic.Bool
	lifeMu  sync.Mutex // orders goTracked against Shutdown

	now func() time.Time // the clock zones are signed by (tests move it)
}

var _ component.Component = (*Server)(nil)

// New loads cfg (zones, edges, maps; GeoIP databases, generating the demo ones into
// env.DataDir when configured and absent) and mounts the admin endpoints. It binds nothing.
func New(cfg config.DNSConfig, env component.Env) (*Server, error) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	if env.Metrics == nil {
		env.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(env.Metrics)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{env: env, log: env.Logger, m: m, cfg: cfg, ctx: ctx, cancel: cancel,
		conns: map[net.Conn]struct{}{}, now: time.Now}
	s.health = newHealthSet(s.log, m)
	st, err := buildStateAt(cfg, env.DataDir, nil, s.health, m, s.now())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dns: %w", err)
	}
	st.log = s.log
	s.health.sync(healthSpecs(cfg))
	s.st.Store(st)
	if r := newRRL(cfg.RRL); r != nil {
		s.rrl.Store(r)
	}
	s.tcpSem = make(chan struct{}, cfg.MaxTCPConnections)
	if env.Admin != nil {
		s.mountAdmin(env.Admin)
	}
	return s, nil
}

// Name is "dns".
func (s *Server) Name() string { return "dns" }

// Addrs lists the bound addresses.
func (s *Server) Addrs() []string { return s.addrs }

// Listen binds the UDP sockets (SO_REUSEPORT, one per CPU by default) and the TCP listener on
// the same address and port.
func (s *Server) Listen(ctx context.Context) error {
	n := s.cfg.UDPSockets
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	var err error
	var busy []*net.UDPConn // port-0 tries whose TCP port was taken: held so the next try differs
	defer func() {
		for _, c := range busy {
			c.Close()
		}
	}()
	for try := 0; try < 5; try++ {
		if err = s.bind(ctx, s.cfg.Listen, n, &busy); err == nil {
			return s.startTap(s.cfg.Dnstap)
		}
		if _, port, _ := net.SplitHostPort(s.cfg.Listen); port != "0" {
			break
		}
	}
	return fmt.Errorf("dns: listen %s: %w", s.cfg.Listen, err)
}

// bind opens n UDP sockets and a TCP listener on addr (port 0: one free port for all). When
// the TCP port is taken, the UDP sockets go to busy instead of being closed, so that the
// kernel does not hand the same port to the next try.
func (s *Server) bind(ctx context.Context, addr string, n int, busy *[]*net.UDPConn) error {
	lc := net.ListenConfig{Control: reusePort}
	var udp []*net.UDPConn
	closeAll := func() {
		for _, c := range udp {
			c.Close()
		}
	}
	for i := range n {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			closeAll()
			return err
		}
		udp = append(udp, pc.(*net.UDPConn))
		if i == 0 {
			addr = pc.LocalAddr().String()
		}
	}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		*busy = append(*busy, udp...)
		return err
	}
	s.udp, s.tcp = udp, ln
	s.addrs = []string{"udp " + addr, "tcp " + ln.Addr().String()}
	return nil
}

// reusePort sets SO_REUSEPORT so several sockets share one address.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Serve answers queries until Shutdown; it also runs the health checks and the file watcher.
func (s *Server) Serve(ctx context.Context) error {
	if s.tcp == nil {
		return errors.New("dns: Serve before Listen")
	}
	if !s.goTracked(s.watch) || !s.goTracked(s.resign) {
		return nil // Shutdown came first
	}
	s.health.start(s.ctx)
	for _, c := range s.udp {
		for range readersPerSocket {
			s.goTracked(func() { s.serveUDP(c) })
		}
	}
	s.goTracked(s.serveTCP)
	select {
	case <-s.ctx.Done():
	case <-ctx.Done():
		s.closeListeners()
	}
	return nil
}

// Shutdown closes the sockets, lets TCP connections finish the query in hand until ctx ends,
// and stops the checkers.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeListeners()
	s.connsMu.Lock()
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now()) // idle connections end now; a query in hand finishes
	}
	s.connsMu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.connsMu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.connsMu.Unlock()
		<-done
		err = ctx.Err()
	}
	s.health.stopAll()
	if t := s.tap.Swap(nil); t != nil {
		t.close()
	}
	return err
}

// goTracked runs f in a goroutine that Shutdown waits for, unless Shutdown has begun.
func (s *Server) goTracked(f func()) bool {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

func (s *Server) closeListeners() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed.Swap(true) {
		return
	}
	s.cancel()
	for _, c := range s.udp {
		c.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
}

// serveUDPPlain is one reader of one UDP socket: read, answer, rate-limit, write, one
// datagram at a time. It allocates nothing per query on the fast path.
func (s *Server) serveUDPPlain(c *net.UDPConn) {
	in := make([]byte, 65535)
	out := make([]byte, 0, maxTCPLength)
	q := new(query)
	for {
		n, src, err := c.ReadFromUDPAddrPort(in)
		if err != nil {
			if s.closed.Load() {
				return
			}
			continue
		}
		tp, qtime := s.tapNow()
		resp := s.st.Load().handle(in[:n], out, q, src.Addr(), false, s.m)
		if resp == nil {
			continue
		}
		if r := s.rrl.Load(); r != nil {
			switch r.check(src.Addr()) {
			case rrlDrop:
				s.m.rrlDrop.Inc()
				resp = nil
			case rrlSlip:
				s.m.rrlTC.Inc()
				resp = slipped(resp, q)
			}
		}
		if tp != nil {
			tp.record(in[:n], resp, src, false, qtime)
		}
		if resp != nil {
			_, _ = c.WriteToUDPAddrPort(resp, src)
		}
	}
}

// slipped cuts a response to its header and question with TC set (RFC 8906-style slip).
func slipped(resp []byte, q *query) []byte {
	if len(resp) < headerLen+len(q.question) || q.question == nil {
		return resp[:min(len(resp), headerLen)]
	}
	binary.BigEndian.PutUint16(resp[2:], binary.BigEndian.Uint16(resp[2:])|flagTC)
	binary.BigEndian.PutUint32(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[10:], 0)
	return resp[:headerLen+len(q.question)]
}

// serveTCP accepts TCP connections, at most max_tcp_connections at a time.
func (s *Server) serveTCP() {
	for {
		select {
		case s.tcpSem <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		c, err := s.tcp.Accept()
		if err != nil {
			<-s.tcpSem
			if s.closed.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("dns: accept", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		s.connsMu.Lock()
		s.conns[c] = struct{}{}
		s.connsMu.Unlock()
		if !s.goTracked(func() { s.serveConn(c) }) {
			c.Close()
			<-s.tcpSem
			return
		}
	}
}

// serveConn answers the queries of one TCP connection in order (RFC 7766 §6.2.1: a client may
// pipeline many) until it idles out, closes, or reaches max_tcp_queries.
func (s *Server) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		s.connsMu.Lock()
		delete(s.conns, c)
		s.connsMu.Unlock()
		<-s.tcpSem
	}()
	src := netip.AddrPort{}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort()
	}
	in := make([]byte, maxTCPLength)
	out := make([]byte, 2, 2+maxTCPLength)
	q := new(query)
	for n := 0; ; n++ {
		cfg := &s.st.Load().cfg // limits as currently loaded (Reload may change them)
		if s.closed.Load() || (cfg.MaxTCPQueries > 0 && n >= cfg.MaxTCPQueries) {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(cfg.TCPIdleTimeout))
		if _, err := io.ReadFull(c, in[:2]); err != nil {
			return
		}
		l := int(binary.BigEndian.Uint16(in))
		if _, err := io.ReadFull(c, in[:l]); err != nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(cfg.TCPIdleTimeout))
		if !s.answerTCP(c, in[:l], out, q, src) {
			return
		}
	}
}

// answerTCP answers one TCP query (transfers included); false ends the connection.
func (s *Server) answerTCP(c net.Conn, pkt, out []byte, q *query, src netip.AddrPort) bool {
	st := s.st.Load()
	tp, qtime := s.tapNow()
	var resp []byte
	if transferQuery(pkt, q) {
		var err error
		if resp, err = st.transfer(c, q, src.Addr(), out[2:2]); err != nil {
			s.log.Warn("dns: zone transfer failed", "client", src, "err", err)
			return false
		}
		if resp == nil {
			s.log.Info("dns: zone transferred", "zone", string(q.name), "client", src)
			if tp != nil {
				tp.record(pkt, nil, src, true, qtime)
			}
			return true
		}
	} else {
		resp = st.handle(pkt, out[2:2], q, src.Addr(), true, s.m)
	}
	if resp == nil {
		return true
	}
	if tp != nil {
		tp.record(pkt, resp, src, true, qtime)
	}
	frame := out[:2+len(resp)]
	binary.BigEndian.PutUint16(frame, uint16(len(resp)))
	_, err := c.Write(frame)
	return err == nil
}

// Reload swaps in a new configuration atomically: zones, edges, pools, maps and databases. A
// bad configuration is rejected with an error (and a log line) and the old one keeps serving.
// The listen address, socket count and TCP limits need a restart to change.
func (s *Server) Reload(cfg config.DNSConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.st.Load()
	st, err := buildStateAt(cfg, s.env.DataDir, old, s.health, s.m, s.now())
	if err == nil {
		if err = s.reloadTap(cfg.Dnstap); err != nil {
			s.closeUnused(st, old) // the databases only the rejected state opened
		}
	}
	if err != nil {
		s.m.reloads.WithLabelValues("rejected").Inc()
		s.health.sync(healthSpecs(s.cfg))
		s.log.Error("dns: reload rejected, the previous configuration keeps serving", "err", err)
		return fmt.Errorf("dns: reload: %w", err)
	}
	st.log = s.log
	if cfg.Listen != s.cfg.Listen || cfg.UDPSockets != s.cfg.UDPSockets || cfg.MaxTCPConnections != s.cfg.MaxTCPConnections {
		s.log.Warn("dns: listen, udp_sockets and max_tcp_connections change on restart only")
		cfg.Listen, cfg.UDPSockets, cfg.MaxTCPConnections = s.cfg.Listen, s.cfg.UDPSockets, s.cfg.MaxTCPConnections
	}
	s.st.Store(st)
	s.cfg = cfg
	s.health.sync(healthSpecs(cfg))
	if r := newRRL(cfg.RRL); r != nil {
		s.rrl.Store(r)
	} else {
		s.rrl.Store(nil)
	}
	s.closeUnused(old, st)
	s.notifyChanged(old, st)
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("dns: configuration reloaded", "zones", len(st.zones), "edges", len(st.edges))
	return nil
}

// closeUnused closes the old state's databases that the new one does not use, after in-flight
// queries are done with them.
func (s *Server) closeUnused(old, st *state) {
	for _, pair := range [][2]interface{ Close() error }{{dbOrNil(old, true), dbOrNil(st, true)}, {dbOrNil(old, false), dbOrNil(st, false)}} {
		if pair[0] != nil && pair[0] != pair[1] {
			c := pair[0]
			time.AfterFunc(30*time.Second, func() { _ = c.Close() })
		}
	}
}

func dbOrNil(st *state, city bool) interface{ Close() error } {
	db := prevDB(st, city)
	if db == nil {
		return nil
	}
	return db
}

// notifyChanged sends NOTIFY for every zone whose serial changed (assignSerials bumps it when
// the transfer content changes).
func (s *Server) notifyChanged(old, st *state) {
	if len(st.cfg.Transfer.Notify) == 0 {
		return
	}
	for origin, z := range st.zones {
		if oz := old.zones[origin]; oz != nil && oz.soa.Serial == z.soa.Serial {
			continue
		}
		for _, target := range st.cfg.Transfer.Notify {
			s.goTracked(func() {
				ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
				defer cancel()
				if err := notify(ctx, z, target); err != nil {
					s.log.Warn("dns: notify failed", "zone", origin, "target", target, "err", err)
				}
			})
		}
	}
}

// watch reloads when a zone file or GeoIP database changes (dns.watch_interval).
func (s *Server) watch() {
	for {
		s.mu.Lock()
		every := s.cfg.WatchInterval
		s.mu.Unlock()
		if every <= 0 {
			every = time.Second
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(every):
		}
		s.mu.Lock()
		cfg := s.cfg
		s.mu.Unlock()
		if cfg.WatchInterval <= 0 {
			continue
		}
		if path, changed := s.st.Load().changedFiles(); changed {
			s.log.Info("dns: file changed, reloading", "file", path)
			_ = s.Reload(cfg)
		}
	}
}
