package bench

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRespReader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wire    string
		head    bool
		status  int
		body    string
		close   bool
		cache   cacheOutcome
		wantErr error
	}{
		{name: "content-length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "hello"},
		{name: "chunked", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: a\r\n\r\n", status: 200, body: "hello"},
		{name: "bare LF", wire: "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", status: 200, body: "hi"},
		{name: "until close", wire: "HTTP/1.1 200 OK\r\n\r\nabc", status: 200, body: "abc", close: true},
		{name: "http/1.0 closes", wire: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", status: 200, body: "a", close: true},
		{name: "http/1.0 keep-alive", wire: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na", status: 200, body: "a"},
		{name: "connection close", wire: "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status: 404, close: true},
		{name: "304 has no body", wire: "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", status: 304},
		{name: "HEAD has no body", wire: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head: true, status: 200},
		{name: "100 continue skipped", wire: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", status: 200, body: "z"},
		{name: "cache hit", wire: "HTTP/1.1 200 OK\r\nCache-Status: Outpost; hit; ttl=30\r\nContent-Length: 0\r\n\r\n", status: 200, cache: cacheHit},
		{name: "cache miss", wire: "HTTP/1.1 200 OK\r\ncache-status: Outpost; fwd=uri-miss; stored\r\nContent-Length: 0\r\n\r\n", status: 200, cache: cacheMiss},
		{name: "last cache wins", wire: "HTTP/1.1 200 OK\r\nCache-Status: Origin; hit, Outpost; fwd=stale\r\nContent-Length: 0\r\n\r\n", status: 200, cache: cacheMiss},
		{name: "bad status line", wire: "HTTP/2 200 OK\r\n\r\n", wantErr: errProtocol},
		{name: "bad content-length", wire: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: errProtocol},
		{name: "conflicting content-length", wire: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", wantErr: errProtocol},
		{name: "bad chunk size", wire: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantErr: errProtocol},
		{name: "header without colon", wire: "HTTP/1.1 200 OK\r\nBroken\r\n\r\n", wantErr: errProtocol},
		{name: "truncated body", wire: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated head", wire: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "empty", wire: "", wantErr: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRespReader(strings.NewReader(tc.wire), true)
			var resp response
			err := r.read(tc.head, &resp)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != tc.status || string(resp.body) != tc.body || resp.close != tc.close || resp.cache != tc.cache {
				t.Errorf("got status %d body %q close %v cache %v, want %d %q %v %v",
					resp.status, resp.body, resp.close, resp.cache, tc.status, tc.body, tc.close, tc.cache)
			}
			if resp.bodyLen != int64(len(tc.body)) {
				t.Errorf("bodyLen %d, want %d", resp.bodyLen, len(tc.body))
			}
		})
	}
}

func TestRespReaderPipelined(t *testing.T) {
	wire := strings.Repeat("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", 3) +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
	r := newRespReader(strings.NewReader(wire), false)
	var resp response
	for i := range 4 {
		if err := r.read(false, &resp); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
	}
	if err := r.read(false, &resp); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last response: %v, want EOF", err)
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		name, url, proxy string
		want             target
		bad              bool
	}{
		{name: "origin form", url: "http://127.0.0.1:8081/page/3?size=10", want: target{"127.0.0.1:8081", "127.0.0.1:8081", "/page/3?size=10", false}},
		{name: "default port", url: "http://localhost/", want: target{"localhost:80", "localhost", "/", false}},
		{name: "through proxy", url: "http://127.0.0.1:8081/x", proxy: "http://127.0.0.1:8080", want: target{"127.0.0.1:8080", "127.0.0.1:8081", "http://127.0.0.1:8081/x", false}},
		{name: "https", url: "https://example.com/a", want: target{"example.com:443", "example.com", "/a", true}},
		{name: "https with port", url: "https://127.0.0.1:8443/a", want: target{"127.0.0.1:8443", "127.0.0.1:8443", "/a", true}},
		{name: "https through proxy refused", url: "https://example.com/", proxy: "http://127.0.0.1:8080", bad: true},
		{name: "ftp refused", url: "ftp://example.com/", bad: true},
		{name: "no host", url: "/x", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTarget(tc.url, tc.proxy)
			if tc.bad != (err != nil) {
				t.Fatalf("err = %v, bad = %v", err, tc.bad)
			}
			if !tc.bad && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzRespReader feeds arbitrary bytes to the response reader: it must return responses or
// errors, never panic or loop.
func FuzzRespReader(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nCache-Status: a; hit, b; fwd=miss;stored\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
		"HTTP/1.1 999 X\r\nContent-Length: 99999999999\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, wire []byte, keep bool) {
		r := newRespReader(strings.NewReader(string(wire)), keep)
		var resp response
		for range 10 {
			if err := r.read(false, &resp); err != nil {
				return
			}
			if resp.status < 100 || resp.status > 999 || resp.bodyLen < 0 {
				t.Fatalf("impossible response %+v", resp)
			}
		}
	})
}

// BenchmarkRespReader measures the load generator's per-response parsing cost.
func BenchmarkRespReader(b *testing.B) {
	one := "HTTP/1.1 200 OK\r\nDate: Mon, 23 Nov 2026 02:40:34 GMT\r\nContent-Type: application/octet-stream\r\n" +
		"Cache-Control: public, max-age=3600\r\nCache-Status: outpost; hit; ttl=3599\r\nContent-Length: 1024\r\n\r\n" +
		strings.Repeat("x", 1024)
	wire := strings.Repeat(one, 64)
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	sr := strings.NewReader(wire)
	r := newRespReader(sr, false)
	var resp response
	for i := 0; b.Loop(); i++ {
		if i%64 == 0 {
			sr.Reset(wire)
			r.br.Reset(sr)
		}
		if err := r.read(false, &resp); err != nil {
			b.Fatal(err)
		}
	}
}
