package proxy

import (
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// decodedBody removes the transfer codings an origin applied before chunked (wire.Codings:
// gzip, deflate), last applied first, so what the client and the cache get is the content
// (RFC 9112 §7: transfer codings belong to one hop). The decoders start on the first Read (a
// gzip reader reads its header at once). At the end of the content the rest of the chunked
// body (its last chunk, trailers) is read, so the connection can go back to the pool.
type decodedBody struct {
	raw     io.ReadCloser // the framed (unchunked) body
	codings []wire.Coding
	r       io.Reader // the decoded content, nil until the first Read
	err     error
}

// newDecodedBody wraps body for the codings (a copy: the head's slice is reused).
func newDecodedBody(body io.ReadCloser, codings []wire.Coding) *decodedBody {
	return &decodedBody{raw: body, codings: append([]wire.Coding(nil), codings...)}
}

// Read reads decoded content.
func (d *decodedBody) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.r == nil {
		if d.r, d.err = d.decoders(); d.err != nil {
			return 0, d.err
		}
	}
	n, err := d.r.Read(p)
	switch {
	case err == io.EOF:
		_, _ = io.Copy(io.Discard, io.LimitReader(d.raw, 64<<10)) // the framing's end
		d.err = io.EOF
	case err != nil:
		d.err = fmt.Errorf("proxy: decoding the origin's transfer coding: %w", err)
		err = d.err
	}
	return n, err
}

// decoders stacks a decoder per coding over the raw body, the last applied outermost first.
func (d *decodedBody) decoders() (io.Reader, error) {
	var r io.Reader = d.raw
	for i := len(d.codings) - 1; i >= 0; i-- {
		var err error
		switch d.codings[i] {
		case wire.CodingGzip:
			r, err = gzip.NewReader(r)
		case wire.CodingDeflate:
			r, err = zlib.NewReader(r)
		}
		if err != nil {
			return nil, fmt.Errorf("proxy: decoding the origin's transfer coding: %w", err)
		}
	}
	return r, nil
}

// Close closes the raw body (its connection is kept only if the body was read to the end).
func (d *decodedBody) Close() error { return d.raw.Close() }
