package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/internal/diskspace"
	"github.com/outpost-proxy/outpost/proxy/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// accessLog writes one line per request, in Squid's native format or the combined format,
// to stderr, stdout or a file. Serving never waits for the destination: lines are appended
// to a memory buffer, which a background writer flushes every second (and whenever 64 KiB
// are waiting, and on Close). A failing destination (a full disk, /dev/full, a closed pipe)
// never stops or slows serving: the lines of a failed write are lost, and so are lines that
// find more than maxPending waiting; both are counted
// (outpost_proxy_access_log_errors_total, outpost_proxy_access_log_lines_lost_total) and the
// failure is logged at most once a minute. Writing resumes by itself when the destination
// recovers.
type accessLog struct {
	combined bool
	dest     string
	mu       sync.Mutex
	w        io.Writer // nil when off; out, or a test's writer (direct)
	out      io.Writer // the destination (set once)
	direct   bool      // write lines to w at once (tests)
	pend     []byte    // whole lines waiting for the writer
	spare    []byte    // the buffer being written, reused
	kick     chan struct{}
	file     *os.File
	stop     chan struct{}
	stopped  sync.WaitGroup
	flushing sync.Mutex // one flush at a time

	errs, lost prometheus.Counter // failed writes; lines lost to them or to a full buffer
	warn       *diskspace.Warner
}

// Access log buffer sizes: a flush is started at flushAt waiting bytes, lines are dropped
// past maxPending, and one write to the destination carries at most writeChunk bytes (whole
// lines, so lines stay whole when other writers share stderr).
const (
	flushAt    = 64 << 10
	maxPending = 4 << 20
	writeChunk = 64 << 10
)

// newAccessLog opens the configured destination; its counters go to reg (nil: nowhere) and
// its own failures to log.
func newAccessLog(cfg config.ProxyAccessLogConfig, log *slog.Logger, reg prometheus.Registerer) (*accessLog, error) {
	l := &accessLog{combined: cfg.Format == "combined", dest: cfg.Destination}
	var out io.Writer
	switch cfg.Destination {
	case "off":
		return l, nil
	case "stderr":
		out = os.Stderr
	case "stdout":
		out = os.Stdout
	default:
		f, err := os.OpenFile(cfg.Destination, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, config.Errorf("proxy.access_log.destination", "%v", err)
		}
		l.file, out = f, f
	}
	if err := l.registerMetrics(reg); err != nil {
		if l.file != nil {
			l.file.Close()
		}
		return nil, err
	}
	l.w, l.out, l.warn = out, out, diskspace.NewWarner(log, time.Minute)
	l.kick, l.stop = make(chan struct{}, 1), make(chan struct{})
	l.stopped.Add(1)
	go l.flusher()
	return l, nil
}

// registerMetrics creates the log's counters and registers them on reg.
func (l *accessLog) registerMetrics(reg prometheus.Registerer) error {
	l.errs = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
		Name: "access_log_errors_total", Help: "Failed writes to the access log destination."})
	l.lost = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "proxy",
		Name: "access_log_lines_lost_total", Help: "Access log lines lost to failed writes or a full buffer."})
	if reg == nil {
		return nil
	}
	for _, c := range []*prometheus.Counter{&l.errs, &l.lost} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("proxy: access log metrics: %w", err)
			}
			*c = are.ExistingCollector.(prometheus.Counter) // a reloaded proxy counts on
		}
	}
	return nil
}

// setOutput sends the log to w, unbuffered (tests; nil: back to the destination, buffered);
// a log that is off stays off.
func (l *accessLog) setOutput(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return
	}
	if w == nil {
		l.w, l.direct = l.out, false
		return
	}
	l.w, l.direct = w, true
}

// flusher flushes the buffer every second, when kicked, and until Close.
func (l *accessLog) flusher() {
	defer l.stopped.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.kick:
		case <-l.stop:
			return
		}
		l.flush()
	}
}

// flush writes the waiting lines to the destination, outside the lock that serving takes.
func (l *accessLog) flush() {
	l.flushing.Lock()
	defer l.flushing.Unlock()
	l.mu.Lock()
	buf := l.pend
	l.pend, l.spare = l.spare[:0], nil
	l.mu.Unlock()
	for rest := buf; len(rest) > 0; {
		n := len(rest)
		if n > writeChunk {
			n = bytes.LastIndexByte(rest[:writeChunk], '\n') + 1
			if n == 0 {
				n = writeChunk
			}
		}
		if _, err := l.out.Write(rest[:n]); err != nil {
			l.failed(bytes.Count(rest, []byte{'\n'}), err)
			break
		}
		rest = rest[n:]
	}
	l.mu.Lock()
	l.spare = buf[:0]
	l.mu.Unlock()
}

// failed counts a failed write and the lines it lost, and logs it (rate-limited).
func (l *accessLog) failed(lines int, err error) {
	l.errs.Inc()
	l.lost.Add(float64(lines))
	l.mu.Lock()
	warn := l.warn
	l.mu.Unlock()
	warn.Warn("proxy: access log write failed; lines lost", "destination", l.dest, "lines", lines, "err", err)
}

// write appends one finished line. It never blocks on the destination: past maxPending
// waiting bytes the line is dropped (and counted).
func (l *accessLog) write(line []byte) {
	l.mu.Lock()
	if l.direct {
		_, _ = l.w.Write(line)
		l.mu.Unlock()
		return
	}
	if len(l.pend)+len(line) > maxPending {
		l.mu.Unlock()
		l.failed(1, errors.New("buffer full: the destination does not keep up"))
		return
	}
	l.pend = append(l.pend, line...)
	kick := len(l.pend) >= flushAt
	l.mu.Unlock()
	if kick {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Close flushes and closes the destination.
func (l *accessLog) Close() error {
	if l.stop == nil {
		return nil
	}
	close(l.stop)
	l.stopped.Wait()
	l.flush()
	if l.file != nil {
		if err := l.file.Close(); err != nil {
			return fmt.Errorf("proxy: closing access log: %w", err)
		}
	}
	return nil
}

// record logs a finished request and counts it in the metrics. It runs with the connection's
// mutex held and uses the connection's line buffer, so it does not allocate.
func (srv *Server) record(s *slot, buf *[]byte, now time.Time) {
	dur := now.Sub(s.start)
	srv.m.observe(s, dur)
	srv.status.record(s)
	l := srv.alog
	if l.w == nil {
		return
	}
	var line []byte
	if l.combined {
		line = appendCombined((*buf)[:0], s, dur)
	} else {
		line = appendSquid((*buf)[:0], s, dur)
	}
	*buf = line
	l.write(line)
}

// resultCode is the Squid result code: the cache's when it answered, else what the proxy did.
func resultCode(s *slot) cache.Code {
	switch {
	case s.outcome.Code != cache.CodeUnset:
		return s.outcome.Code
	case s.mode == modeConnect && s.status == 200, s.upgrade && s.status == 101:
		return cache.CodeTunnel
	case s.status == 403 || s.status == 407:
		return cache.CodeDenied
	case s.perr != nil || s.mode == modeLocal:
		return cache.CodeNone
	}
	return cache.CodeMiss
}

// appendSquid renders Squid's native format:
// time.ms elapsed client code/status bytes method URL user hierarchy/peer type, then
// "error:<kind>" when the upstream failed.
func appendSquid(b []byte, s *slot, dur time.Duration) []byte {
	now := time.Now()
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, '.')
	b = appendPad3(b, now.Nanosecond()/1e6)
	b = append(b, ' ')
	b = appendRightInt(b, dur.Milliseconds(), 6)
	b = append(b, ' ')
	b = append(b, s.c.ipStr...)
	b = append(b, ' ')
	b = append(b, resultCode(s).String()...)
	b = append(b, '/')
	b = appendPad3(b, s.status)
	b = append(b, ' ')
	b = strconv.AppendInt(b, s.bytesOut, 10)
	b = append(b, ' ')
	b = appendMethod(b, s)
	b = append(b, ' ')
	b = appendURL(b, s)
	b = append(b, ' ')
	b = appendDash(b, s.user)
	if s.upstream != "" {
		b = append(b, s.c.srv.tier.hierarchy(s.upstream)...) // " HIER_DIRECT/" or " CARP/" (parents.go)
		b = append(b, s.upstream...)
	} else {
		b = append(b, " HIER_NONE/-"...)
	}
	b = append(b, ' ')
	if len(s.ctype) > 0 {
		b = appendQuoted(b, s.ctype)
	} else {
		b = append(b, '-')
	}
	if s.h2 != nil {
		b = append(b, " HTTP/2.0"...) // the protocol, after the fields of Squid's format
	}
	if s.errKind != "" {
		b = append(b, " error:"...)
		b = append(b, s.errKind...)
	}
	return append(b, '\n')
}

// appendCombined renders the combined log format, then the result code, the upstream and the
// duration in milliseconds.
func appendCombined(b []byte, s *slot, dur time.Duration) []byte {
	b = append(b, s.c.ipStr...)
	b = append(b, " - "...)
	b = appendDash(b, s.user)
	b = append(b, " ["...)
	b = time.Now().AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendMethod(b, s)
	b = append(b, ' ')
	if h := s.head; h != nil {
		b = appendQuoted(b, h.Target())
		b = append(b, ' ')
		b = append(b, protoName(h)...)
	} else if s.h2 != nil {
		b = appendQuoted(b, s.req.RequestURI)
		b = append(b, " HTTP/2.0"...)
	} else {
		b = append(b, "- -"...)
	}
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(s.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, s.bytesOut, 10)
	var ref, ua []byte
	if h := s.head; h != nil {
		ref, ua = h.Get("Referer"), h.Get("User-Agent")
	} else if s.h2 != nil {
		ref, ua = []byte(s.req.Header.Get("Referer")), []byte(s.req.Header.Get("User-Agent"))
	}
	b = append(b, " \""...)
	b = appendQuoted(b, orDash(ref))
	b = append(b, "\" \""...)
	b = appendQuoted(b, orDash(ua))
	b = append(b, "\" "...)
	b = append(b, resultCode(s).String()...)
	b = append(b, ' ')
	b = appendDash(b, s.upstream)
	b = append(b, ' ')
	b = strconv.AppendInt(b, dur.Milliseconds(), 10)
	b = append(b, "ms"...)
	if s.errKind != "" {
		b = append(b, " error:"...)
		b = append(b, s.errKind...)
	}
	return append(b, '\n')
}

// appendMethod appends the request method ("-" when the request was unreadable).
func appendMethod(b []byte, s *slot) []byte {
	if s.head == nil {
		if s.h2 != nil {
			return appendQuoted(b, s.req.Method)
		}
		return append(b, '-')
	}
	return appendQuoted(b, s.head.Method())
}

// appendURL appends the URL as the client named it.
func appendURL(b []byte, s *slot) []byte {
	r := s.req
	switch {
	case r == nil && s.head == nil:
		return append(b, "error:invalid-request"...)
	case r == nil && s.head.Target()[0] != '/': // a lean absolute-form request
		return appendQuoted(b, s.head.Target())
	case r == nil: // a lean origin-form request, with a Host
		b = append(b, s.c.scheme()...)
		b = appendQuoted(b, s.head.Host())
		return appendQuoted(b, s.head.Target())
	case r.Method == "CONNECT":
		return appendQuoted(b, r.Host)
	case r.URL.Scheme != "" && len(r.RequestURI) > 0 && r.RequestURI[0] != '/':
		return appendQuoted(b, r.RequestURI)
	}
	b = append(b, s.c.scheme()...)
	b = appendQuoted(b, r.Host)
	return appendQuoted(b, r.RequestURI)
}

// scheme is how the access log names the URL of a reverse request on the connection:
// "https://" over TLS (the cache's key says http:// either way, so both share one object).
func (c *conn) scheme() string {
	if c.tls {
		return "https://"
	}
	return "http://"
}

// appendQuoted appends v with spaces, quotes and control bytes escaped (%xx), so one log line
// stays one line with fixed fields.
func appendQuoted[T string | []byte](b []byte, v T) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c == '"' || c == '\\' || c >= 0x7f {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// appendDash appends v, or "-" when empty.
func appendDash(b []byte, v string) []byte {
	if v == "" {
		return append(b, '-')
	}
	return appendQuoted(b, v)
}

// orDash returns v or "-".
func orDash(v []byte) []byte {
	if len(v) == 0 {
		return dash
	}
	return v
}

var dash = []byte("-")

// protoName is the request's HTTP version as on its request line.
func protoName(h *wire.RequestHead) string {
	if h.Proto10 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// appendPad3 appends n zero-padded to three digits.
func appendPad3(b []byte, n int) []byte {
	if n < 0 {
		n = 0
	}
	return append(b, byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
}

// appendRightInt appends n right-aligned in width columns.
func appendRightInt(b []byte, n int64, width int) []byte {
	var tmp [20]byte
	d := strconv.AppendInt(tmp[:0], n, 10)
	for i := len(d); i < width; i++ {
		b = append(b, ' ')
	}
	return append(b, d...)
}

// itoa is strconv.Itoa.
func itoa(n int) string { return strconv.Itoa(n) }
