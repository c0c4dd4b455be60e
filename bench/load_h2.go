package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// This file is `bench http --h2`: Connections HTTP/2 connections (TLS with ALPN h2 to
// https:// URLs, prior knowledge to http:// ones), each carrying Streams concurrent streams.
// Every stream is a loadWorker of its own (its own counters and histogram, merged at the end),
// sharing its connection's ClientConn; a lost connection is dialled again by the first stream
// that needs it.

// h2Conn is one HTTP/2 connection of the load and what it read over its lifetime.
type h2Conn struct {
	p    *loadPlan
	t    *http2.Transport
	mu   sync.Mutex
	cc   *http2.ClientConn
	wire atomic.Int64 // bytes read off the wire, over every connection it dialled
}

// h2Source yields the URLs of one stream's requests: the list in turn, or Zipf ranks.
type h2Source struct {
	urls    []string
	i       int
	z       *zipf
	rng     *rand.Rand
	tmpl    string
	rankURL func(rank int) string
}

func (s *h2Source) next() string {
	if s.z == nil {
		u := s.urls[s.i]
		s.i = (s.i + 1) % len(s.urls)
		return u
	}
	rank := s.z.draw(s.rng)
	if s.rankURL != nil {
		return s.rankURL(rank)
	}
	return zipfURL(s.tmpl, rank)
}

// h2Stream is what a loadWorker needs to run as one stream of an HTTP/2 connection.
type h2Stream struct {
	conn *h2Conn
	src  *h2Source
	copy []byte // body copy buffer
}

// concurrency is the number of concurrent requests of the whole load.
func (p *loadPlan) concurrency() int {
	if p.o.H2 {
		return p.o.Connections * max(p.o.Streams, 1)
	}
	return p.o.Connections
}

// runH2 runs the HTTP/2 load: Connections × Streams workers.
func runH2(ctx context.Context, p *loadPlan) (*LoadResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := max(p.o.Streams, 1)
	conns := make([]*h2Conn, p.o.Connections)
	// StrictMaxConcurrentStreams: a stream over the server's limit waits for a free one on its
	// own connection instead of opening another (concurrency stays connections × streams).
	t := &http2.Transport{StrictMaxConcurrentStreams: true, DisableCompression: true, AllowHTTP: true}
	for i := range conns {
		conns[i] = &h2Conn{p: p, t: t}
	}
	seed := p.o.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	workers := make([]*loadWorker, len(conns)*streams)
	var wg sync.WaitGroup
	for i := range workers {
		w := p.newWorker(i)
		src := &h2Source{urls: p.o.URLs, i: i % len(p.o.URLs), tmpl: p.o.URLs[0], rankURL: p.o.rankURL}
		if p.zipf != nil {
			src.z, src.rng = p.zipf, rand.New(rand.NewPCG(seed, uint64(i)))
		}
		w.h2 = &h2Stream{conn: conns[i/streams], src: src, copy: make([]byte, 32<<10)}
		workers[i] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.runH2(ctx) }()
	}
	stop := p.progress(ctx)
	wg.Wait()
	elapsed := time.Since(p.start)
	stop()
	for _, c := range conns {
		c.close()
	}
	r := p.merge(workers, elapsed)
	r.Bytes = 0
	for _, c := range conns {
		r.Bytes += c.wire.Load()
	}
	if s := elapsed.Seconds(); s > 0 {
		r.BytesPerSec = float64(r.Bytes) / s
	}
	return r, nil
}

// runH2 sends one request at a time on the worker's stream until the duration ends, the
// budget is spent or ctx is done.
func (w *loadWorker) runH2(ctx context.Context) {
	for ctx.Err() == nil {
		if w.finished() || w.p.claim(1) == 0 {
			return
		}
		if !w.h2Request(ctx) {
			return
		}
	}
}

// h2Request sends one request and reads its response; it reports whether to go on.
func (w *loadWorker) h2Request(ctx context.Context) bool {
	start := time.Now()
	if w.interval > 0 {
		if !w.waitUntil(ctx, w.next) {
			return false
		}
		start = w.next
		w.next = w.next.Add(w.interval)
	}
	cc, err := w.h2.conn.get(w)
	if err != nil {
		return w.pause(ctx)
	}
	rctx, cancel := context.WithDeadline(ctx, w.deadline())
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, w.h2.src.next(), nil)
	if err != nil {
		w.errors["url"]++
		return true
	}
	req.Header.Set("User-Agent", "outpost-bench")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		w.h2Fail(cc, err)
		return true
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, w.h2.copy)
	resp.Body.Close()
	if err != nil {
		w.h2Fail(cc, err)
		return true
	}
	w.resp = response{status: resp.StatusCode, bodyLen: n, wireSize: n, cache: parseCacheStatus([]byte(resp.Header.Get("Cache-Status")))}
	w.account(time.Since(start))
	return true
}

// h2Fail counts a failed stream by kind: a timeout, a stream the server reset, or a lost
// connection (which the next request dials again).
func (w *loadWorker) h2Fail(cc *http2.ClientConn, err error) {
	var se http2.StreamError
	var ne net.Error
	switch {
	case w.finished(): // cut by the end of the run
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		w.errors["timeout"]++
	case errors.As(err, &se):
		w.errors["stream reset"]++
	default:
		w.errors["read"]++
	}
	if !cc.CanTakeNewRequest() {
		w.h2.conn.drop(cc)
	}
}

// get returns the connection's ClientConn, dialling it (TCP, TLS with ALPN h2, the HTTP/2
// preface) when there is none or the last one cannot take requests. Failures are counted on
// w, the stream that dialled.
func (c *h2Conn) get(w *loadWorker) (*http2.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != nil && c.cc.CanTakeNewRequest() {
		return c.cc, nil
	}
	if c.cc != nil {
		c.cc.Close()
		c.cc = nil
	}
	raw, err := net.DialTimeout("tcp", c.p.addr, c.p.o.Timeout)
	if err != nil {
		if !w.finished() {
			w.errors["connect"]++
		}
		return nil, err
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	var conn net.Conn = countingConn{Conn: raw, n: &c.wire}
	if c.p.tls != nil {
		tc, err := w.handshake(conn)
		if err != nil {
			return nil, err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			tc.Close()
			w.errors["no h2 (ALPN)"]++
			return nil, fmt.Errorf("%s did not negotiate h2 (ALPN gave %q)", c.p.addr, p)
		}
		tc.SetDeadline(time.Time{})
		conn = tc
	}
	cc, err := c.t.NewClientConn(conn)
	if err != nil {
		conn.Close()
		w.errors["connect"]++
		return nil, err
	}
	c.cc = cc
	return cc, nil
}

// drop closes cc if it is still the connection's current one.
func (c *h2Conn) drop(cc *http2.ClientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc == cc {
		cc.Close()
		c.cc = nil
	}
}

func (c *h2Conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != nil {
		c.cc.Close()
		c.cc = nil
	}
}
