package cache

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// wireRoundTrip is the harness's fetch for cases whose origin frames responses in ways
// net/http's Transport refuses (transfer codings before chunked): it reads the response with
// proxy/wire as the proxy's upstream client does — the head (interim responses skipped), the
// framing, and the transfer codings removed by wire.DecodeCodings — and hands the cache what
// the proxy's Fetcher would: the content, without hop-by-hop fields.
func (h *harness) wireRoundTrip(out *http.Request) (*http.Response, error) {
	nc, err := net.DialTimeout("tcp", h.target.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := out.Write(nc); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReader(nc)
	var head wire.ResponseHead
	for interim := 0; ; interim++ {
		if err := head.Read(br, wire.Limits{MaxBytes: 64 << 10}); err != nil {
			nc.Close()
			return nil, fmt.Errorf("harness: reading the response head: %w", err)
		}
		if !head.Interim() {
			break
		}
		if interim >= wire.MaxInterim {
			nc.Close()
			return nil, fmt.Errorf("harness: more than %d interim responses", wire.MaxInterim)
		}
	}
	isHead := out.Method == http.MethodHead
	resp := &http.Response{Status: wire.StatusText(head.Status), StatusCode: head.Status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: head.Header("Transfer-Encoding"), ContentLength: head.BodyLength(isHead), Request: out}
	if head.Chunked {
		resp.Header.Del("Content-Length")
	}
	wire.StripHopByHop(resp.Header)
	framed := &wire.BodyReader{}
	framed.Reset(br, head.BodyLength(isHead), head.Chunked, nil)
	var body io.ReadCloser = connBody{framed, nc}
	if cs := head.Codings(); len(cs) > 0 && !head.Bodiless(isHead) {
		body = wire.DecodeCodings(body, cs)
	}
	resp.Body = body
	return resp, nil
}

// connBody is a framed body that closes its connection.
type connBody struct {
	r  io.Reader
	nc net.Conn
}

func (b connBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b connBody) Close() error               { return b.nc.Close() }
