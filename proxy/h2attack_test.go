package proxy

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 front end's defences, each attacked on a running proxy with raw frames
// (x/net/http2's Framer over a tls.Conn), and checked to leave the server answering others.

// h2Attacker is a raw HTTP/2 client connection: the preface and SETTINGS are sent, and a
// reader goroutine reports how the server ended the connection.
type h2Attacker struct {
	c      *tls.Conn
	fr     *http2.Framer
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	closed chan h2End
}

// h2End is how the server ended an attacker's connection: GOAWAY with a code, or a read error.
type h2End struct {
	goaway bool
	code   http2.ErrCode
	err    error
}

// String describes the end.
func (e h2End) String() string {
	if e.goaway {
		return "GOAWAY " + e.code.String()
	}
	return fmt.Sprint(e.err)
}

// dialH2Attacker connects to the proxy's TLS listener with ALPN h2 and starts the reader.
func dialH2Attacker(t *testing.T, p *tlsProxy) *h2Attacker {
	t.Helper()
	c, err := tls.Dial("tcp", p.tlsAddr, p.clientTLS("www.cdn.test", "h2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	a := &h2Attacker{c: c, fr: http2.NewFramer(c, c), closed: make(chan h2End, 1)}
	a.enc = hpack.NewEncoder(&a.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := a.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go a.read()
	return a
}

// read consumes the server's frames until GOAWAY or the end of the connection.
func (a *h2Attacker) read() {
	rf := http2.NewFramer(io.Discard, a.c)
	for {
		f, err := rf.ReadFrame()
		if err != nil {
			a.closed <- h2End{err: err}
			return
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			a.closed <- h2End{goaway: true, code: ga.ErrCode}
			return
		}
	}
}

// block HPACK-encodes header fields.
func (a *h2Attacker) block(fields ...string) []byte {
	a.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = a.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), a.hbuf.Bytes()...)
}

// ended reports how the server ended the connection, waiting at most d.
func (a *h2Attacker) ended(d time.Duration) (h2End, bool) {
	select {
	case e := <-a.closed:
		return e, true
	case <-time.After(d):
		return h2End{}, false
	}
}

// slowOrigin answers /slow/ only when released and anything else at once; it counts the
// /slow/ requests it got. The caller registers release as a cleanup after starting the proxy,
// so that the proxy's requests end before it shuts down.
func slowOrigin(t *testing.T) (o *testOrigin, slow *atomic.Int64, release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	slow = new(atomic.Int64)
	o = startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			slow.Add(1)
			<-ch
		}
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	})
	t.Cleanup(release)
	return o, slow, release
}

// TestH2RapidReset attacks with CVE-2023-44487: streams opened and reset at once, thousands of
// them, each asking for an object the origin is slow to send. At most max_concurrent_streams
// requests run (reaching the origin); the proxy ends the connection with ENHANCE_YOUR_CALM
// once the queue of reset streams grows past 4× that, and answers another client meanwhile.
func TestH2RapidReset(t *testing.T) {
	const streams = 16
	o, slow, release := slowOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), fmt.Sprintf("[proxy.http2]\nmax_concurrent_streams = %d\n", streams), Options{})
	t.Cleanup(release)
	a := dialH2Attacker(t, p)
	sent := 0
	for i := range 5000 {
		id := uint32(2*i + 1)
		err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
			BlockFragment: a.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", fmt.Sprintf("/slow/%d", i))})
		if err == nil {
			err = a.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if err != nil {
			break // the server closed the connection
		}
		sent++
	}
	end, ok := a.ended(20 * time.Second)
	if !ok {
		t.Fatalf("after %d opened-and-reset streams the connection is still open", sent)
	}
	if !end.goaway || end.code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("connection ended by %v, want GOAWAY ENHANCE_YOUR_CALM", end)
	}
	if n := counterValue(p.srv.m.h2Errors.WithLabelValues("conn_ENHANCE_YOUR_CALM_too_many_early_resets")); n < 1 {
		t.Errorf("too_many_early_resets counted %v times, want at least 1", n)
	}
	if n := slow.Load(); n > streams {
		t.Errorf("the origin got %d of the attacker's requests, want at most max_concurrent_streams = %d", n, streams)
	}
	resp, body := fetchURL(t, p.h2Client(), "https://www.cdn.test/other")
	if resp.StatusCode != 200 || body != "ok /other" {
		t.Fatalf("another client after the attack: %d %q", resp.StatusCode, body)
	}
	t.Logf("%d streams sent; connection ended by %v; %d reached the origin", sent, end, slow.Load())
}

// TestH2ContinuationFlood attacks with CVE-2024-27316: a HEADERS frame without END_HEADERS,
// then CONTINUATION frames without end. The proxy stops reading the header block once it
// exceeds max_header_list_size and ends the connection, long before the attacker's 64 MiB are
// sent; another client is answered.
func TestH2ContinuationFlood(t *testing.T) {
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{})
	a := dialH2Attacker(t, p)
	err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: false,
		BlockFragment: a.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/")})
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	for i := range 15 {
		fields = append(fields, fmt.Sprintf("x-flood-%d", i), strings.Repeat("a", 1000))
	}
	var sent int64
	start := time.Now()
	for sent < 64<<20 && time.Since(start) < 20*time.Second {
		frag := a.block(fields...) // new names each time would index; literal values stay large
		if err := a.fr.WriteContinuation(1, false, frag); err != nil {
			break
		}
		sent += int64(len(frag))
	}
	end, ok := a.ended(10 * time.Second)
	if !ok {
		t.Fatalf("after %d bytes of CONTINUATION the connection is still open", sent)
	}
	if sent >= 64<<20 {
		t.Errorf("the proxy read all %d bytes of the endless header block", sent)
	}
	resp, body := fetchURL(t, p.h2Client(), "https://www.cdn.test/after")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "object /after") {
		t.Fatalf("another client after the flood: %d %q", resp.StatusCode, body)
	}
	t.Logf("flood ended after %d bytes by %v", sent, end)
}

// FuzzAddFields: a serialised head of any shape becomes an HTTP/2 response header without a
// panic and without the connection-specific fields HTTP/2 forbids.
func FuzzAddFields(f *testing.F) {
	f.Add([]byte("Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n"))
	f.Add([]byte("Age: 3\r\nCache-Status: outpost; hit\r\n"))
	f.Add([]byte(":bad\r\nNoColon\r\n\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked"))
	f.Add([]byte(""))
	f.Add([]byte("connection: close\r\nte: trailers\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := http.Header{}
		addFields(h, b, b[len(b)/2:])
		for name := range h {
			if h2Forbidden(textproto.CanonicalMIMEHeaderKey(name)) {
				t.Errorf("connection-specific %s kept from %q", name, b)
			}
		}
	})
}
