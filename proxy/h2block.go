package proxy

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Header blocks (RFC 9113 §4.3, §6.10): a HEADERS frame and the CONTINUATION frames that
// follow it until END_HEADERS, decoded by the connection's HPACK decoder as they arrive (the
// Framer checks that nothing else comes between them). Bounds against CONTINUATION floods
// (CVE-2024-27316): the block's encoded bytes at most 2 × max_header_list_size (HPACK never
// makes a field list longer than its decoded size: past that it is a flood) and at most
// h2MaxContinuations + max_header_list_size/16 KiB CONTINUATION frames, else the connection
// ends (PROTOCOL_ERROR, ENHANCE_YOUR_CALM); a decoded list over max_header_list_size is kept
// decoding (HPACK's state is the connection's) but marked truncated, and answered 431.

// h2MaxContinuations is the base of the CONTINUATION frames allowed per header block.
const h2MaxContinuations = 16

var (
	errTooManyContinuations = errors.New("proxy: h2 header block in too many CONTINUATION frames")
	errHeaderBlockTooLarge  = errors.New("proxy: h2 header block too large")
	errCompression          = errors.New("proxy: h2 HPACK decoding failed")
)

// h2Block is a header block being read, then read: its stream, END_STREAM, the decoded fields
// (the slice is the connection's, reused), and whether the list was over the limit or invalid.
type h2Block struct {
	StreamID  uint32
	endStream bool
	Fields    []hpack.HeaderField
	Truncated bool
	invalid   error

	bytes, frames int
	remain        uint32
	sawRegular    bool
}

// StreamEnded reports whether the block's HEADERS frame ended the stream.
func (b *h2Block) StreamEnded() bool { return b.endStream }

// readBlock takes a HEADERS or CONTINUATION frame; it returns the block once END_HEADERS
// arrived, nil before.
func (hc *h2conn) readBlock(f http2.Frame) (*h2Block, error) {
	b := &hc.blk
	var frag []byte
	var ended bool
	switch f := f.(type) {
	case *http2.HeadersFrame:
		*b = h2Block{StreamID: f.StreamID, endStream: f.StreamEnded(), Fields: b.Fields[:0], remain: hc.cfg.maxHeaders}
		frag, ended = f.HeaderBlockFragment(), f.HeadersEnded()
	case *http2.ContinuationFrame:
		if b.frames++; b.frames > h2MaxContinuations+int(hc.cfg.maxHeaders>>14) {
			return nil, errTooManyContinuations
		}
		frag, ended = f.HeaderBlockFragment(), f.HeadersEnded()
	}
	if b.bytes += len(frag); b.bytes > 2*int(hc.cfg.maxHeaders) {
		return nil, errHeaderBlockTooLarge
	}
	if _, err := hc.hdec.Write(frag); err != nil {
		return nil, fmt.Errorf("%w: %v", errCompression, err)
	}
	if !ended {
		return nil, nil
	}
	if err := hc.hdec.Close(); err != nil {
		return nil, fmt.Errorf("%w: %v", errCompression, err)
	}
	return b, nil
}

// emit takes a decoded field of the block being read: checked as RFC 9113 §8.2 asks (valid
// lower-case names and valid values, pseudo-header fields first) and counted against
// max_header_list_size.
func (hc *h2conn) emit(hf hpack.HeaderField) {
	b := &hc.blk
	if b.invalid != nil || b.Truncated {
		return
	}
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = fmt.Errorf("invalid value of %q", hf.Name)
		return
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.sawRegular {
			b.invalid = errors.New("pseudo-header field after a regular one")
			return
		}
	} else {
		b.sawRegular = true
		if !validWireName(hf.Name) {
			b.invalid = fmt.Errorf("invalid field name %q", hf.Name)
			return
		}
	}
	if size := hf.Size(); size > b.remain {
		b.Truncated = true
		return
	} else {
		b.remain -= size
	}
	b.Fields = append(b.Fields, hf)
}

// validWireName reports whether name is a valid HTTP/2 field name: a token, in lower case.
func validWireName(name string) bool {
	if len(name) == 0 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !httpguts.IsTokenRune(rune(c)) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}
