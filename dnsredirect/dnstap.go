package dnsredirect

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/outpost-proxy/outpost/internal/config"
)

// dnstap logging: each answered query becomes an AUTH_QUERY and an AUTH_RESPONSE message
// (dnstap.proto) in a Frame Streams stream to a Unix socket collector or a file.
//
// The query path never waits for the log. A fixed set of records (queue_size) circulates
// between a free list and the queue: the path takes a free record, copies the two messages
// into it and queues it, or, when none is free, drops it and counts the dropped messages. One
// writer goroutine encodes and writes the queue through a 64 KiB buffer, flushed when full and
// at most tapFlushDelay after a message went in (as fstrm's flush timeout). A collector
// that goes away is redialled with a back-off; what arrives meanwhile is dropped and counted.
const (
	tapHandshakeTimeout = 2 * time.Second // Frame Streams READY/ACCEPT with a collector
	tapRetryMin         = 100 * time.Millisecond
	tapRetryMax         = 5 * time.Second
	tapCloseTimeout     = 3 * time.Second        // Shutdown waits this long for the writer to drain
	tapKeepBuffer       = 8 << 10                // record buffers grown past this are not kept
	tapFlushDelay       = 100 * time.Millisecond // the longest a message waits in the buffer
)

// Why a dnstap message was dropped (outpost_dns_dnstap_dropped_total{reason}).
const (
	tapDropQueueFull   = "queue_full"  // every record was in the queue: the writer is behind
	tapDropUnavailable = "unavailable" // no collector connected, or the write failed
)

// tapRecord is one query and its response as they went over the wire.
type tapRecord struct {
	query, resp []byte
	src         netip.AddrPort
	tcp         bool
	hasResp     bool
	qtime       time.Time
	rtime       time.Time
}

// tapMetrics count written and dropped messages.
type tapMetrics struct {
	frames    prometheus.Counter
	dropped   *prometheus.CounterVec
	queueFull prometheus.Counter
	gone      prometheus.Counter
}

func newTapMetrics(reg prometheus.Registerer) (*tapMetrics, error) {
	m := &tapMetrics{
		frames: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_dns_dnstap_frames_total",
			Help: "dnstap messages written to the collector or file."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_dns_dnstap_dropped_total",
			Help: "dnstap messages dropped: queue_full (the writer is behind) or unavailable (no collector, write failed)."},
			[]string{"reason"}),
	}
	if err := register(reg, m.frames, func(c prometheus.Collector) { m.frames = c.(prometheus.Counter) }); err != nil {
		return nil, err
	}
	if err := register(reg, m.dropped, func(c prometheus.Collector) { m.dropped = c.(*prometheus.CounterVec) }); err != nil {
		return nil, err
	}
	m.queueFull, m.gone = m.dropped.WithLabelValues(tapDropQueueFull), m.dropped.WithLabelValues(tapDropUnavailable)
	return m, nil
}

// tapSink is where the stream goes: opened (and reopened after a failure) by the writer.
type tapSink interface {
	open() (*tapStream, error)
	String() string
}

// tapStreamBuffer is the write buffer in front of the destination. The Frame Streams writer's
// own is 4 KiB, a system call per twenty-odd messages; this one makes it one per few hundred.
const tapStreamBuffer = 64 << 10

// tapStream is an open Frame Streams stream: the library's writer, over a large buffer, over
// the destination.
type tapStream struct {
	fs *framestream.Writer
	bw *bufio.Writer
	c  io.Closer
}

// tapBuffered is the buffer as the library sees it on a bidirectional stream: reading the
// collector's reply first flushes what is buffered (the control frame it replies to).
type tapBuffered struct {
	bw *bufio.Writer
	r  io.Reader
}

func (b *tapBuffered) Write(p []byte) (int, error) { return b.bw.Write(p) }

func (b *tapBuffered) Read(p []byte) (int, error) {
	if err := b.bw.Flush(); err != nil {
		return 0, err
	}
	return b.r.Read(p)
}

// newTapStream starts a stream on c: on a socket (bidirectional) the READY/ACCEPT handshake
// with the collector, then START.
func newTapStream(c io.ReadWriteCloser, bidirectional bool) (*tapStream, error) {
	st := &tapStream{bw: bufio.NewWriterSize(c, tapStreamBuffer), c: c}
	var w io.Writer = st.bw
	if bidirectional {
		w = &tapBuffered{bw: st.bw, r: c}
	}
	var err error
	st.fs, err = framestream.NewWriter(w, &framestream.WriterOptions{
		ContentTypes: [][]byte{dnstap.FSContentType}, Bidirectional: bidirectional})
	if err == nil {
		err = st.bw.Flush()
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// flush writes out what both buffers hold.
func (st *tapStream) flush() error {
	if err := st.fs.Flush(); err != nil {
		return err
	}
	return st.bw.Flush()
}

// close ends the stream (STOP, and on a socket the collector's FINISH) and the destination.
func (st *tapStream) close() {
	if d, ok := st.c.(interface{ SetDeadline(time.Time) error }); ok {
		_ = d.SetDeadline(time.Now().Add(tapHandshakeTimeout))
	}
	if st.fs.Close() == nil {
		_ = st.bw.Flush()
	}
	st.c.Close()
}

// tap is a running dnstap logger. Its methods other than close are safe for concurrent use.
type tap struct {
	cfg      config.DNSDnstapConfig
	sink     tapSink
	logQ     bool
	logR     bool
	identity []byte
	version  []byte
	local    netip.AddrPort // the server's address: the response address of every message
	m        *tapMetrics
	log      *slog.Logger

	free  chan *tapRecord
	queue chan *tapRecord
	stop  chan struct{}
	done  chan struct{}
	conn  atomic.Pointer[tapStream] // the open stream, whose destination close closes to unblock a write
	once  sync.Once
}

// newTap starts a dnstap logger for cfg. A file destination is opened here, so a bad path is
// an error at start or reload; a socket collector is dialled in the background.
func newTap(cfg config.DNSDnstapConfig, dataDir string, local netip.AddrPort, m *tapMetrics, log *slog.Logger) (*tap, error) {
	t := &tap{cfg: cfg, logQ: cfg.Logs("auth_query"), logR: cfg.Logs("auth_response"), local: local, m: m, log: log,
		identity: []byte(cfg.Identity), version: []byte(cfg.Version),
		free: make(chan *tapRecord, cfg.QueueSize), queue: make(chan *tapRecord, cfg.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	if len(t.identity) == 0 {
		h, _ := os.Hostname()
		t.identity = []byte(h)
	}
	if len(t.version) == 0 {
		t.version = []byte("outpost")
	}
	for range cfg.QueueSize {
		t.free <- new(tapRecord)
	}
	if path, ok := cfg.TapSocket(); ok {
		t.sink = &tapSocket{path: dataPath(dataDir, path)}
	} else {
		t.sink = &tapFile{path: dataPath(dataDir, cfg.Destination)}
	}
	stream, err := t.sink.open()
	if _, isFile := t.sink.(*tapFile); isFile && err != nil {
		return nil, fmt.Errorf("dns.dnstap.destination: %w", err)
	}
	if err != nil {
		log.Warn("dns: dnstap collector not reachable yet, will retry", "destination", t.sink, "err", err)
	}
	go t.run(stream)
	return t, nil
}

// record logs one query and the response sent to it (resp nil: none was sent). It never
// blocks: without a free record the messages are dropped and counted.
func (t *tap) record(query, resp []byte, src netip.AddrPort, tcp bool, qtime time.Time) {
	var r *tapRecord
	select {
	case r = <-t.free:
	default:
		t.m.queueFull.Add(float64(t.messages(resp != nil)))
		return
	}
	r.query, r.resp = r.query[:0], r.resp[:0]
	if t.logQ {
		r.query = append(r.query, query...)
	}
	if t.logR {
		r.resp = append(r.resp, resp...)
	}
	r.hasResp = resp != nil
	r.src, r.tcp, r.qtime, r.rtime = src, tcp, qtime, time.Now()
	t.queue <- r // never blocks: there are as many records as queue slots
}

// messages is how many messages a record yields.
func (t *tap) messages(hasResp bool) int {
	n := 0
	if t.logQ {
		n++
	}
	if t.logR && hasResp {
		n++
	}
	return n
}

// close stops the writer after it has written what is queued, ends the stream (STOP) and
// closes the destination; a writer stuck on a collector that does not read is cut off after
// tapCloseTimeout.
func (t *tap) close() {
	t.once.Do(func() { close(t.stop) })
	select {
	case <-t.done:
		return
	case <-time.After(tapCloseTimeout):
	}
	if st := t.conn.Load(); st != nil {
		st.c.Close()
	}
	<-t.done
}

// run is the writer goroutine: it drains the queue into the stream until close.
func (t *tap) run(stream *tapStream) {
	defer close(t.done)
	tw := &tapWriter{tap: t, retry: tapRetryMin}
	tw.attach(stream)
	defer tw.finish()
	flush := time.NewTimer(tapFlushDelay)
	flush.Stop()
	armed := false
	for {
		select {
		case r := <-t.queue:
			tw.write(r)
			if !armed && tw.pending > 0 {
				flush.Reset(tapFlushDelay)
				armed = true
			}
		case <-flush.C:
			armed = false
			tw.flush()
		case <-t.stop:
			for {
				select {
				case r := <-t.queue:
					tw.write(r)
				default:
					return
				}
			}
		}
	}
}

// tapWriter is the writer goroutine's state: the open stream, the back-off, the reused
// encoding buffers.
type tapWriter struct {
	*tap
	w         *tapStream // nil: not connected
	pending   int        // messages written since the last successful flush
	retry     time.Duration
	nextDial  time.Time
	buf       []byte // the encoded Dnstap message
	msgBuf    []byte // its inner Message
	lastError string
}

func (tw *tapWriter) attach(w *tapStream) {
	tw.w = w
	if w != nil {
		tw.conn.Store(w)
		tw.retry = tapRetryMin
		tw.log.Info("dns: dnstap connected", "destination", tw.sink)
	} else {
		tw.nextDial = time.Now().Add(tw.retry)
	}
}

// write encodes and writes a record's messages, reconnecting first when it is time to.
func (tw *tapWriter) write(r *tapRecord) {
	n := tw.messages(r.hasResp)
	if tw.w == nil && !time.Now().Before(tw.nextDial) {
		tw.redial()
	}
	if tw.w == nil {
		tw.m.gone.Add(float64(n))
	} else {
		if tw.logQ {
			tw.frame(r, dnstap.Message_AUTH_QUERY)
		}
		if tw.logR && r.hasResp {
			tw.frame(r, dnstap.Message_AUTH_RESPONSE)
		}
	}
	if cap(r.query) > tapKeepBuffer {
		r.query = nil
	}
	if cap(r.resp) > tapKeepBuffer {
		r.resp = nil
	}
	tw.free <- r
}

// frame writes one message of r.
func (tw *tapWriter) frame(r *tapRecord, mt dnstap.Message_Type) {
	if tw.w == nil {
		tw.m.gone.Inc()
		return
	}
	tw.buf = tw.encode(tw.buf[:0], r, mt)
	if _, err := tw.w.fs.WriteFrame(tw.buf); err != nil {
		tw.fail(err, 1)
		return
	}
	tw.pending++
}

// Field numbers of dnstap.proto (messages Dnstap and Message).
const (
	tapFieldIdentity = 1
	tapFieldVersion  = 2
	tapFieldMessage  = 14
	tapFieldType     = 15

	tapMsgType            = 1
	tapMsgFamily          = 2
	tapMsgProtocol        = 3
	tapMsgQueryAddress    = 4
	tapMsgResponseAddress = 5
	tapMsgQueryPort       = 6
	tapMsgResponsePort    = 7
	tapMsgQueryTimeSec    = 8
	tapMsgQueryTimeNsec   = 9
	tapMsgQueryMessage    = 10
	tapMsgResponseSec     = 12
	tapMsgResponseNsec    = 13
	tapMsgResponseMessage = 14
)

// encode appends r's message of type mt, a dnstap.Dnstap protobuf, to buf. It is encoded
// field by field with protowire (the generic proto.Marshal took half the writer's time); the
// tests decode it with the library's generated types.
func (tw *tapWriter) encode(buf []byte, r *tapRecord, mt dnstap.Message_Type) []byte {
	family, proto := dnstap.SocketFamily_INET6, dnstap.SocketProtocol_UDP
	if r.src.Addr().Is4() {
		family = dnstap.SocketFamily_INET
	}
	if r.tcp {
		proto = dnstap.SocketProtocol_TCP
	}
	m := tw.msgBuf[:0]
	m = appendVarintField(m, tapMsgType, uint64(mt))
	m = appendVarintField(m, tapMsgFamily, uint64(family))
	m = appendVarintField(m, tapMsgProtocol, uint64(proto))
	a := addrBytes(r.src.Addr())
	m = appendBytesField(m, tapMsgQueryAddress, a[:r.src.Addr().BitLen()/8])
	if l := tw.local.Addr(); l.IsValid() && l.Is4() == r.src.Addr().Is4() {
		la := addrBytes(l)
		m = appendBytesField(m, tapMsgResponseAddress, la[:l.BitLen()/8])
		m = appendVarintField(m, tapMsgResponsePort, uint64(tw.local.Port()))
	}
	m = appendVarintField(m, tapMsgQueryPort, uint64(r.src.Port()))
	m = appendVarintField(m, tapMsgQueryTimeSec, uint64(r.qtime.Unix()))
	m = protowire.AppendTag(m, tapMsgQueryTimeNsec, protowire.Fixed32Type)
	m = protowire.AppendFixed32(m, uint32(r.qtime.Nanosecond()))
	if mt == dnstap.Message_AUTH_QUERY {
		m = appendBytesField(m, tapMsgQueryMessage, r.query)
	} else {
		m = appendVarintField(m, tapMsgResponseSec, uint64(r.rtime.Unix()))
		m = protowire.AppendTag(m, tapMsgResponseNsec, protowire.Fixed32Type)
		m = protowire.AppendFixed32(m, uint32(r.rtime.Nanosecond()))
		m = appendBytesField(m, tapMsgResponseMessage, r.resp)
	}
	tw.msgBuf = m
	buf = appendBytesField(buf, tapFieldIdentity, tw.identity)
	buf = appendBytesField(buf, tapFieldVersion, tw.version)
	buf = appendBytesField(buf, tapFieldMessage, m)
	return appendVarintField(buf, tapFieldType, uint64(dnstap.Dnstap_MESSAGE))
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

// flush pushes the buffered messages out; they count as written once they are.
func (tw *tapWriter) flush() {
	if tw.w == nil || tw.pending == 0 {
		return
	}
	if err := tw.w.flush(); err != nil {
		tw.fail(err, 0)
		return
	}
	tw.m.frames.Add(float64(tw.pending))
	tw.pending = 0
}

// fail drops the stream after an error: the buffered messages and lost more are counted as
// dropped, and the destination is redialled after the back-off.
func (tw *tapWriter) fail(err error, lost int) {
	tw.m.gone.Add(float64(tw.pending + lost))
	tw.pending = 0
	if tw.w != nil {
		tw.w.c.Close()
	}
	tw.w = nil
	tw.conn.Store(nil)
	tw.nextDial = time.Now().Add(tw.retry)
	if msg := err.Error(); msg != tw.lastError {
		tw.log.Warn("dns: dnstap write failed, dropping messages until the destination is back", "destination", tw.sink, "err", err)
		tw.lastError = msg
	}
}

// redial opens the destination again, doubling the back-off when it fails.
func (tw *tapWriter) redial() {
	w, err := tw.sink.open()
	if err != nil {
		tw.retry = min(2*tw.retry, tapRetryMax)
		tw.nextDial = time.Now().Add(tw.retry)
		return
	}
	tw.lastError = ""
	tw.attach(w)
}

// finish ends the stream: STOP (and, on a socket, the collector's FINISH), then close.
func (tw *tapWriter) finish() {
	if tw.w == nil {
		return
	}
	tw.flush()
	if tw.w != nil {
		tw.w.close()
	}
}

// tapSocket is a collector listening on a Unix socket: bidirectional Frame Streams.
type tapSocket struct{ path string }

func (s *tapSocket) String() string { return "unix:" + s.path }

func (s *tapSocket) open() (*tapStream, error) {
	c, err := net.DialTimeout("unix", s.path, tapHandshakeTimeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(tapHandshakeTimeout))
	st, err := newTapStream(c, true)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("dnstap handshake with %s: %w", s.path, err)
	}
	_ = c.SetDeadline(time.Time{}) // a slow collector makes the queue fill, not the stream fail
	return st, nil
}

// tapFile is a Frame Streams file; an existing one is kept as path.1.
type tapFile struct{ path string }

func (f *tapFile) String() string { return f.path }

func (f *tapFile) open() (*tapStream, error) {
	if fi, err := os.Stat(f.path); err == nil && fi.Size() > 0 {
		if err := os.Rename(f.path, f.path+".1"); err != nil {
			return nil, err
		}
	}
	fh, err := os.OpenFile(f.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, err
	}
	st, err := newTapStream(fh, false)
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("dnstap file %s: %w", f.path, err)
	}
	return st, nil
}

// tapNow returns the running dnstap logger and the time a query arrived, or nil (and no clock
// read) when dnstap is off.
func (s *Server) tapNow() (*tap, time.Time) {
	t := s.tap.Load()
	if t == nil {
		return nil, time.Time{}
	}
	return t, time.Now()
}

// startTap starts dnstap logging as cfg says (nothing when disabled), replacing any logger
// running before.
func (s *Server) startTap(cfg config.DNSDnstapConfig) error {
	var t *tap
	if cfg.Enabled {
		local := netip.AddrPort{}
		if len(s.udp) > 0 {
			local = s.udp[0].LocalAddr().(*net.UDPAddr).AddrPort()
		}
		var err error
		if t, err = newTap(cfg, s.env.DataDir, local, s.m.tap, s.log); err != nil {
			return err
		}
	}
	if old := s.tap.Swap(t); old != nil && !s.goTracked(old.close) {
		old.close()
	}
	return nil
}

// reloadTap restarts dnstap logging when its configuration changed and the server listens.
func (s *Server) reloadTap(cfg config.DNSDnstapConfig) error {
	if s.udp == nil || reflect.DeepEqual(cfg, s.cfg.Dnstap) {
		return nil
	}
	return s.startTap(cfg)
}
