package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 connection layer (RFC 9113): x/net/http2's Framer reads and writes frames and
// assembles header blocks (HEADERS + CONTINUATION, bounded by max_header_list_size), hpack
// encodes and decodes; the connection's state machine is here. One goroutine holds the reader
// role: it reads frames and runs a stream whose request is complete (END_STREAM on HEADERS)
// inline, as the HTTP/1.1 reader does, so a memory hit is encoded into the connection's write
// buffer without leaving it; the buffer is flushed once the read buffer is drained, so the
// responses to one batch of requests leave in one write. A stream that must wait (it fetches
// upstream, or stays inside the cache longer than stallDelay) hands the reader role to a new
// goroutine and finishes on its own; a stream with a request body, and CONNECT, get their own
// goroutine from the start. Everything shared — streams, windows, the write buffer, the
// Framer's writing side and the HPACK encoder — is guarded by h2conn.mu.

// h2 defence limits.
const (
	h2ResetBurst   = 4 // refused or early-reset streams allowed: this × max_concurrent_streams…
	h2GoAwayLinger = time.Second
	h2MaxWindow    = math.MaxInt32
)

var (
	errH2StreamReset = errors.New("proxy: h2 stream reset")
	errH2ConnClosed  = errors.New("proxy: h2 connection closed")
	errH2Stalled     = errors.New("proxy: h2 stream: no flow-control window for write_timeout")
	errH2BodyTimeout = errors.New("proxy: h2 request body: no DATA for read_timeout")
)

// h2conn is one HTTP/2 connection's state.
type h2conn struct {
	c   *conn
	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	fr  *http2.Framer
	cfg h2Limits

	mu        sync.Mutex
	cond      sync.Cond // signalled on any change of windows, bodies, streams (mu)
	streams   map[uint32]*h2Stream
	lastID    uint32 // highest client stream id seen
	connSend  int64  // connection send window
	connRecv  int64  // what the client may still send on the connection
	peerInit  int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame int    // the client's SETTINGS_MAX_FRAME_SIZE
	blocked   []*h2Stream
	hbuf      bytes.Buffer
	enc       *hpack.Encoder
	intern    map[string]string // response names and values (internBytes)
	canon     map[string]string // request field names → canonical (canonical)
	lower     [64]byte
	dead      bool // the connection is over: nothing more is written
	draining  bool // GOAWAY sent: no new streams; close after the last
	resets    float64
	resetAt   time.Time

	// The header block being read (the reader's: HEADERS, CONTINUATION; h2block.go).
	hdec *hpack.Decoder
	blk  h2Block

	// The reader role (mu): the stream run inline on the reader's goroutine, if any.
	inline *h2Stream
	stall  *time.Timer
}

// h2Limits are the connection's own limits, from [proxy.http2].
type h2Limits struct {
	maxStreams   int
	streamWindow int64
	connWindow   int64
	maxFrame     uint32
	maxHeaders   uint32
}

// serveH2 serves an h2 connection (nc: the tls.Conn, or the plain one with what was read of
// it first) until it ends.
func (c *conn) serveH2(nc net.Conn) {
	cfg := c.srv.cfg.HTTP2
	hc := &h2conn{c: c, nc: nc, streams: map[uint32]*h2Stream{}, peerInit: 65535, peerFrame: 16384,
		connSend: 65535, intern: map[string]string{}, canon: map[string]string{},
		cfg: h2Limits{maxStreams: int(cfg.MaxConcurrentStreams), streamWindow: int64(cfg.StreamWindow),
			connWindow: int64(cfg.ConnectionWindow), maxFrame: uint32(cfg.MaxReadFrameSize), maxHeaders: uint32(cfg.MaxHeaderListSize)}}
	if hc.cfg.maxStreams <= 0 {
		hc.cfg.maxStreams = 100
	}
	if hc.cfg.streamWindow <= 0 {
		hc.cfg.streamWindow = 1 << 20
	}
	if hc.cfg.connWindow < 65535 {
		hc.cfg.connWindow = 65535
	}
	if hc.cfg.maxFrame < 16384 {
		hc.cfg.maxFrame = 16384
	}
	if hc.cfg.maxHeaders == 0 {
		hc.cfg.maxHeaders = 1 << 20
	}
	hc.connRecv = hc.cfg.connWindow
	hc.cond.L = &hc.mu
	hc.br = bufio.NewReaderSize(nc, 16<<10)
	hc.fr = http2.NewFramer(h2Sink{hc}, hc.br)
	hc.fr.SetMaxReadFrameSize(hc.cfg.maxFrame)
	hc.fr.SetReuseFrames() // every frame is handled before the next is read
	hc.hdec = hpack.NewDecoder(4096, hc.emit)
	hc.hdec.SetMaxStringLength(int(hc.cfg.maxHeaders))
	hc.enc = hpack.NewEncoder(&hc.hbuf)
	hc.stall = time.AfterFunc(time.Hour, hc.stalled)
	hc.stall.Stop()
	f := c.srv.h2
	if !f.add(hc) {
		return
	}
	// From here the reader role may move between goroutines; the one that sees the
	// connection end calls teardown (which removes it from f).
	if err := hc.handshake(); err != nil {
		c.srv.log.Debug("proxy: h2 preface", "client", c.remote, "err", err)
		hc.teardown()
		return
	}
	hc.readLoop()
}

// h2Writers are the connections' write buffers, held only while a connection has output.
var h2Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// h2Sink is what the Framer writes to: the connection's write buffer, taken from h2Writers
// on the first write after the connection idled (hc.mu is held: every write is under it).
type h2Sink struct{ hc *h2conn }

// Write buffers p.
func (w h2Sink) Write(p []byte) (int, error) {
	hc := w.hc
	if hc.dead {
		return 0, errH2ConnClosed
	}
	if hc.bw == nil {
		hc.bw = h2Writers.Get().(*bufio.Writer)
		hc.bw.Reset(h2Out{hc})
	}
	return hc.bw.Write(p)
}

// flushLocked writes what the buffer holds.
func (hc *h2conn) flushLocked() error {
	if hc.dead {
		return errH2ConnClosed
	}
	if hc.bw == nil || hc.bw.Buffered() == 0 {
		return nil
	}
	return hc.bw.Flush()
}

// releaseWriterLocked gives the write buffer back once it is empty (or the connection over).
func (hc *h2conn) releaseWriterLocked() {
	if hc.bw != nil && (hc.bw.Buffered() == 0 || hc.dead) {
		hc.bw.Reset(nil)
		h2Writers.Put(hc.bw)
		hc.bw = nil
	}
}

// h2Out writes the connection's output with the proxy's write timeout.
type h2Out struct{ hc *h2conn }

// Write writes p to the connection within write_timeout.
func (o h2Out) Write(p []byte) (int, error) {
	if t := o.hc.c.srv.cfg.WriteTimeout; t > 0 {
		_ = o.hc.nc.SetWriteDeadline(time.Now().Add(t))
	}
	n, err := o.hc.nc.Write(p)
	if err != nil {
		o.hc.dead = true // under mu: every write is
	}
	return n, err
}

// handshake reads the client preface and sends the server's SETTINGS.
func (hc *h2conn) handshake() error {
	if t := hc.c.srv.cfg.ReadHeaderTimeout; t > 0 {
		_ = hc.nc.SetReadDeadline(time.Now().Add(t))
	}
	p := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(hc.br, p); err != nil {
		return fmt.Errorf("reading the client preface: %w", err)
	}
	if string(p) != http2.ClientPreface {
		return errors.New("bad client preface")
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	_ = hc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(hc.cfg.maxStreams)},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(hc.cfg.streamWindow)},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: hc.cfg.maxFrame},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: hc.cfg.maxHeaders})
	if d := hc.cfg.connWindow - 65535; d > 0 {
		_ = hc.fr.WriteWindowUpdate(0, uint32(d))
	}
	return hc.flushLocked()
}

// readLoop holds the reader role: it reads and handles frames until the connection ends or
// an inline stream hands the role on.
func (hc *h2conn) readLoop() {
	first := hc.lastID == 0
	for {
		if hc.br.Buffered() == 0 {
			hc.mu.Lock()
			_ = hc.flushLocked()
			idle := len(hc.streams) == 0
			if idle {
				hc.releaseWriterLocked() // an idle connection holds no write buffer
			}
			if hc.draining && idle {
				hc.mu.Unlock()
				hc.teardown()
				return
			}
			// Under mu: goAway and closeLocked set a deadline of now to wake the reader.
			if t := hc.c.srv.cfg.IdleTimeout; idle && t > 0 && !first {
				_ = hc.nc.SetReadDeadline(time.Now().Add(t))
			} else if !first {
				_ = hc.nc.SetReadDeadline(time.Time{})
			}
			hc.mu.Unlock()
		}
		f, err := hc.fr.ReadFrame()
		if err != nil {
			if hc.readError(err) {
				continue
			}
			return
		}
		if first {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				hc.fail(http2.ErrCodeProtocol, "settings_not_first")
				return
			}
			first = false
		}
		var cerr error
		switch f := f.(type) {
		case *http2.HeadersFrame, *http2.ContinuationFrame:
			b, err := hc.readBlock(f)
			if err != nil {
				cerr = err
				break
			}
			if b == nil {
				break // CONTINUATION frames follow
			}
			if b.invalid != nil { // a malformed request (or trailers): a stream error
				cerr = hc.refuseBlock(b)
				break
			}
			st, err := hc.onHeaders(b)
			if err != nil {
				cerr = err
			} else if st != nil && st.inlineRun {
				if hc.runInline(st) {
					return // the reader role moved on
				}
			}
		case *http2.DataFrame:
			cerr = hc.onData(f)
		case *http2.SettingsFrame:
			cerr = hc.onSettings(f)
		case *http2.PingFrame:
			if !f.IsAck() {
				hc.mu.Lock()
				_ = hc.fr.WritePing(true, f.Data)
				hc.mu.Unlock()
			}
		case *http2.WindowUpdateFrame:
			cerr = hc.onWindowUpdate(f)
		case *http2.RSTStreamFrame:
			cerr = hc.onReset(f)
		case *http2.GoAwayFrame:
			hc.mu.Lock()
			hc.draining = true
			hc.mu.Unlock()
		case *http2.PushPromiseFrame:
			cerr = http2.ConnectionError(http2.ErrCodeProtocol)
		case *http2.PriorityFrame, *http2.UnknownFrame:
			// PRIORITY is deprecated (RFC 9113 §5.3.2); unknown frame types are ignored.
		}
		if cerr != nil {
			var ce http2.ConnectionError
			if errors.Is(cerr, errTooManyResets) {
				hc.fail(http2.ErrCodeEnhanceYourCalm, "too_many_early_resets")
			} else if errors.Is(cerr, errTooManyContinuations) {
				hc.fail(http2.ErrCodeEnhanceYourCalm, "too_many_continuations")
			} else if errors.Is(cerr, errHeaderBlockTooLarge) {
				hc.fail(http2.ErrCodeProtocol, "header_block_too_large")
			} else if errors.Is(cerr, errCompression) {
				hc.fail(http2.ErrCodeCompression, "hpack")
			} else if errors.As(cerr, &ce) {
				hc.fail(http2.ErrCode(ce), "protocol")
			} else {
				hc.fail(http2.ErrCodeProtocol, "protocol")
			}
			return
		}
	}
}

// readError handles a frame read error; it reports whether reading goes on (a stream error).
func (hc *h2conn) readError(err error) bool {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		hc.mu.Lock()
		if st := hc.streams[se.StreamID]; st != nil {
			hc.resetLocked(st, se.Code)
		} else {
			if se.StreamID > hc.lastID {
				hc.lastID = se.StreamID
			}
			_ = hc.fr.WriteRSTStream(se.StreamID, se.Code)
		}
		hc.mu.Unlock()
		hc.count("stream_" + se.Code.String())
		return true
	case errors.Is(err, http2.ErrFrameTooLarge):
		hc.fail(http2.ErrCodeFrameSize, "frame_too_large")
	case errors.As(err, &ce):
		hc.fail(http2.ErrCode(ce), "protocol")
	default:
		var ne net.Error
		hc.mu.Lock()
		idle := len(hc.streams) == 0 && !hc.dead && !hc.draining
		if idle && errors.As(err, &ne) && ne.Timeout() { // idle_timeout: say so before closing
			_ = hc.fr.WriteGoAway(hc.lastID, http2.ErrCodeNo, nil)
			_ = hc.flushLocked()
		}
		hc.mu.Unlock()
		hc.teardown()
	}
	return false
}

// refuseBlock resets the stream of a malformed header block; a block that could not open a
// stream (an even or old id) is a connection error.
func (hc *h2conn) refuseBlock(b *h2Block) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.count("stream_bad_header")
	if st := hc.streams[b.StreamID]; st != nil {
		hc.resetLocked(st, http2.ErrCodeProtocol)
		return nil
	}
	if b.StreamID%2 == 0 || b.StreamID <= hc.lastID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	hc.lastID = b.StreamID
	_ = hc.fr.WriteRSTStream(b.StreamID, http2.ErrCodeProtocol)
	return nil
}

// count counts an error kind in http2_errors_total.
func (hc *h2conn) count(kind string) { hc.c.srv.m.h2Errors.WithLabelValues(kind).Inc() }

// fail ends the connection with GOAWAY code, lingering briefly so the client reads it.
func (hc *h2conn) fail(code http2.ErrCode, why string) {
	hc.count("conn_" + code.String() + "_" + why)
	hc.mu.Lock()
	if !hc.dead {
		_ = hc.fr.WriteGoAway(hc.lastID, code, nil)
		_ = hc.flushLocked()
	}
	hc.dead = true
	hc.draining = true
	hc.mu.Unlock()
	hc.c.srv.log.Debug("proxy: h2 connection error", "client", hc.c.remote, "code", code, "reason", why)
	if cw, ok := hc.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = hc.nc.SetReadDeadline(time.Now().Add(h2GoAwayLinger))
	_, _ = io.Copy(io.Discard, io.LimitReader(hc.br, 1<<20))
	hc.teardown()
}

// teardown ends the connection: streams still working find it closed.
func (hc *h2conn) teardown() {
	hc.mu.Lock()
	hc.dead = true
	for _, st := range hc.streams {
		st.reset = true
		if st.body != nil && st.body.err == nil {
			st.body.err = errH2ConnClosed
		}
	}
	hc.cond.Broadcast()
	hc.mu.Unlock()
	hc.mu.Lock()
	hc.releaseWriterLocked()
	hc.mu.Unlock()
	hc.stall.Stop()
	hc.c.closeNow()
	hc.c.srv.h2.remove(hc)
}

// goAway starts a graceful shutdown: GOAWAY NO_ERROR, finish the open streams, close.
func (hc *h2conn) goAway() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.dead || hc.draining {
		return
	}
	hc.draining = true
	_ = hc.fr.WriteGoAway(hc.lastID, http2.ErrCodeNo, nil)
	_ = hc.flushLocked()
	if len(hc.streams) == 0 {
		_ = hc.nc.SetReadDeadline(time.Now()) // wake the reader: it closes
	}
}

// onSettings applies the client's SETTINGS and acknowledges them.
func (hc *h2conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			hc.enc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingInitialWindowSize:
			d := int64(s.Val) - hc.peerInit
			hc.peerInit = int64(s.Val)
			for _, st := range hc.streams {
				if st.send += d; st.send > h2MaxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			hc.peerFrame = int(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	_ = hc.fr.WriteSettingsAck()
	hc.drainLocked()
	return nil
}

// onWindowUpdate adds to a send window.
func (hc *h2conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if f.StreamID == 0 {
		if hc.connSend += int64(f.Increment); hc.connSend > h2MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else if st := hc.streams[f.StreamID]; st != nil {
		if st.send += int64(f.Increment); st.send > h2MaxWindow {
			hc.resetLocked(st, http2.ErrCodeFlowControl)
		}
	} else if f.StreamID > hc.lastID {
		return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
	}
	hc.drainLocked()
	return nil
}

// onReset ends a stream the client reset. Streams reset before their response completed,
// and streams refused, draw on a budget refilled at max_concurrent_streams a second: a
// client that exhausts it (rapid reset, CVE-2023-44487) is sent GOAWAY ENHANCE_YOUR_CALM.
func (hc *h2conn) onReset(f *http2.RSTStreamFrame) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	st := hc.streams[f.StreamID]
	if st == nil {
		if f.StreamID > hc.lastID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	early := !st.localEnded
	st.reset = true
	hc.closeLocked(st)
	if early && !hc.spendResetLocked() {
		return errTooManyResets
	}
	return nil
}

var errTooManyResets = errors.New("too many early resets")

// spendResetLocked takes one from the reset budget, reporting whether any was left.
func (hc *h2conn) spendResetLocked() bool {
	max := float64(h2ResetBurst * hc.cfg.maxStreams)
	now := time.Now()
	if hc.resetAt.IsZero() {
		hc.resets = max
	} else {
		hc.resets = min(max, hc.resets+now.Sub(hc.resetAt).Seconds()*float64(hc.cfg.maxStreams))
	}
	hc.resetAt = now
	hc.resets--
	return hc.resets >= 0
}

// onData delivers a DATA frame to its stream's body, within the receive windows.
func (hc *h2conn) onData(f *http2.DataFrame) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	n := int64(f.Length)
	if hc.connRecv -= n; hc.connRecv < 0 {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	st := hc.streams[f.StreamID]
	if st == nil || st.remoteEnded || st.body == nil {
		hc.creditLocked(nil, n)
		if st == nil && f.StreamID > hc.lastID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // DATA on an idle stream
		}
		if st != nil && !st.remoteEnded {
			return nil
		}
		_ = hc.fr.WriteRSTStream(f.StreamID, http2.ErrCodeStreamClosed)
		return nil
	}
	if st.recv -= n; st.recv < 0 {
		hc.resetLocked(st, http2.ErrCodeFlowControl)
		hc.creditLocked(nil, n)
		return nil
	}
	data := f.Data()
	b := st.body
	if b.closed || b.err != nil {
		hc.creditLocked(st, n)
	} else {
		b.buf = append(b.buf, data...)
		hc.creditLocked(st, n-int64(len(data))) // padding
	}
	if f.StreamEnded() {
		st.remoteEnded = true
		b.ended = true
		hc.closeIfDoneLocked(st)
	}
	hc.cond.Broadcast()
	return nil
}

// creditLocked gives n bytes of receive window back to the client: on the connection, and on
// st when it still takes data.
func (hc *h2conn) creditLocked(st *h2Stream, n int64) {
	if n <= 0 || hc.dead {
		return
	}
	hc.connRecv += n
	_ = hc.fr.WriteWindowUpdate(0, uint32(n))
	if st != nil && !st.remoteEnded && !st.reset {
		st.recv += n
		_ = hc.fr.WriteWindowUpdate(st.id, uint32(n))
	}
}

// onHeaders opens a stream (or ends one with trailers, which are ignored). A request that is
// complete and not CONNECT is marked to run inline; others start on their own goroutine.
func (hc *h2conn) onHeaders(f *h2Block) (*h2Stream, error) {
	id := f.StreamID
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if id%2 == 0 {
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st := hc.streams[id]; st != nil { // trailers
		if st.remoteEnded {
			hc.resetLocked(st, http2.ErrCodeStreamClosed)
			return nil, nil
		}
		if !f.StreamEnded() {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		st.remoteEnded = true
		if st.body != nil {
			st.body.ended = true
		}
		hc.closeIfDoneLocked(st)
		hc.cond.Broadcast()
		return nil, nil
	}
	if id <= hc.lastID {
		return nil, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	hc.lastID = id
	if hc.draining || hc.dead {
		return nil, nil
	}
	if len(hc.streams) >= hc.cfg.maxStreams {
		_ = hc.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		if !hc.spendResetLocked() {
			return nil, errTooManyResets
		}
		return nil, nil
	}
	hr := &h2Request{slot: slot{c: hc.c}}
	st := &hr.st
	*st = h2Stream{hc: hc, id: id, send: hc.peerInit, recv: hc.cfg.streamWindow, remoteEnded: f.StreamEnded(), sl: &hr.slot}
	if f.Truncated {
		hc.streams[id] = st
		hc.writeHeadersLocked(st, http.StatusRequestHeaderFieldsTooLarge, nil, true)
		st.done = true
		hc.closeIfDoneLocked(st)
		return nil, nil
	}
	r, err := hc.request(f, st)
	if err != nil {
		_ = hc.fr.WriteRSTStream(id, http2.ErrCodeProtocol)
		hc.count("stream_bad_request")
		return nil, nil
	}
	hc.streams[id] = st
	st.req = r
	if f.StreamEnded() && r.Method != http.MethodConnect {
		st.inlineRun = true
		return st, nil
	}
	hc.c.refs.Add(1)
	go func() {
		defer hc.c.release()
		hc.serve(st)
	}()
	return st, nil
}

// request builds a stream's request from its header block (RFC 9113 §8.3.1).
func (hc *h2conn) request(f *h2Block, st *h2Stream) (*http.Request, error) {
	var method, scheme, authority, path string
	h := make(http.Header, len(f.Fields))
	var vals []string // the values' slices share one array
	var cookies []string
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		case ":protocol", ":status":
			return nil, errors.New("unsupported pseudo-header")
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return nil, errors.New("connection-specific field")
		case "te":
			if hf.Value != "trailers" {
				return nil, errors.New("te other than trailers")
			}
			h["Te"] = append(h["Te"], hf.Value)
		case "cookie":
			cookies = append(cookies, hf.Value)
		default:
			if strings.HasPrefix(hf.Name, ":") {
				return nil, errors.New("unknown pseudo-header")
			}
			k := hc.canonical(hf.Name)
			if vals == nil {
				vals = make([]string, 0, len(f.Fields))
			}
			vals = append(vals, hf.Value)
			if old := h[k]; len(old) > 0 {
				h[k] = append(old, hf.Value)
			} else {
				h[k] = vals[len(vals)-1 : len(vals) : len(vals)] // capped: a later append copies
			}
		}
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if method == "" {
		return nil, errors.New("no :method")
	}
	r := &st.reqv // allocated with the stream and its slot (h2Request)
	*r = http.Request{Method: method, Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, RemoteAddr: hc.c.remote}
	if method == http.MethodConnect {
		if authority == "" || scheme != "" || path != "" {
			return nil, errors.New("bad CONNECT")
		}
		r.URL, r.RequestURI, r.Host = &url.URL{Host: authority}, authority, authority
	} else {
		if scheme == "" || path == "" || path[0] != '/' && (path != "*" || method != http.MethodOptions) {
			return nil, errors.New("no :scheme, or :path not origin-form")
		}
		u := &st.urlv
		switch {
		case path == "*":
			*u = url.URL{Path: "*"}
		case plainPath(path): // what url.Parse would leave as it is: no parse, no allocation
			p, q, _ := strings.Cut(path, "?")
			*u = url.URL{Path: p, RawQuery: q, ForceQuery: q == "" && strings.HasSuffix(path, "?")}
		default:
			pu, err := url.ParseRequestURI(path)
			if err != nil {
				return nil, err
			}
			u = pu
		}
		r.URL, r.RequestURI = u, path
		r.Host = authority
		if r.Host == "" {
			r.Host = h.Get("Host")
		}
		delete(h, "Host") // as net/http's server: the host is r.Host
		if scheme == "https" {
			r.TLS = hc.c.tlsState
		}
	}
	r.ContentLength = -1
	if f.StreamEnded() {
		r.ContentLength, r.Body = 0, http.NoBody
	} else {
		if cl := h["Content-Length"]; len(cl) == 1 {
			n, err := strconv.ParseInt(cl[0], 10, 64)
			if err != nil || n < 0 {
				return nil, errors.New("bad content-length")
			}
			r.ContentLength = n
		}
		st.body = &h2Body{st: st}
		r.Body = st.body
	}
	return r, nil // no context: the proxy's request path takes the connection's (c.ctx)
}

// plainPath reports whether an origin-form target's path holds only bytes that url.Parse
// neither unescapes nor keeps a raw form of (letters, digits, -._~/$&+,:;=@), and its query
// no '#' or control byte: its URL is the path and the query as they are.
func plainPath(target string) bool {
	p, q, _ := strings.Cut(target, "?")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~/$&+,:;=@", c) >= 0:
		default:
			return false
		}
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; c < 0x21 || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// canonical returns a request field's name (lower case on the wire) in net/http's canonical
// form, from the connection's table when it is there.
func (hc *h2conn) canonical(name string) string {
	if k, ok := hc.canon[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if len(hc.canon) >= 256 {
		clear(hc.canon)
	}
	hc.canon[name] = k
	return k
}

// runInline serves st on the reader's goroutine; it reports whether the reader role moved on
// meanwhile (this goroutine then stops reading).
func (hc *h2conn) runInline(st *h2Stream) bool {
	hc.mu.Lock()
	hc.inline = st
	hc.mu.Unlock()
	hc.stall.Reset(stallDelay)
	hc.serve(st)
	hc.stall.Stop()
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.inline == st {
		hc.inline = nil
	}
	return st.handed
}

// stalled runs when an inline stream stayed inside longer than stallDelay: it hands the reader
// role on.
func (hc *h2conn) stalled() {
	hc.mu.Lock()
	st := hc.inline
	hc.mu.Unlock()
	if st != nil {
		hc.handOff(st)
	}
}

// handOff moves the reader role to a new goroutine when st is the stream run inline (it is
// about to wait upstream).
func (hc *h2conn) handOff(st *h2Stream) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.inline != st || st.handed || hc.dead {
		return
	}
	st.handed = true
	hc.inline = nil
	st.inlineRun = false // its writes may wait for window from now on
	_ = hc.flushLocked()
	hc.c.refs.Add(1)
	go func() {
		defer hc.c.release()
		hc.readLoop()
	}()
}

// serve runs a stream's request through the proxy's request path, then ends the stream.
func (hc *h2conn) serve(st *h2Stream) {
	hc.c.serveStream(st)
	hc.mu.Lock()
	defer hc.mu.Unlock()
	switch {
	case st.reset || hc.dead:
	case st.aborted || !st.headersSent:
		hc.resetLocked(st, http2.ErrCodeInternal)
	case !st.localEnded && st.pending == nil && !st.pendingEnd:
		if len(st.trailer) > 0 {
			hc.writeHeadersLocked(st, 0, st.trailer, true)
		} else {
			_ = hc.writeDataLocked(st, nil, true, false)
		}
	}
	if st.body != nil {
		st.body.closed = true
	}
	st.done = true
	hc.closeIfDoneLocked(st)
	if !st.inlineRun {
		_ = hc.flushLocked()
	}
}

// resetLocked resets a stream with code.
func (hc *h2conn) resetLocked(st *h2Stream, code http2.ErrCode) {
	if !st.reset && !hc.dead {
		_ = hc.fr.WriteRSTStream(st.id, code)
	}
	st.reset = true
	hc.closeLocked(st)
}

// closeIfDoneLocked closes st once its handler finished and its response is out.
func (hc *h2conn) closeIfDoneLocked(st *h2Stream) {
	if !st.done || !(st.localEnded || st.reset) {
		return
	}
	if !st.remoteEnded && !st.reset && !hc.dead {
		_ = hc.fr.WriteRSTStream(st.id, http2.ErrCodeNo) // the rest of its body is not needed
		st.reset = true
	}
	hc.closeLocked(st)
}

// closeLocked forgets st: it no longer counts against max_concurrent_streams once its handler
// finished.
func (hc *h2conn) closeLocked(st *h2Stream) {
	st.pending = nil
	if st.body != nil && st.body.err == nil && !st.body.ended {
		st.body.err = errH2StreamReset
	}
	hc.cond.Broadcast()
	if !st.done {
		return // the handler still runs: it holds its place
	}
	if hc.streams[st.id] == st {
		delete(hc.streams, st.id)
		if len(hc.streams) == 0 && hc.draining {
			_ = hc.nc.SetReadDeadline(time.Now())
		}
	}
}

// writeHeadersLocked writes a HEADERS block (and CONTINUATION frames when it is longer than
// the client's frame size): the status (0: trailers) then fields.
func (hc *h2conn) writeHeadersLocked(st *h2Stream, code int, fields http.Header, end bool) {
	if hc.dead || st.reset {
		return
	}
	hc.hbuf.Reset()
	if code != 0 {
		_ = hc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(code)})
	}
	for name, values := range fields {
		lname := hc.lowerName([]byte(strings.TrimPrefix(name, http.TrailerPrefix)))
		if h2Forbidden(http.CanonicalHeaderKey(name)) {
			continue
		}
		for _, v := range values {
			_ = hc.enc.WriteField(hpack.HeaderField{Name: lname, Value: v})
		}
	}
	hc.sendBlockLocked(st, end)
}

// sendBlockLocked sends the encoded block in hbuf on st.
func (hc *h2conn) sendBlockLocked(st *h2Stream, end bool) {
	block := hc.hbuf.Bytes()
	first := block
	if len(first) > hc.peerFrame {
		first = first[:hc.peerFrame]
	}
	block = block[len(first):]
	_ = hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		frag := block
		if len(frag) > hc.peerFrame {
			frag = frag[:hc.peerFrame]
		}
		block = block[len(frag):]
		_ = hc.fr.WriteContinuation(st.id, len(block) == 0, frag)
	}
	st.headersSent = true
	if end {
		st.localEnded = true
	}
}

// writeDataLocked sends p on st within the send windows. What does not fit waits: in place
// when wait is set (the caller is a stream's own goroutine), else kept by reference on the
// stream (p must stay unchanged: a stored body) and sent as WINDOW_UPDATEs arrive.
func (hc *h2conn) writeDataLocked(st *h2Stream, p []byte, end, wait bool) error {
	var deadline time.Time // write_timeout: how long a write may wait for window
	expired := false
	for {
		if hc.dead {
			return errH2ConnClosed
		}
		if st.reset {
			return errH2StreamReset
		}
		n := max(0, min(int64(len(p)), st.send, hc.connSend, int64(hc.peerFrame))) // a window may be negative
		if n > 0 || len(p) == 0 {
			last := end && n == int64(len(p))
			if err := hc.fr.WriteData(st.id, last, p[:n]); err != nil {
				return err
			}
			st.send -= n
			hc.connSend -= n
			p = p[n:]
			if last {
				st.localEnded = true
			}
			if len(p) == 0 {
				return nil
			}
			continue
		}
		if !wait {
			st.pending, st.pendingEnd = p, end
			hc.blocked = append(hc.blocked, st)
			return nil
		}
		if expired {
			hc.resetLocked(st, http2.ErrCodeCancel)
			hc.count("stream_flow_control_stall")
			return errH2Stalled
		}
		_ = hc.flushLocked()
		if t := hc.c.srv.cfg.WriteTimeout; deadline.IsZero() && t > 0 {
			deadline = time.Now().Add(t)
		}
		expired = !hc.waitLocked(deadline)
	}
}

// waitLocked waits for a change (cond) until deadline (zero: none); it reports false when the
// deadline passed.
func (hc *h2conn) waitLocked(deadline time.Time) bool {
	if deadline.IsZero() {
		hc.cond.Wait()
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.AfterFunc(d, func() {
		hc.mu.Lock()
		hc.cond.Broadcast()
		hc.mu.Unlock()
	})
	hc.cond.Wait()
	t.Stop()
	return time.Now().Before(deadline)
}

// drainLocked sends what blocked streams keep, as far as the windows now allow.
func (hc *h2conn) drainLocked() {
	hc.cond.Broadcast()
	if len(hc.blocked) == 0 {
		return
	}
	blocked := hc.blocked
	hc.blocked = nil
	for i, st := range blocked {
		if st.pending == nil || st.reset {
			continue
		}
		p, end := st.pending, st.pendingEnd
		st.pending, st.pendingEnd = nil, false
		if hc.writeDataLocked(st, p, end, false) != nil {
			continue
		}
		if st.pending != nil && hc.connSend <= 0 {
			hc.blocked = append(hc.blocked, blocked[i+1:]...)
			break
		}
		hc.closeIfDoneLocked(st)
	}
}

// lowerName returns name in lower case as a string, interned on the connection (repeated
// names and values cost no allocation).
func (hc *h2conn) lowerName(name []byte) string {
	if len(name) > len(hc.lower) {
		return strings.ToLower(string(name))
	}
	b := hc.lower[:len(name)]
	for i, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		b[i] = ch
	}
	return hc.internBytes(b)
}

// internBytes returns b as a string, from the connection's table when it is there.
func (hc *h2conn) internBytes(b []byte) string {
	if s, ok := hc.intern[string(b)]; ok {
		return s
	}
	if len(hc.intern) >= 1024 {
		clear(hc.intern)
	}
	s := string(b)
	hc.intern[s] = s
	return s
}

// statusString is the decimal text of an HTTP status.
func statusString(code int) string {
	switch code {
	case 200:
		return "200"
	case 304:
		return "304"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// h2Body is a stream's request body: DATA frames' bytes, read by the stream's handler; reading
// gives the window back to the client.
type h2Body struct {
	st     *h2Stream
	buf    []byte
	ended  bool  // END_STREAM arrived
	closed bool  // the handler is done with it
	err    error // the stream or connection ended first
}

// Read reads the body, waiting for DATA.
func (b *h2Body) Read(p []byte) (int, error) {
	hc := b.st.hc
	hc.mu.Lock()
	defer hc.mu.Unlock()
	var deadline time.Time // read_timeout (a tunnel's: tunnel_idle_timeout): how long a read may wait for DATA
	t := hc.c.srv.cfg.ReadTimeout
	if r := b.st.req; r != nil && r.Method == http.MethodConnect {
		t = hc.c.srv.cfg.TunnelIdleTimeout
	}
	if t > 0 {
		deadline = time.Now().Add(t)
	}
	for len(b.buf) == 0 && !b.ended && b.err == nil && !b.closed {
		if !hc.waitLocked(deadline) {
			hc.resetLocked(b.st, http2.ErrCodeCancel)
			hc.count("stream_body_timeout")
			return 0, errH2BodyTimeout
		}
	}
	if len(b.buf) == 0 {
		switch {
		case b.err != nil:
			return 0, b.err
		case b.closed:
			return 0, errors.New("proxy: h2 body read after close")
		}
		return 0, io.EOF
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	if len(b.buf) == 0 {
		b.buf = b.buf[:0:0]
	}
	hc.creditLocked(b.st, int64(n))
	_ = hc.flushLocked()
	return n, nil
}

// Close ends reading: the rest is discarded as it arrives.
func (b *h2Body) Close() error {
	hc := b.st.hc
	hc.mu.Lock()
	defer hc.mu.Unlock()
	b.closed = true
	if n := len(b.buf); n > 0 {
		b.buf = nil
		hc.creditLocked(nil, int64(n))
	}
	hc.cond.Broadcast()
	return nil
}
