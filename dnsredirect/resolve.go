package dnsredirect

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// maxChain bounds CNAME chains followed inside our zones.
const maxChain = 8

// result is an authoritative answer before it is packed: what resolve found, and whether it
// depends on steering.
type result struct {
	msg *dns.Msg
	dyn *dynName // the steered name the answer went through, if any
	neg *denial  // where a negative answer ended (NXDOMAIN/NODATA), for DNSSEC denial
	cut *denial  // the delegation of a referral
}

// resolve answers qname/qtype from the zones (RFC 1034 §4.3.2): the AA bit, NXDOMAIN vs NODATA
// with the SOA, CNAME chains, delegations, wildcards. sel supplies the edges of a steered name;
// with sel nil resolve only reports (in result.dyn) that it would need them.
func (st *state) resolve(qname string, qtype uint16, sel *selection) result {
	m := new(dns.Msg)
	res := result{msg: m}
	z := st.findZone(qname)
	if qtype == dns.TypeDS && z != nil && z.origin == qname {
		z = st.parentZone(z) // the DS of a zone is the parent's data (RFC 4035 §3.1.4.1)
	}
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return res
	}
	m.Authoritative = true
	target, seen := qname, map[string]bool{}
	for range maxChain {
		seen[target] = true
		next, done := st.step(z, target, qname, qtype, sel, &res)
		if done {
			break
		}
		if seen[next] {
			break
		}
		if z = st.findZone(next); z == nil {
			break // the chain leaves our zones: the resolver follows it
		}
		target = next
	}
	st.addAdditional(m)
	return res
}

// step answers one name of a chain. It returns the CNAME target to follow, or done.
func (st *state) step(z *zone, target, qname string, qtype uint16, sel *selection, res *result) (string, bool) {
	m := res.msg
	if cutName, cut := z.cutAbove(target); cut != nil && !(cutName == target && qtype == dns.TypeDS) {
		st.referral(m, z, cut)
		res.cut = &denial{zone: z, name: cutName, node: cut}
		return "", true
	}
	n := z.nodes[target]
	if n == nil {
		if n = z.wildcard(target); n == nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, z.negSOA())
			res.neg = &denial{zone: z, name: target}
			return "", true
		}
	}
	if n.dyn != nil && res.dyn == nil {
		res.dyn = n.dyn
	}
	if rrs := st.records(n, target, qtype, sel); len(rrs) > 0 {
		m.Answer = append(m.Answer, rrs...)
		return "", true
	}
	if c := n.rrsets[dns.TypeCNAME]; len(c) > 0 && qtype != dns.TypeCNAME {
		rr := withOwner(c[0], target)
		m.Answer = append(m.Answer, rr)
		return strings.ToLower(rr.(*dns.CNAME).Target), false
	}
	m.Ns = append(m.Ns, z.negSOA())
	res.neg = &denial{zone: z, name: target, node: n}
	return "", true
}

// referral fills m with a delegation: NS in authority, glue in additional, AA clear.
func (st *state) referral(m *dns.Msg, z *zone, cut *node) {
	if len(m.Answer) == 0 {
		m.Authoritative = false
	}
	for _, rr := range cut.rrsets[dns.TypeNS] {
		m.Ns = append(m.Ns, rr)
		ns := strings.ToLower(rr.(*dns.NS).Ns)
		if g := z.nodes[ns]; g != nil && dns.IsSubDomain(z.origin, ns) {
			m.Extra = append(m.Extra, g.rrsets[dns.TypeA]...)
			m.Extra = append(m.Extra, g.rrsets[dns.TypeAAAA]...)
		}
	}
}

// anyOrder is the order in which a minimal ANY answer (RFC 8482 §4.2) picks one RRset.
var anyOrder = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeNS, dns.TypeSOA,
	dns.TypeTXT, dns.TypeSRV, dns.TypeCAA}

// records returns the RRset of qtype at n with the owner set to target (wildcards), including
// steered addresses.
func (st *state) records(n *node, target string, qtype uint16, sel *selection) []dns.RR {
	if qtype == dns.TypeANY {
		for _, t := range anyOrder {
			if rrs := st.records(n, target, t, sel); len(rrs) > 0 {
				return rrs
			}
		}
		for t := range n.rrsets {
			return st.records(n, target, t, sel)
		}
		return nil
	}
	var rrs []dns.RR
	if n.dyn != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
		if sel == nil {
			return nil
		}
		for _, a := range st.selectionAddrs(n.dyn, sel, qtype == dns.TypeA) {
			rrs = append(rrs, addrRR(target, a, n.dyn.ttl))
		}
		return rrs
	}
	for _, rr := range n.rrsets[qtype] {
		rrs = append(rrs, withOwner(rr, target))
	}
	return rrs
}

// addrRR is an A or AAAA record for addr.
func addrRR(owner string, addr netip.Addr, ttl uint32) dns.RR {
	if addr.Is4() {
		return &dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: addr.AsSlice()}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: addr.AsSlice()}
}

// withOwner returns rr, or a copy owned by name when it differs (wildcard synthesis).
func withOwner(rr dns.RR, name string) dns.RR {
	if strings.EqualFold(rr.Header().Name, name) {
		return rr
	}
	c := dns.Copy(rr)
	c.Header().Name = name
	return c
}

// addAdditional adds the in-zone addresses of MX, SRV and NS targets (RFC 1034 §4.3.2 step 6).
func (st *state) addAdditional(m *dns.Msg) {
	if !m.Authoritative {
		return
	}
	seen := map[string]bool{}
	for _, rr := range m.Answer {
		var t string
		switch v := rr.(type) {
		case *dns.MX:
			t = v.Mx
		case *dns.SRV:
			t = v.Target
		case *dns.NS:
			t = v.Ns
		default:
			continue
		}
		t = strings.ToLower(t)
		if seen[t] {
			continue
		}
		seen[t] = true
		if z := st.findZone(t); z != nil {
			if n := z.nodes[t]; n != nil && n.dyn == nil {
				m.Extra = append(m.Extra, n.rrsets[dns.TypeA]...)
				m.Extra = append(m.Extra, n.rrsets[dns.TypeAAAA]...)
			}
		}
	}
}

// parentZone is the zone above z when we serve it too, else z itself.
func (st *state) parentZone(z *zone) *zone {
	i, end := dns.NextLabel(z.origin, 0)
	if end {
		return z
	}
	if p := st.findZone(z.origin[i:]); p != nil {
		return p
	}
	return z
}

// findZone returns the closest enclosing zone of name (lower-case, fully qualified).
func (st *state) findZone(name string) *zone {
	for cur := name; ; {
		if z := st.zones[cur]; z != nil {
			return z
		}
		i, end := dns.NextLabel(cur, 0)
		if end {
			return nil
		}
		cur = cur[i:]
	}
}
