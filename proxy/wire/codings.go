package wire

import "bytes"

// Transfer codings of responses (RFC 9112 §6.1, §7). A request may carry only a single
// "chunked" (the smuggling defences, parse.go). A response may carry a list — on one line or
// several, in order — whose final coding is chunked and whose others are ones the client
// decodes (gzip, x-gzip, deflate): the proxy removes them all (transfer codings belong to one
// hop) and the cache stores the decoded content. Any other coding, or chunked not last, is an
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
