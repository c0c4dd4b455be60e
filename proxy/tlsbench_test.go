package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Benchmarks of the TLS and HTTP/2 front ends on 1 KiB hits from the project's cache. The
// client runs in the benchmark's process, so its TLS work (and, for HTTP/2, its framing) is in
// the numbers too: compare them with BenchmarkRealCacheHitKeepAlive (plain HTTP/1.1), not with
// a peer; the side-by-side run is `outpost bench compare` (bench/).

// cachedObjectProxy starts a TLS proxy whose cache holds a 1 KiB object at /obj.
func cachedObjectProxy(b *testing.B) *tlsProxy {
	body := bytes.Repeat([]byte("x"), 1024)
	o := startOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	p := startTLSProxy(b, "[proxy.access_log]\ndestination = \"off\"\n"+reverseRoute(o), "", Options{Cache: newRealCache(b)})
	c := p.h1Client()
	waitFor(b, "the object cached", func() bool {
		resp, _ := fetchURL(b, c, "https://www.cdn.test/obj")
		return resp.Header.Get("Age") != ""
	})
	return p
}

// BenchmarkTLSHitKeepAlive: HTTP/1.1 over TLS 1.3, one keep-alive connection, one request at a
// time (the plain twin is BenchmarkRealCacheHitKeepAlive).
func BenchmarkTLSHitKeepAlive(b *testing.B) {
	p := cachedObjectProxy(b)
	c, err := tls.Dial("tcp", p.tlsAddr, p.clientTLS("www.cdn.test", "http/1.1"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /obj HTTP/1.1\r\nHost: www.cdn.test\r\n\r\n")
	respLen := tlsResponseLen(b, c, req)
	buf := make([]byte, respLen)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// tlsResponseLen sends req once on c and returns the length of the response (a 1 KiB body).
func tlsResponseLen(b *testing.B, c *tls.Conn, req []byte) int {
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("\r\n\r\n")) || len(got)-bytes.Index(got, []byte("\r\n\r\n"))-4 < 1024 {
		n, err := c.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !strings.Contains(string(got), "\r\nAge: ") {
		b.Fatalf("not a hit:\n%s", got)
	}
	return len(got)
}

// BenchmarkTLSHandshake: a new TLS 1.3 connection (no resumption) per 1 KiB hit, as h2load
// -n N -c N would make them; both sides' handshakes run here.
func BenchmarkTLSHandshake(b *testing.B) {
	p := cachedObjectProxy(b)
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "www.cdn.test", NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS13}
	req := []byte("GET /obj HTTP/1.1\r\nHost: www.cdn.test\r\nConnection: close\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		c, err := tls.Dial("tcp", p.tlsAddr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if n, _ := io.Copy(io.Discard, c); n < 1024 {
			b.Fatalf("short response: %d bytes", n)
		}
		c.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conn/s")
}

// BenchmarkH2Hit: HTTP/2, one connection, 10 concurrent streams at a time (h2load -m 10), a raw
// client (x/net/http2's Framer, one HPACK block reused) so the client costs little.
func BenchmarkH2Hit(b *testing.B) {
	p := cachedObjectProxy(b)
	c, err := tls.Dial("tcp", p.tlsAddr, p.clientTLS("www.cdn.test", "h2"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	fr := http2.NewFramer(c, c)
	fr.SetReuseFrames()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		b.Fatal(err)
	}
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	_ = fr.WriteWindowUpdate(0, 1<<30)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "www.cdn.test"}, {":path", "/obj"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hb.Bytes()
	const depth = 10
	id := uint32(1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += depth {
		n := min(depth, b.N-done)
		for range n {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
				b.Fatal(err)
			}
			id += 2
		}
		for ended := 0; ended < n; {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				if f.StreamEnded() {
					ended++
				}
			case *http2.HeadersFrame:
				if f.StreamEnded() {
					ended++
				}
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				b.Fatalf("stream failed: %v", f)
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					_ = fr.WritePing(true, f.Data)
				}
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
