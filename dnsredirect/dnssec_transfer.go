package dnsredirect

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// signTransfer signs the records of a zone transfer of z for a secondary that serves them as
// they are (Knot, BIND, NSD: no online signing). A secondary cannot tell black lies, so the
// transfer carries a real NSEC chain over the transferred names in canonical order (RFC 4034
// §6.1, the bitmap of each the types there), and the RRSIGs of every authoritative RRset, the
// NSECs' included; delegation NS RRsets and glue stay unsigned (RFC 4035 §2.2). soa is the
// served SOA and rrs the other records (zoneRecords); the result is rrs with the NSECs and
// RRSIGs added, the SOA's RRSIG among them, for the transfer to frame with the SOA at both
// ends. The signatures carry the state's signing time: a re-sign changes them, so whoever
// assigns serials should count zoneSigner.signTime as content. An unsigned zone's records come
// back as they are.
func (st *state) signTransfer(z *zone, soa *dns.SOA, rrs []dns.RR) []dns.RR {
	zs := st.signers[z.origin]
	if zs == nil {
		return rrs
	}
	byName := map[string][]dns.RR{}
	for _, rr := range append([]dns.RR{soa}, rrs...) {
		name := strings.ToLower(rr.Header().Name)
		byName[name] = append(byName[name], rr)
	}
	all := make([]string, 0, len(byName))
	for name := range byName {
		all = append(all, name)
	}
	slices.SortFunc(all, canonicalCompare)
	var chain []string // glue below a cut has no NSEC
	for _, name := range all {
		if cut, n := z.cutAbove(name); n == nil || cut == name {
			chain = append(chain, name)
		}
	}
	for i, name := range chain {
		nsec := &dns.NSEC{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: z.negTTL()},
			NextDomain: chain[(i+1)%len(chain)], TypeBitMap: transferTypes(byName[name], z.nodes[name])}
		byName[name] = append(byName[name], nsec)
	}
	out := make([]dns.RR, 0, 3*len(rrs))
	for _, name := range all {
		for _, set := range rrsets(byName[name]) {
			h := set[0].Header()
			if h.Rrtype != dns.TypeSOA {
				out = append(out, set...) // the SOA frames the transfer; its RRSIG goes here
			}
			if h.Rrtype == dns.TypeNSEC || st.signerOf(name, h.Rrtype) != nil {
				out = append(out, zs.sign(set)...)
			}
		}
	}
	return out
}

// transferTypes is the NSEC bitmap of a transferred name: its types (only NS and DS at a
// delegation), RRSIG and NSEC.
func transferTypes(rrs []dns.RR, n *node) []uint16 {
	types := []uint16{dns.TypeRRSIG, dns.TypeNSEC}
	for _, rr := range rrs {
		t := rr.Header().Rrtype
		if n == nil || !n.cut || t == dns.TypeNS || t == dns.TypeDS {
			types = append(types, t)
		}
	}
	slices.Sort(types)
	return slices.Compact(types)
}

// canonicalCompare orders lower-case names canonically (RFC 4034 §6.1): by labels from the
// root, each compared as bytes.
func canonicalCompare(a, b string) int {
	la, lb := dns.SplitDomainName(a), dns.SplitDomainName(b)
	for i, j := len(la)-1, len(lb)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if c := strings.Compare(unescapeLabel(la[i]), unescapeLabel(lb[j])); c != 0 {
			return c
		}
	}
	return len(la) - len(lb)
}

// unescapeLabel turns a presentation label (\DDD and \X escapes) into its bytes.
func unescapeLabel(l string) string {
	if !strings.Contains(l, `\`) {
		return l
	}
	var b strings.Builder
	for i := 0; i < len(l); i++ {
		if l[i] != '\\' || i+1 >= len(l) {
			b.WriteByte(l[i])
			continue
		}
		if i+3 < len(l) && isDigits(l[i+1:i+4]) {
			b.WriteByte(byte((int(l[i+1]-'0')*100 + int(l[i+2]-'0')*10 + int(l[i+3]-'0')) & 0xff))
			i += 3
			continue
		}
		b.WriteByte(l[i+1])
		i++
	}
	return b.String()
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
