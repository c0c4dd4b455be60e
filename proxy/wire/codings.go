package wire

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
)

// Transfer codings of responses (RFC 9112 §6.1, §7). A request may carry only a single
// "chunked" (the smuggling defences, parse.go). A response may carry a list — on one line or
// several, in order — whose final coding is chunked and whose others are ones the client
// decodes (gzip, x-gzip, deflate): the proxy removes them all (DecodeCodings; transfer codings
// belong to one hop) and the cache stores the decoded content. Any other coding, or chunked not last, is an
// *Error (502): RFC 9112 §6.3 would have such a body read until the close, which Outpost does
// not accept from an origin.

// Coding is a transfer coding other than chunked that a response may carry.
type Coding uint8

// The codings a response may carry before chunked.
const (
	CodingGzip    Coding = iota + 1 // gzip, x-gzip (RFC 9110 §8.4.1.3)
	CodingDeflate                   // deflate: zlib (RFC 9110 §8.4.1.2)
)

// maxCodings bounds the codings of one response (a list of hundreds is an attack, not a use).
const maxCodings = 4

// Codings returns a response's transfer codings before chunked, in the order applied (decode
// them last to first). Empty for chunked alone and for requests.
func (h *Head) Codings() []Coding { return h.codings }

// countResponseTE reads one Transfer-Encoding line of a response.
func (h *Head) countResponseTE(value []byte) error {
	for v := value; len(v) > 0; {
		var m []byte
		m, v, _ = bytes.Cut(v, []byte{','})
		m = bytes.Trim(m, " \t")
		switch {
		case len(m) == 0: // an empty list element (RFC 9110 §5.6.1)
		case h.Chunked:
			return bad("transfer coding %q after chunked (chunked must be the final coding)", m)
		case equalFold(m, "chunked"):
			h.Chunked = true
		case len(h.codings) >= maxCodings:
			return bad("more than %d transfer codings", maxCodings)
		case equalFold(m, "gzip"), equalFold(m, "x-gzip"):
			h.codings = append(h.codings, CodingGzip)
		case equalFold(m, "deflate"):
			h.codings = append(h.codings, CodingDeflate)
		default:
			return bad("unsupported transfer coding %q (chunked, optionally after gzip or deflate)", m)
		}
	}
	return nil
}

// DecodeCodings returns body with the transfer codings removed, the last applied first (the
// body as framed: chunked already undone by BodyReader), so what is read is the content. The
// decoders start on the first Read (a gzip reader reads its header at once). At the end of the
// content the rest of the framed body (the last chunk, trailers) is read, so a connection can
// be reused. Content that does not decode is a read error. Close closes body.
func DecodeCodings(body io.ReadCloser, codings []Coding) io.ReadCloser {
	return &decodedBody{raw: body, codings: append([]Coding(nil), codings...)}
}

// decodedBody is DecodeCodings' reader.
type decodedBody struct {
	raw     io.ReadCloser
	codings []Coding
	r       io.Reader // the decoded content, nil until the first Read
	err     error
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
		d.err = fmt.Errorf("wire: decoding the transfer coding: %w", err)
		err = d.err
	}
	return n, err
}

// decoders stacks a decoder per coding over the raw body, the last applied outermost.
func (d *decodedBody) decoders() (io.Reader, error) {
	var r io.Reader = d.raw
	for i := len(d.codings) - 1; i >= 0; i-- {
		var err error
		switch d.codings[i] {
		case CodingGzip:
			r, err = gzip.NewReader(r)
		case CodingDeflate:
			r, err = zlib.NewReader(r) // "deflate" is the zlib format (RFC 9110 §8.4.1.2)
		}
		if err != nil {
			return nil, fmt.Errorf("wire: decoding the transfer coding: %w", err)
		}
	}
	return r, nil
}

// Close closes the raw body.
func (d *decodedBody) Close() error { return d.raw.Close() }
