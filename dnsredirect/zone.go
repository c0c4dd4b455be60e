package dnsredirect

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// maxZoneRecords bounds one zone, so a runaway zone file cannot exhaust memory.
const maxZoneRecords = 1_000_000

// zone is one authoritative zone: its records indexed by lower-case owner name.
type zone struct {
	origin  string           // lower-case, fully qualified apex, e.g. "cdn.test."
	soa     *dns.SOA         // the apex SOA
	nodes   map[string]*node // every owner name and every empty non-terminal
	records []dns.RR         // all records in load order (zone transfer)
}

// node is one owner name: its RRsets, and what makes it special.
type node struct {
	rrsets map[uint16][]dns.RR
	cut    bool     // NS below the apex: a delegation point
	dyn    *dynName // steered name: A/AAAA come from the edge pool
}

// loadZone parses a zone's records (master-file lines relative to the apex) and zone file.
func loadZone(origin string, defaultTTL uint32, records []string, file string) (*zone, error) {
	z := &zone{origin: origin, nodes: map[string]*node{}}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("zone %s: %w", origin, err)
		}
		defer f.Close()
		if err := z.parse(f, file, defaultTTL); err != nil {
			return nil, err
		}
	}
	if len(records) > 0 {
		text := strings.Join(records, "\n") + "\n"
		if err := z.parse(strings.NewReader(text), "records", defaultTTL); err != nil {
			return nil, err
		}
	}
	if err := z.check(); err != nil {
		return nil, err
	}
	return z, nil
}

// parse reads master-file text into the zone.
func (z *zone) parse(r io.Reader, source string, defaultTTL uint32) error {
	zp := dns.NewZoneParser(r, z.origin, source)
	zp.SetDefaultTTL(defaultTTL)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := z.add(rr); err != nil {
			return fmt.Errorf("zone %s: %s: %w", z.origin, source, err)
		}
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("zone %s: %w", z.origin, err)
	}
	return nil
}

// add indexes one record under its lower-case owner and marks the empty non-terminals above it.
func (z *zone) add(rr dns.RR) error {
	h := rr.Header()
	if h.Class != dns.ClassINET {
		return fmt.Errorf("%s: only class IN is served", h.Name)
	}
	owner := strings.ToLower(h.Name)
	if !dns.IsSubDomain(z.origin, owner) {
		return fmt.Errorf("%s is outside the zone", h.Name)
	}
	if len(z.records) >= maxZoneRecords {
		return fmt.Errorf("more than %d records", maxZoneRecords)
	}
	switch h.Rrtype {
	case dns.TypeSOA:
		if owner != z.origin {
			return fmt.Errorf("SOA at %s, not at the apex", h.Name)
		}
		if z.soa != nil {
			return fmt.Errorf("more than one SOA")
		}
		z.soa = rr.(*dns.SOA)
	case dns.TypeNS:
		if owner != z.origin {
			z.node(owner).cut = true
		}
	}
	n := z.node(owner)
	n.rrsets[h.Rrtype] = append(n.rrsets[h.Rrtype], rr)
	z.records = append(z.records, rr)
	return nil
}

// node returns the node of owner, creating it and its empty non-terminal ancestors.
func (z *zone) node(owner string) *node {
	n := z.nodes[owner]
	if n != nil {
		return n
	}
	n = &node{rrsets: map[uint16][]dns.RR{}}
	z.nodes[owner] = n
	for name := owner; name != z.origin; {
		i, _ := dns.NextLabel(name, 0)
		name = name[i:]
		if _, ok := z.nodes[name]; ok {
			break
		}
		z.nodes[name] = &node{rrsets: map[uint16][]dns.RR{}}
	}
	return n
}

// check enforces what RFC 1034/2181 require of a zone: an apex SOA and NS, and no CNAME beside
// other data.
func (z *zone) check() error {
	if z.soa == nil {
		return fmt.Errorf("zone %s: no SOA record at the apex", z.origin)
	}
	if len(z.nodes[z.origin].rrsets[dns.TypeNS]) == 0 {
		return fmt.Errorf("zone %s: no NS record at the apex", z.origin)
	}
	for owner, n := range z.nodes {
		if len(n.rrsets[dns.TypeCNAME]) > 0 && len(n.rrsets) > 1 {
			return fmt.Errorf("zone %s: %s has a CNAME and other data (RFC 1034 3.6.2)", z.origin, owner)
		}
		if len(n.rrsets[dns.TypeCNAME]) > 1 {
			return fmt.Errorf("zone %s: %s has more than one CNAME", z.origin, owner)
		}
	}
	return nil
}

// negTTL is the TTL of a negative answer's SOA (RFC 2308 §5): min(SOA TTL, SOA minimum).
func (z *zone) negTTL() uint32 {
	return min(z.soa.Hdr.Ttl, z.soa.Minttl)
}

// negSOA is the SOA for the authority section of a negative answer.
func (z *zone) negSOA() dns.RR {
	soa := dns.Copy(z.soa)
	soa.Header().Ttl = z.negTTL()
	return soa
}

// cutAbove returns the delegation point at or above name (below the apex), if any.
func (z *zone) cutAbove(name string) (string, *node) {
	for cur := name; cur != z.origin && len(cur) > len(z.origin); {
		if n := z.nodes[cur]; n != nil && n.cut {
			return cur, n
		}
		i, _ := dns.NextLabel(cur, 0)
		cur = cur[i:]
	}
	return "", nil
}

// wildcard finds the wildcard node that synthesises name (RFC 4592 §3.3): the source of
// synthesis "*.<closest encloser>" when it exists.
func (z *zone) wildcard(name string) *node {
	cur := name
	for cur != z.origin {
		i, _ := dns.NextLabel(cur, 0)
		cur = cur[i:]
		if _, ok := z.nodes[cur]; ok {
			return z.nodes["*."+cur]
		}
	}
	return nil
}
