package dnsredirect

import (
	"encoding/binary"
	"net/netip"
)

// Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2.2).
const (
	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagCD = 1 << 4

	typeOPT      = 41
	optionECS    = 8
	headerLen    = 12
	maxNameWire  = 255
	noEDNSLimit  = 512
	maxTCPLength = 65535
)

// parseStatus is what the fast parser made of a packet.
type parseStatus uint8

const (
	parseOK   parseStatus = iota // an ordinary query the fast path answers
	parseDrop                    // not a query (a response, or shorter than a header): no reply
	parseSlow                    // unusual but maybe valid: the slow path (miekg/dns) decides
)

// query is a parsed question with its EDNS options: everything a response depends on.
type query struct {
	id, flags uint16
	question  []byte // the question as sent (name, type, class): echoed with its case
	name      []byte // lower-case presentation name, e.g. "www.cdn.test."
	qtype     uint16
	qclass    uint16
	edns      bool
	udpSize   uint16
	do        bool
	version   uint8
	ecs       ecsOption
	ecsBad    bool // malformed ECS option: FORMERR (RFC 7871 §7.1.1)

	lc *localCache // the reader's private cache, nil for none

	nameBuf [maxNameWire + 1]byte
}

// ecsOption is an EDNS Client Subnet option (RFC 7871 §6).
type ecsOption struct {
	present bool
	family  uint16
	source  uint8
	scope   uint8
	alen    uint8
	addr    [16]byte
}

// reset clears q for reuse.
func (q *query) reset() {
	q.question, q.name = nil, nil
	q.edns, q.do, q.ecsBad = false, false, false
	q.udpSize, q.version = 0, 0
	q.ecs = ecsOption{}
}

// parseQuery parses a query without allocating. Anything it does not handle — compression in
// the question, more than one question, records other than a lone OPT, opcodes other than
// QUERY, unusual characters in names, trailing bytes — is left to the slow path.
func parseQuery(pkt []byte, q *query) parseStatus {
	q.reset()
	if len(pkt) < headerLen {
		return parseDrop
	}
	q.id = binary.BigEndian.Uint16(pkt)
	q.flags = binary.BigEndian.Uint16(pkt[2:])
	if q.flags&flagQR != 0 {
		return parseDrop
	}
	if (q.flags>>11)&0xf != 0 || binary.BigEndian.Uint16(pkt[4:]) != 1 ||
		binary.BigEndian.Uint16(pkt[6:]) != 0 || binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return parseSlow
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	off, ok := parseName(pkt, headerLen, q)
	if !ok || off+4 > len(pkt) {
		return parseSlow
	}
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	q.qclass = binary.BigEndian.Uint16(pkt[off+2:])
	off += 4
	q.question = pkt[headerLen:off]
	switch arcount {
	case 0:
	case 1:
		if off, ok = parseOPT(pkt, off, q); !ok {
			return parseSlow
		}
	default:
		return parseSlow
	}
	if off != len(pkt) {
		return parseSlow
	}
	return parseOK
}

// parseName reads an uncompressed name of plain host-name characters, lower-casing it into
// q.name.
func parseName(pkt []byte, off int, q *query) (int, bool) {
	n := 0
	start := off
	for {
		if off >= len(pkt) {
			return 0, false
		}
		l := int(pkt[off])
		off++
		if l == 0 {
			break
		}
		if l&0xc0 != 0 || off+l > len(pkt) || off-start+l >= maxNameWire {
			return 0, false
		}
		for _, c := range pkt[off : off+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '*' && l == 1:
			default:
				return 0, false
			}
			q.nameBuf[n] = c
			n++
		}
		q.nameBuf[n] = '.'
		n++
		off += l
	}
	if n == 0 {
		q.nameBuf[0] = '.'
		n = 1
	}
	q.name = q.nameBuf[:n]
	return off, true
}

// parseOPT reads the OPT pseudo-record (RFC 6891 §6.1.2) and its ECS option.
func parseOPT(pkt []byte, off int, q *query) (int, bool) {
	if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != typeOPT {
		return 0, false
	}
	q.edns = true
	q.udpSize = binary.BigEndian.Uint16(pkt[off+3:])
	q.version = pkt[off+6]
	q.do = pkt[off+7]&0x80 != 0
	rdlen := int(binary.BigEndian.Uint16(pkt[off+9:]))
	off += 11
	if off+rdlen > len(pkt) {
		return 0, false
	}
	opts := pkt[off : off+rdlen]
	for len(opts) >= 4 {
		code, olen := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if 4+olen > len(opts) {
			return 0, false
		}
		if code == optionECS && !q.ecs.present {
			parseECS(opts[4:4+olen], q)
		}
		opts = opts[4+olen:]
	}
	if len(opts) != 0 {
		return 0, false
	}
	return off + rdlen, true
}

// parseECS reads an ECS option, marking it bad when RFC 7871 §6 says FORMERR: unknown family,
// prefix too long, wrong address length, or address bits set beyond the source prefix.
func parseECS(b []byte, q *query) {
	e := &q.ecs
	e.present = true
	if len(b) < 4 {
		q.ecsBad = true
		return
	}
	e.family, e.source, e.scope = binary.BigEndian.Uint16(b), b[2], b[3]
	addr := b[4:]
	maxBits := 0
	switch e.family {
	case 1:
		maxBits = 32
	case 2:
		maxBits = 128
	}
	if maxBits == 0 || int(e.source) > maxBits || len(addr) != (int(e.source)+7)/8 || e.scope != 0 {
		q.ecsBad = true
		return
	}
	if e.source%8 != 0 && len(addr) > 0 && addr[len(addr)-1]&(0xff>>(e.source%8)) != 0 {
		q.ecsBad = true
		return
	}
	e.alen = uint8(copy(e.addr[:], addr))
}

// ecsAddr returns the ECS subnet's address.
func (e *ecsOption) ecsAddr() netip.Addr {
	if e.family == 1 {
		return netip.AddrFrom4([4]byte(e.addr[:4]))
	}
	return netip.AddrFrom16(e.addr)
}

// template is a packed answer without its header ID, question and OPT: the fast path copies it
// behind the client's question and patches the rest in.
type template struct {
	flags      uint16 // QR, AA, RCODE
	an, ns, ar uint16
	body       []byte // the sections after the question, compressed against a question at offset 12
	extRcode   uint8  // upper 8 bits of a 12-bit rcode (BADVERS), carried in the OPT
	dynamic    bool   // the answer came from steering: ECS scope applies
	dyn        *dynName
	count      counter   // query counter by zone/type/rcode
	edges      []counter // answers-by-edge counters of a steered answer
}

// counter is the part of prometheus.Counter the hot path uses.
type counter interface {
	Inc()
	Add(float64)
}

// assemble writes the response to q from t into out (which must hold maxTCPLength bytes):
// header with the query's ID and RD/CD bits, the question as asked, t's sections, and an OPT
// echoing ECS with scope. If the response exceeds limit it is truncated to the question (TC).
func assemble(out []byte, q *query, t *template, scope uint8, ednsSize uint16, limit int) []byte {
	optLen := 0
	if q.edns {
		optLen = 11
		if q.ecs.present {
			optLen += 8 + int(q.ecs.alen)
		}
	}
	flags := t.flags | q.flags&(flagRD|flagCD)
	an, ns, ar, body := t.an, t.ns, t.ar, t.body
	if headerLen+len(q.question)+len(body)+optLen > limit {
		flags |= flagTC
		an, ns, ar, body = 0, 0, 0, nil
	}
	if q.edns {
		ar++
	}
	out = out[:headerLen]
	binary.BigEndian.PutUint16(out, q.id)
	binary.BigEndian.PutUint16(out[2:], flags)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], an)
	binary.BigEndian.PutUint16(out[8:], ns)
	binary.BigEndian.PutUint16(out[10:], ar)
	out = append(out, q.question...)
	out = append(out, body...)
	if q.edns {
		out = appendOPT(out, q, t.extRcode, scope, ednsSize)
	}
	return out
}

// appendOPT appends our OPT record: our UDP size, the DO bit copied (RFC 3225 §3), and the
// client's ECS option with our scope (RFC 7871 §7.2.2).
func appendOPT(out []byte, q *query, extRcode, scope uint8, ednsSize uint16) []byte {
	rdlen := 0
	if q.ecs.present {
		rdlen = 8 + int(q.ecs.alen)
	}
	var do byte
	if q.do {
		do = 0x80
	}
	out = append(out, 0, 0, typeOPT, byte(ednsSize>>8), byte(ednsSize), extRcode, 0, do, 0,
		byte(rdlen>>8), byte(rdlen))
	if q.ecs.present {
		e := &q.ecs
		out = append(out, 0, optionECS, 0, byte(4+e.alen), byte(e.family>>8), byte(e.family), e.source, scope)
		out = append(out, e.addr[:e.alen]...)
	}
	return out
}
