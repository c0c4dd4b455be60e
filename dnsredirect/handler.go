package dnsredirect

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"

	"time"

	"github.com/miekg/dns"
)

// answerCache holds packed answers by (lower-case name, type[, selection]). It is bounded: once
// full, further answers are built per query and not kept.
type answerCache struct {
	mu  sync.RWMutex
	m   map[string]*template
	max int
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{m: map[string]*template{}, max: max}
}

func (c *answerCache) get(key []byte) *template {
	c.mu.RLock()
	t := c.m[string(key)]
	c.mu.RUnlock()
	return t
}

func (c *answerCache) put(key []byte, t *template) {
	c.mu.Lock()
	if len(c.m) < c.max {
		c.m[string(key)] = t
	}
	c.mu.Unlock()
}

// localCache is one UDP reader's private copy of the cache entries it uses, so the hot path
// takes no lock. It belongs to one state and starts over when the state changes or it fills.
type localCache struct {
	st        *state
	answers   map[string]*template
	decisions map[decisionKey]*decision
	tally     map[counter]uint64 // counts not yet added to the shared counters
}

// count adds one to c: to the reader's tally when it has one (flushed once per batch, so two
// readers do not bounce the counter's cache line per query), else directly.
func (q *query) count(c counter) {
	if q.lc == nil || q.lc.tally == nil {
		c.Inc()
		return
	}
	q.lc.tally[c]++
}

// flush adds the tallied counts to the shared counters.
func (lc *localCache) flush() {
	for c, n := range lc.tally {
		c.Add(float64(n))
	}
	clear(lc.tally)
}

// maxLocalEntries bounds a reader's private cache.
const maxLocalEntries = 4096

// local returns q's reader cache for st, or nil.
func (q *query) local(st *state) *localCache {
	lc := q.lc
	if lc == nil {
		return nil
	}
	if lc.st != st || len(lc.answers) >= maxLocalEntries || len(lc.decisions) >= maxLocalEntries {
		lc.st = st
		lc.answers = make(map[string]*template)
		lc.decisions = make(map[decisionKey]*decision)
	}
	return lc
}

// template returns the packed answer for key: from the reader's cache, the shared cache, or
// built now.
func (st *state) template(q *query, key []byte, sel *selection) *template {
	lc := q.local(st)
	if lc != nil {
		if t := lc.answers[string(key)]; t != nil {
			return t
		}
	}
	t := st.cache.get(key)
	if t == nil {
		t = st.build(q, sel)
		st.cache.put(key, t)
	}
	if lc != nil {
		lc.answers[string(key)] = t
	}
	return t
}

// steerQuery is steer with the reader's decision cache in front.
func (st *state) steerQuery(q *query, d *dynName, client netip.Addr) (selection, stepKind, int) {
	lc := q.local(st)
	if lc == nil {
		return st.steer(d, client, nil)
	}
	key := decisionKeyOf(d.pool, client)
	dec := lc.decisions[key]
	if dec == nil {
		dec = st.decisions.get(key)
		if dec == nil {
			dec = st.decision(d, client, nil)
			if dec.maxScope > key.bits {
				return st.decide(d, dec, nil) // not uniform over the block: not cached
			}
			st.decisions.put(key, dec)
		}
		lc.decisions[key] = dec
	}
	return st.decide(d, dec, nil)
}

// handle answers one packet into out (capacity maxTCPLength). It returns the response, or nil
// when the packet gets no reply.
func (st *state) handle(pkt, out []byte, q *query, src netip.Addr, tcp bool, m *metrics) []byte {
	switch parseQuery(pkt, q) {
	case parseDrop:
		m.dropped.Inc()
		return nil
	case parseSlow:
		if resp, done := st.slowParse(pkt, out, q, m); done {
			return resp
		}
	}
	return st.answer(q, src, tcp, out, m)
}

// answer responds to a parsed query: meta queries and errors first, then the packed answer.
func (st *state) answer(q *query, src netip.Addr, tcp bool, out []byte, m *metrics) []byte {
	limit := maxTCPLength
	if !tcp {
		limit = noEDNSLimit
		if q.edns {
			limit = int(max(noEDNSLimit, min(q.udpSize, st.ednsSize)))
		}
	}
	if q.ecs.present {
		q.count(m.ecs)
	}
	switch {
	case q.edns && q.version != 0: // RFC 6891 §6.1.3
		return st.reply(q, dns.RcodeBadVers, nil, out, limit)
	case q.ecsBad:
		q.ecs.present = false
		return st.reply(q, dns.RcodeFormatError, nil, out, limit)
	case q.qclass == dns.ClassCHAOS:
		return st.chaos(q, out, limit)
	case q.qclass != dns.ClassINET:
		return st.reply(q, dns.RcodeRefused, nil, out, limit)
	case q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR: // over TCP the transfer code answers
		return st.reply(q, dns.RcodeRefused, nil, out, limit)
	case q.qtype == typeOPT:
		return st.reply(q, dns.RcodeFormatError, nil, out, limit)
	case q.qtype == dns.TypeNXNAME: // RFC 9824 §3.5
		return st.reply(q, dns.RcodeFormatError, nil, out, limit)
	case q.qtype >= 128 && q.qtype <= 254: // meta types (RFC 6895 §3.1)
		return st.reply(q, dns.RcodeNotImplemented, nil, out, limit)
	}
	var kb [320]byte
	key := append(append(kb[:0], q.name...), byte(q.qtype>>8), byte(q.qtype))
	if q.do && st.signed {
		key = append(key, 'D') // signed answers are cached apart (dnssec.go)
	}
	t := st.template(q, key, nil)
	var scope uint8
	if t.dyn != nil {
		t, scope = st.steered(q, t.dyn, src, key, m)
	}
	q.count(t.count)
	return assemble(out, q, t, scope, st.ednsSize, limit)
}

// steered returns the packed answer of a steered name for this client, and the ECS scope.
func (st *state) steered(q *query, d *dynName, src netip.Addr, key []byte, m *metrics) (*template, uint8) {
	client, viaECS := st.clientAddr(q, src)
	sel, step, scope := st.steerQuery(q, d, client)
	q.count(m.stepC[step])
	if step == stepFallback {
		d.pool.logFallback(st)
	}
	sk := sel.key()
	key = append(key, 0xff, byte(sk>>56), byte(sk>>48), byte(sk>>40), byte(sk>>32),
		byte(sk>>24), byte(sk>>16), byte(sk>>8), byte(sk))
	t := st.template(q, key, &sel)
	for _, c := range t.edges {
		q.count(c)
	}
	if !viaECS {
		scope = 0
	}
	return t, uint8(scope)
}

// clientAddr is the address steering uses: the ECS subnet when present and allowed (RFC 7871
// §7.1.1), else the resolver's source address.
func (st *state) clientAddr(q *query, src netip.Addr) (netip.Addr, bool) {
	e := &q.ecs
	if st.ecs.Enabled && e.present && e.source > 0 {
		a := e.ecsAddr()
		bits := min(int(e.source), st.ecs.MaxSourceV4)
		if e.family == 2 {
			bits = min(int(e.source), st.ecs.MaxSourceV6)
		}
		p, _ := a.Prefix(bits)
		a = p.Addr()
		if !st.ecs.IgnorePrivate || !(a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast()) {
			return a, true
		}
	}
	return src.Unmap(), false
}

// build resolves the query and packs the answer. With sel nil, a steered name yields a marker
// template (dyn set) instead of an answer.
func (st *state) build(q *query, sel *selection) *template {
	name := string(q.name)
	res := st.resolve(name, q.qtype, sel)
	if sel == nil && res.dyn != nil {
		return &template{dyn: res.dyn}
	}
	rcode := res.msg.Rcode
	if q.do && st.signed {
		st.signAnswer(&res, q.qtype)
	}
	t := st.pack(name, q.qtype, res.msg)
	if rcode != res.msg.Rcode { // a compact denial still counts as the NXDOMAIN it stands for
		t.count = st.counterFor(name, q.qtype, rcode)
	}
	if sel != nil {
		t.dynamic = true
		if !sel.fallback {
			for _, e := range sel.edges[:sel.n] {
				if c := st.edges[e].answers; c != nil {
					t.edges = append(t.edges, c)
				}
			}
		}
	}
	return t
}

// pack turns a response message into a template.
func (st *state) pack(name string, qtype uint16, m *dns.Msg) *template {
	m.Response = true
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	m.Compress = true
	wire, err := m.Pack()
	if err != nil {
		m.Answer, m.Ns, m.Extra, m.Authoritative = nil, nil, nil, false
		m.Rcode = dns.RcodeServerFailure
		wire, _ = m.Pack()
	}
	var nb [maxNameWire + 1]byte
	qlen, _ := dns.PackDomainName(name, nb[:], 0, nil, false)
	t := &template{
		flags: binary.BigEndian.Uint16(wire[2:]),
		an:    binary.BigEndian.Uint16(wire[6:]), ns: binary.BigEndian.Uint16(wire[8:]),
		ar: binary.BigEndian.Uint16(wire[10:]), body: wire[headerLen+qlen+4:],
	}
	t.count = st.counterFor(name, qtype, m.Rcode)
	return t
}

// counterFor returns the query counter of a name's zone, type and rcode.
func (st *state) counterFor(name string, qtype uint16, rcode int) counter {
	qc := st.noZone
	if z := st.findZone(name); z != nil && st.counters[z.origin] != nil {
		qc = st.counters[z.origin]
	}
	if qc == nil {
		return nopCounter{}
	}
	return qc[typeIndex(qtype)][rcodeIndex(rcode)]
}

type nopCounter struct{}

func (nopCounter) Inc() {}

func (nopCounter) Add(float64) {}

// reply answers q with an rcode (and optional answer records) without a zone lookup.
func (st *state) reply(q *query, rcode int, answer []dns.RR, out []byte, limit int) []byte {
	m := &dns.Msg{Answer: answer}
	m.Response = true
	m.Rcode = rcode & 0xf
	m.Question = []dns.Question{{Name: "q.", Qtype: q.qtype, Qclass: q.qclass}}
	wire, err := m.Pack()
	if err != nil {
		return nil
	}
	t := &template{flags: binary.BigEndian.Uint16(wire[2:]), an: uint16(len(answer)),
		body: wire[headerLen+4+3:], extRcode: uint8(rcode >> 4)}
	st.counterFor(string(q.name), q.qtype, rcode).Inc()
	if rcode == dns.RcodeBadVers {
		q.ecs.present = false
	}
	return assemble(out, q, t, 0, st.ednsSize, limit)
}

// chaos answers CHAOS TXT version.bind / version.server (when configured); other CHAOS
// queries are refused.
func (st *state) chaos(q *query, out []byte, limit int) []byte {
	n := string(q.name)
	if st.version == "" || q.qtype != dns.TypeTXT || (n != "version.bind." && n != "version.server.") {
		return st.reply(q, dns.RcodeRefused, nil, out, limit)
	}
	// The owner compresses to the question (offset 12); reply packs against a 3-byte "q." name,
	// so build the record here with an explicit pointer.
	txt := &dns.TXT{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS}, Txt: []string{st.version}}
	m := &dns.Msg{Answer: []dns.RR{txt}, Compress: true}
	m.Response, m.Authoritative = true, true
	m.Question = []dns.Question{{Name: n, Qtype: dns.TypeTXT, Qclass: dns.ClassCHAOS}}
	wire, err := m.Pack()
	if err != nil {
		return nil
	}
	t := &template{flags: binary.BigEndian.Uint16(wire[2:]), an: 1, body: wire[headerLen+len(q.question):]}
	st.counterFor(n, q.qtype, 0).Inc()
	return assemble(out, q, t, 0, st.ednsSize, limit)
}

// slowParse handles what the fast parser passed on, with miekg/dns: it either fills q for the
// ordinary path or produces the reply (FORMERR, NOTIMP) itself.
func (st *state) slowParse(pkt, out []byte, q *query, m *metrics) ([]byte, bool) {
	msg := new(dns.Msg)
	if err := msg.Unpack(pkt); err != nil {
		return headerReply(pkt, out, dns.RcodeFormatError), true
	}
	q.reset()
	if len(msg.Question) > 0 && !q.setQuestion(msg.Question[0]) {
		return headerReply(pkt, out, dns.RcodeFormatError), true
	}
	if msg.Opcode != dns.OpcodeQuery {
		return headerReply(pkt, out, dns.RcodeNotImplemented), true
	}
	if len(msg.Question) != 1 || len(msg.Answer) > 0 || len(msg.Ns) > 0 || countOPT(msg) > 1 {
		return headerReply(pkt, out, dns.RcodeFormatError), true
	}
	if opt := msg.IsEdns0(); opt != nil {
		q.edns, q.udpSize, q.version, q.do = true, opt.UDPSize(), opt.Version(), opt.Do()
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok && !q.ecs.present {
				fillECS(q, e)
			}
		}
	}
	return nil, false
}

// setQuestion fills q's question from a parsed one (false: the name does not pack).
func (q *query) setQuestion(qq dns.Question) bool {
	q.name = []byte(strings.ToLower(dns.Fqdn(qq.Name)))
	wire := make([]byte, maxNameWire+4)
	n, err := dns.PackDomainName(dns.Fqdn(qq.Name), wire, 0, nil, false)
	if err != nil {
		return false
	}
	binary.BigEndian.PutUint16(wire[n:], qq.Qtype)
	binary.BigEndian.PutUint16(wire[n+2:], qq.Qclass)
	q.question, q.qtype, q.qclass = wire[:n+4], qq.Qtype, qq.Qclass
	return true
}

// fillECS copies a parsed ECS option into q, validating it as parseECS does.
func fillECS(q *query, e *dns.EDNS0_SUBNET) {
	b := make([]byte, 0, 20)
	b = binary.BigEndian.AppendUint16(b, e.Family)
	b = append(b, e.SourceNetmask, e.SourceScope)
	a := e.Address.To16()
	if e.Family == 1 {
		a = e.Address.To4()
	}
	if a == nil {
		q.ecs.present, q.ecsBad = true, true
		return
	}
	b = append(b, a[:min(len(a), (int(e.SourceNetmask)+7)/8)]...)
	parseECS(b, q)
}

func countOPT(m *dns.Msg) int {
	n := 0
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n
}

// headerReply is a bare reply echoing the header's ID and opcode with rcode and no sections,
// for packets whose question cannot be trusted.
func headerReply(pkt, out []byte, rcode int) []byte {
	out = out[:headerLen]
	clear(out)
	copy(out, pkt[:2])
	binary.BigEndian.PutUint16(out[2:], flagQR|binary.BigEndian.Uint16(pkt[2:])&(0xf<<11|flagRD)|uint16(rcode))
	return out
}

// logFallback logs a pool's fallback loudly, at most once every ten seconds.
func (p *pool) logFallback(st *state) {
	now := time.Now().UnixNano()
	last := p.lastLog.Load()
	if now-last < int64(10*time.Second) || !p.lastLog.CompareAndSwap(last, now) {
		return
	}
	if st.log != nil {
		st.log.Error("dns: every edge of the pool is down, answering with the fallback", "pool", p.name, "fallback", p.fallback)
	}
}
