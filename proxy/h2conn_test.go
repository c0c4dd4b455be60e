package proxy

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 connection layer (h2conn.go) against raw frames: the RFC 9113 rules a server
// must enforce, flow control, and a fuzz test of arbitrary frame sequences.

// h2Raw is a raw HTTP/2 client connection whose reader hands every frame it reads over, as a
// copy, on frames (closed when the connection ends).
type h2Raw struct {
	*h2Attacker
	frames chan h2Seen
}

// h2Seen is a frame the client read: its type, stream, flags, error code (GOAWAY, RST_STREAM)
// and payload (DATA, PING).
type h2Seen struct {
	typ    http2.FrameType
	id     uint32
	flags  http2.Flags
	code   http2.ErrCode
	data   []byte
	status string // HEADERS: :status
}

// String describes the frame.
func (f h2Seen) String() string {
	return fmt.Sprintf("%v stream=%d flags=%v code=%v len=%d", f.typ, f.id, f.flags, f.code, len(f.data))
}

// dialH2Raw connects with ALPN h2, sends the preface and settings, and starts the reader.
func dialH2Raw(t *testing.T, p *tlsProxy, settings ...http2.Setting) *h2Raw {
	t.Helper()
	c, err := tls.Dial("tcp", p.tlsAddr, p.clientTLS("www.cdn.test", "h2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	a := &h2Attacker{c: c, fr: http2.NewFramer(c, c)}
	a.fr.AllowIllegalWrites = true
	a.enc = hpack.NewEncoder(&a.hbuf)
	r := &h2Raw{h2Attacker: a, frames: make(chan h2Seen, 1024)}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := a.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	go r.read()
	return r
}

// read copies the server's frames to frames until the connection ends.
func (r *h2Raw) read() {
	defer close(r.frames)
	fr := http2.NewFramer(io.Discard, r.c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		s := h2Seen{typ: f.Header().Type, id: f.Header().StreamID, flags: f.Header().Flags}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			s.code = f.ErrCode
		case *http2.RSTStreamFrame:
			s.code = f.ErrCode
		case *http2.DataFrame:
			s.data = append([]byte(nil), f.Data()...)
		case *http2.PingFrame:
			s.data = append([]byte(nil), f.Data[:]...)
		case *http2.MetaHeadersFrame:
			s.status = f.PseudoValue("status")
		}
		r.frames <- s
	}
}

// await returns the first frame read that match accepts, failing after a deadline.
func (r *h2Raw) await(t *testing.T, what string, match func(h2Seen) bool) h2Seen {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case f, ok := <-r.frames:
			if !ok {
				t.Fatalf("connection ended before %s; read: %s", what, strings.Join(seen, "; "))
			}
			if match(f) {
				return f
			}
			seen = append(seen, f.String())
		case <-deadline:
			t.Fatalf("no %s within 10s; read: %s", what, strings.Join(seen, "; "))
		}
	}
}

// get sends a GET for path on stream id, ending the stream.
func (r *h2Raw) get(id uint32, path string) error {
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
		BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", path)})
}

// post opens stream id with a POST whose body is still to come.
func (r *h2Raw) post(id uint32, path string) error {
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
		BlockFragment: r.block(":method", "POST", ":scheme", "https", ":authority", "www.cdn.test", ":path", path)})
}

// TestH2ConnectionRules sends what RFC 9113 forbids and checks the answer: GOAWAY with the
// connection error's code, or RST_STREAM with the stream error's; then another client is
// served.
func TestH2ConnectionRules(t *testing.T) {
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{Cache: newRealCache(t)})
	type want struct {
		goaway bool // a connection error (else a stream error)
		code   http2.ErrCode
	}
	cases := []struct {
		name string
		send func(r *h2Raw) error
		want want
	}{
		{"DATA on stream 0", func(r *h2Raw) error { return r.fr.WriteData(0, false, []byte("x")) }, want{true, http2.ErrCodeProtocol}},
		{"HEADERS on stream 0", func(r *h2Raw) error { return r.get(0, "/") }, want{true, http2.ErrCodeProtocol}},
		{"RST_STREAM on stream 0", func(r *h2Raw) error { return r.fr.WriteRSTStream(0, http2.ErrCodeCancel) }, want{true, http2.ErrCodeProtocol}},
		{"PING on a stream", func(r *h2Raw) error {
			return r.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8))
		}, want{true, http2.ErrCodeProtocol}},
		{"SETTINGS on a stream", func(r *h2Raw) error {
			return r.fr.WriteRawFrame(http2.FrameSettings, 0, 1, nil)
		}, want{true, http2.ErrCodeProtocol}},
		{"even stream id", func(r *h2Raw) error { return r.get(2, "/") }, want{true, http2.ErrCodeProtocol}},
		{"decreasing stream ids", func(r *h2Raw) error {
			if err := r.get(5, "/a"); err != nil {
				return err
			}
			return r.get(3, "/b")
		}, want{true, http2.ErrCodeProtocol}},
		{"DATA on an idle stream", func(r *h2Raw) error { return r.fr.WriteData(7, false, []byte("x")) }, want{true, http2.ErrCodeProtocol}},
		{"DATA on a closed stream", func(r *h2Raw) error {
			if err := r.get(1, "/closed"); err != nil {
				return err
			}
			return r.fr.WriteData(1, false, []byte("x"))
		}, want{false, http2.ErrCodeStreamClosed}},
		{"connection window overflow", func(r *h2Raw) error { return r.fr.WriteWindowUpdate(0, 1<<31-1) }, want{true, http2.ErrCodeFlowControl}},
		{"stream window overflow", func(r *h2Raw) error {
			if err := r.post(1, "/echo"); err != nil {
				return err
			}
			return r.fr.WriteWindowUpdate(1, 1<<31-1)
		}, want{false, http2.ErrCodeFlowControl}},
		{"WINDOW_UPDATE of 0", func(r *h2Raw) error { return r.fr.WriteWindowUpdate(0, 0) }, want{true, http2.ErrCodeProtocol}},
		{"oversized frame", func(r *h2Raw) error {
			if err := r.post(1, "/echo"); err != nil {
				return err
			}
			return r.fr.WriteData(1, false, make([]byte, 20000)) // over SETTINGS_MAX_FRAME_SIZE 16384
		}, want{true, http2.ErrCodeFrameSize}},
		{"HEADERS then not CONTINUATION", func(r *h2Raw) error {
			err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: false,
				BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/")})
			if err != nil {
				return err
			}
			return r.fr.WritePing(false, [8]byte{})
		}, want{true, http2.ErrCodeProtocol}},
		{"CONTINUATION alone", func(r *h2Raw) error { return r.fr.WriteContinuation(1, true, nil) }, want{true, http2.ErrCodeProtocol}},
		{"SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1", func(r *h2Raw) error {
			return r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		}, want{true, http2.ErrCodeFlowControl}},
		{"SETTINGS_ENABLE_PUSH 2", func(r *h2Raw) error {
			return r.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 2})
		}, want{true, http2.ErrCodeProtocol}},
		{"SETTINGS_MAX_FRAME_SIZE too small", func(r *h2Raw) error {
			return r.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100})
		}, want{true, http2.ErrCodeProtocol}},
		{"PUSH_PROMISE from the client", func(r *h2Raw) error {
			return r.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true})
		}, want{true, http2.ErrCodeProtocol}},
		{"uppercase field name", func(r *h2Raw) error {
			return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/", "X-Upper", "1")})
		}, want{false, http2.ErrCodeProtocol}},
		{"connection-specific field", func(r *h2Raw) error {
			return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/", "connection", "close")})
		}, want{false, http2.ErrCodeProtocol}},
		{"no :path", func(r *h2Raw) error {
			return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: r.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test")})
		}, want{false, http2.ErrCodeProtocol}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialH2Raw(t, p)
			if err := tc.send(r); err != nil {
				t.Fatal(err)
			}
			typ := http2.FrameRSTStream
			if tc.want.goaway {
				typ = http2.FrameGoAway
			}
			f := r.await(t, typ.String(), func(f h2Seen) bool {
				return f.typ == http2.FrameGoAway || f.typ == http2.FrameRSTStream && f.code != http2.ErrCodeNo
			})
			if f.typ != typ || f.code != tc.want.code {
				t.Errorf("got %v, want %v %v", f, typ, tc.want.code)
			}
		})
	}
	resp, body := fetchURL(t, p.h2Client(), "https://www.cdn.test/after")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "object /after") {
		t.Fatalf("another client afterwards: %d %q", resp.StatusCode, body)
	}
}

// TestH2BadPreface: a connection that chose h2 but does not open with the client preface is
// closed without an answer.
func TestH2BadPreface(t *testing.T) {
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{})
	c, err := tls.Dial("tcp", p.tlsAddr, p.clientTLS("www.cdn.test", "h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: www.cdn.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection is still open after a bad preface")
	}
	if bytes.Contains(got, []byte("HTTP/1.1")) {
		t.Errorf("answered a bad preface as HTTP/1.1: %q", got)
	}
}

// TestH2FlowControl: the proxy never sends more DATA than the client's windows allow, sends
// the rest as WINDOW_UPDATEs arrive (a memory hit, served inline, included), acknowledges
// PING, and refuses streams beyond max_concurrent_streams.
func TestH2FlowControl(t *testing.T) {
	body := strings.Repeat("x", 1000)
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, body)
	})
	p := startTLSProxy(t, reverseRoute(o), "[proxy.http2]\nmax_concurrent_streams = 2\n", Options{Cache: newRealCache(t)})
	for _, path := range []string{"/miss", "/miss"} { // the second is a hit
		r := dialH2Raw(t, p, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
		if err := r.get(1, path); err != nil {
			t.Fatal(err)
		}
		got := 0
		r.await(t, "100 bytes of DATA", func(f h2Seen) bool {
			if f.typ == http2.FrameData {
				got += len(f.data)
			}
			return got >= 100
		})
		if got != 100 {
			t.Fatalf("%s: %d bytes of DATA with a stream window of 100", path, got)
		}
		if err := r.fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}); err != nil {
			t.Fatal(err)
		}
		r.await(t, "PING ack", func(f h2Seen) bool {
			if f.typ == http2.FrameData {
				t.Fatalf("%s: DATA beyond the window: %v", path, f)
			}
			return f.typ == http2.FramePing && f.flags.Has(http2.FlagPingAck) && f.data[0] == 1
		})
		if err := r.fr.WriteWindowUpdate(1, 900); err != nil {
			t.Fatal(err)
		}
		r.await(t, "the rest", func(f h2Seen) bool {
			if f.typ == http2.FrameData {
				got += len(f.data)
			}
			return f.typ == http2.FrameData && f.flags.Has(http2.FlagDataEndStream)
		})
		if got != len(body) {
			t.Errorf("%s: %d bytes, want %d", path, got, len(body))
		}
	}
	r := dialH2Raw(t, p)
	for _, id := range []uint32{1, 3, 5} {
		if err := r.post(id, "/wait"); err != nil {
			t.Fatal(err)
		}
	}
	f := r.await(t, "RST_STREAM", func(f h2Seen) bool { return f.typ == http2.FrameRSTStream })
	if f.id != 5 || f.code != http2.ErrCodeRefusedStream {
		t.Errorf("third stream with max_concurrent_streams = 2: %v, want REFUSED_STREAM on 5", f)
	}
}

// FuzzH2Frames: any bytes after the preface and SETTINGS end in frames answered, a stream or
// connection error, or the connection closed — never a panic or a hang — and the proxy
// serves the next client.
func FuzzH2Frames(f *testing.F) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fr.AllowIllegalWrites = true
	block := func(fields ...string) []byte { // a fresh encoder: each seed is a connection
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	seed := func(write func()) {
		buf.Reset()
		write()
		f.Add(append([]byte(nil), buf.Bytes()...))
	}
	get := block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/f")
	seed(func() {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndStream: true, EndHeaders: true})
	})
	seed(func() {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get[:3], EndStream: true})
		_ = fr.WriteContinuation(1, true, get[3:])
	})
	seed(func() {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(":method", "POST", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/p"), EndHeaders: true})
		_ = fr.WriteData(3, false, []byte("abc"))
		_ = fr.WriteDataPadded(3, false, []byte("def"), make([]byte, 10))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block("x-trailer", "1"), EndStream: true, EndHeaders: true})
	})
	seed(func() {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndStream: true, EndHeaders: true})
		_ = fr.WriteWindowUpdate(1, 10)
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
		_ = fr.WritePing(false, [8]byte{})
		_ = fr.WritePriority(1, http2.PriorityParam{StreamDep: 1})
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	seed(func() {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":method", "CONNECT", ":authority", "127.0.0.1:1"), EndHeaders: true})
		_ = fr.WriteData(1, true, []byte("tunnel"))
	})
	seed(func() { _ = fr.WriteRawFrame(0xff, 0, 0, []byte("unknown")) })
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	o := cacheableOrigin(f)
	p := startProxy(f, reverseRoute(o)+"[proxy.http2]\nh2c = true\n", Options{Cache: newRealCache(f)})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var out bytes.Buffer
		w := http2.NewFramer(&out, nil)
		out.WriteString(http2.ClientPreface)
		_ = w.WriteSettings()
		out.Write(b)
		_ = w.WriteGoAway(0, http2.ErrCodeNo, nil) // the client is done: the proxy closes after its streams
		if _, err := c.Write(out.Bytes()); err != nil {
			return
		}
		_, err = io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the connection is still open 5s after %q", b)
		}
	})
}

// FuzzPlainPath: a target plainPath accepts makes the URL url.ParseRequestURI makes.
func FuzzPlainPath(f *testing.F) {
	for _, s := range []string{"/", "/obj", "/a/b?x=1&y=2", "/a?", "/a!b", "/a b", "/%41", "/a?b#c", "/a;b=c@d", "/?", "/a?b?c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if target == "" || target[0] != '/' || !plainPath(target) {
			return
		}
		want, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatalf("plainPath accepted %q, which url.ParseRequestURI refuses: %v", target, err)
		}
		p, q, _ := strings.Cut(target, "?")
		got := url.URL{Path: p, RawQuery: q, ForceQuery: q == "" && strings.HasSuffix(target, "?")}
		if got != *want {
			t.Errorf("%q: %#v, url.ParseRequestURI %#v", target, got, *want)
		}
	})
}

// TestH2HeaderBlockLimits: a header list over max_header_list_size (64 KiB by default) but
// sent within bounds is answered 431 and the connection goes on; a block in too many
// CONTINUATION frames, or one HPACK cannot decode, ends the connection.
func TestH2HeaderBlockLimits(t *testing.T) {
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{})
	t.Run("431", func(t *testing.T) {
		r := dialH2Raw(t, p)
		block := r.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/big",
			"x-big", strings.Repeat("a", 40000), "x-big2", strings.Repeat("b", 40000))
		first, rest := block[:16000], block[16000:]
		if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}); err != nil {
			t.Fatal(err)
		}
		for len(rest) > 0 {
			n := min(len(rest), 16000)
			if err := r.fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		f := r.await(t, "HEADERS", func(f h2Seen) bool { return f.typ == http2.FrameHeaders || f.typ == http2.FrameGoAway })
		if f.typ != http2.FrameHeaders || f.status != "431" || f.id != 1 {
			t.Fatalf("an 80 KB header list: %v status %q, want 431 on stream 1", f, f.status)
		}
		if err := r.get(3, "/ok"); err != nil {
			t.Fatal(err)
		}
		f = r.await(t, "HEADERS", func(f h2Seen) bool { return f.typ == http2.FrameHeaders || f.typ == http2.FrameGoAway })
		if f.typ != http2.FrameHeaders || f.status != "200" || f.id != 3 {
			t.Fatalf("the next request: %v status %q, want 200 on stream 3", f, f.status)
		}
	})
	cases := []struct {
		name string
		send func(r *h2Raw) error
		code http2.ErrCode
	}{
		{"too many CONTINUATION frames", func(r *h2Raw) error {
			block := r.block(":method", "GET", ":scheme", "https", ":authority", "www.cdn.test", ":path", "/", "x-a", strings.Repeat("a", 100))
			if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1], EndStream: true}); err != nil {
				return err
			}
			for i := 1; i < len(block); i++ {
				if err := r.fr.WriteContinuation(1, i == len(block)-1, block[i:i+1]); err != nil {
					return err
				}
			}
			return nil
		}, http2.ErrCodeEnhanceYourCalm},
		{"undecodable HPACK", func(r *h2Raw) error {
			return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EndStream: true, EndHeaders: true})
		}, http2.ErrCodeCompression},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialH2Raw(t, p)
			if err := tc.send(r); err != nil {
				t.Fatal(err)
			}
			f := r.await(t, "GOAWAY", func(f h2Seen) bool { return f.typ == http2.FrameGoAway })
			if f.code != tc.code {
				t.Errorf("GOAWAY %v, want %v", f.code, tc.code)
			}
		})
	}
}

// TestH2WriteStall: a streamed response to a client that gives no window is reset after
// write_timeout (its stream's place is freed), and the connection goes on.
func TestH2WriteStall(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, strings.Repeat("x", 1000))
	})
	p := startTLSProxy(t, "write_timeout = \"300ms\"\n"+reverseRoute(o), "", Options{})
	r := dialH2Raw(t, p, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	if err := r.get(1, "/stream"); err != nil {
		t.Fatal(err)
	}
	f := r.await(t, "RST_STREAM", func(f h2Seen) bool {
		return f.typ == http2.FrameRSTStream || f.typ == http2.FrameGoAway || f.typ == http2.FrameData && len(f.data) > 0
	})
	if f.typ != http2.FrameRSTStream || f.id != 1 || f.code != http2.ErrCodeCancel {
		t.Fatalf("got %v, want RST_STREAM CANCEL on stream 1", f)
	}
	if err := r.fr.WritePing(false, [8]byte{9}); err != nil {
		t.Fatal(err)
	}
	r.await(t, "PING ack", func(f h2Seen) bool { return f.typ == http2.FramePing && f.flags.Has(http2.FlagPingAck) })
}

// TestH2WaitingStreamsLeaveTheReader: streams that wait upstream (ten for one slow object,
// collapsed in the cache or fetched) do not hold up the connection's reader: a later request
// on the same connection is answered while they wait, and they all complete once the origin
// answers.
func TestH2WaitingStreamsLeaveTheReader(t *testing.T) {
	o, slow, release := slowOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{Cache: newRealCache(t)})
	t.Cleanup(release)
	r := dialH2Raw(t, p)
	for id := uint32(1); id <= 19; id += 2 {
		if err := r.get(id, "/slow/a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.get(21, "/fast"); err != nil {
		t.Fatal(err)
	}
	ended := map[uint32]bool{}
	r.await(t, "/fast answered", func(f h2Seen) bool {
		if f.typ == http2.FrameData && f.flags.Has(http2.FlagDataEndStream) {
			ended[f.id] = true
		}
		return ended[21]
	})
	if len(ended) != 1 || slow.Load() < 1 {
		t.Fatalf("before the origin answered /slow/a: streams ended %v, origin requests for it %d", ended, slow.Load())
	}
	release()
	r.await(t, "every /slow/a stream ended", func(f h2Seen) bool {
		if f.typ == http2.FrameRSTStream || f.typ == http2.FrameGoAway {
			t.Fatalf("%v", f)
		}
		if f.typ == http2.FrameData && f.flags.Has(http2.FlagDataEndStream) {
			ended[f.id] = true
		}
		return len(ended) == 11
	})
}
