package dnsredirect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/outpost-proxy/outpost/internal/atomicfile"
	"github.com/outpost-proxy/outpost/internal/config"
)

// What a secondary serves. A secondary cannot steer: whatever a zone transfer lists for a
// steered name, it answers to every client. Each dynamic name therefore says what the transfer
// carries (dns.dynamic[].transfer): every edge of its pool, a fixed set of edges, or nothing.
//
// The SOA serial a secondary compares is kept by the server: a reload that changes what a
// transfer carries (the records, the addresses of transferred edges, the transfer views) bumps
// it, so the secondary notices; see assignSerials.

// transferView is what a transfer carries for one steered name.
type transferView struct {
	exclude bool
	edges   []int // the edges whose addresses are listed
}

// transferViewOf resolves a dynamic name's configured transfer view against the loaded edges.
func (st *state) transferViewOf(dc config.DNSDynamicConfig, p *pool) transferView {
	switch dc.Transfer {
	case config.TransferExclude:
		return transferView{exclude: true}
	case config.TransferEdges:
		var v transferView
		for _, n := range dc.TransferEdges {
			v.edges = append(v.edges, st.edgeIdx[strings.ToLower(n)])
		}
		return v
	}
	return transferView{edges: p.edges}
}

// zoneRecords are a zone's records for transfer: everything but the SOA, plus each steered
// name's addresses as its transfer view says (each address once).
func (st *state) zoneRecords(z *zone) []dns.RR {
	var out []dns.RR
	for _, rr := range z.records {
		if rr.Header().Rrtype != dns.TypeSOA {
			out = append(out, rr)
		}
	}
	names := make([]string, 0)
	for name, n := range z.nodes {
		if n.dyn != nil && !n.dyn.xfr.exclude {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		d := z.nodes[name].dyn
		seen := map[netip.Addr]bool{}
		for _, i := range d.xfr.edges {
			for _, a := range st.edges[i].addrs {
				if !seen[a] {
					seen[a] = true
					out = append(out, addrRR(name, a, d.ttl))
				}
			}
		}
	}
	return out
}

// transferQuery reports whether pkt asks for a zone transfer, filling q: an AXFR, or an IXFR,
// which carries the client's SOA in the authority section (RFC 1995 §3) and so reaches the
// slow parser. Both get the full zone (RFC 1995 §4 allows an IXFR to be answered so).
func transferQuery(pkt []byte, q *query) bool {
	switch parseQuery(pkt, q) {
	case parseOK:
		return (q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR) && q.qclass == dns.ClassINET
	case parseDrop:
		return false
	}
	m := new(dns.Msg)
	if m.Unpack(pkt) != nil || m.Opcode != dns.OpcodeQuery || len(m.Question) != 1 || len(m.Answer) != 0 || len(m.Ns) != 1 {
		return false
	}
	if _, soa := m.Ns[0].(*dns.SOA); !soa || m.Question[0].Qtype != dns.TypeIXFR || m.Question[0].Qclass != dns.ClassINET {
		return false
	}
	q.reset()
	return q.setQuestion(m.Question[0])
}

// zoneSerial is the serial a zone was served with and a hash of the content it stood for.
type zoneSerial struct {
	Serial uint32 `json:"serial"`
	Hash   string `json:"hash"`
}

// serialsFile keeps the last serial per zone across restarts, under data_dir.
const serialsFile = "dns/serials.json"

// assignSerials sets each zone's SOA serial. The configured serial stands unless the zone
// was served before (by prev, or by an earlier run, as recorded in data_dir) with a different
// transfer content: then the serial is the previous one plus one (RFC 1982 §3.1, modulo 2^32),
// or the configured one when that is newer (RFC 1982 §3.2), so it never goes back. The result
// is recorded for the next run.
func (st *state) assignSerials(_ config.DNSConfig, dataDir string, prev *state, _ *healthSet, _ *metrics) error {
	last := map[string]zoneSerial{}
	if prev != nil {
		last = prev.serials
	} else if dataDir != "" {
		var err error
		if last, err = readSerials(dataPath(dataDir, serialsFile)); err != nil {
			return err
		}
	}
	st.serials = map[string]zoneSerial{}
	for origin, z := range st.zones {
		hash := st.transferHash(z)
		serial := z.soa.Serial
		if l, ok := last[origin]; ok && !serialNewer(serial, l.Serial) {
			serial = l.Serial
			if l.Hash != hash {
				serial = l.Serial + 1
			}
		}
		z.soa.Serial = serial
		st.serials[origin] = zoneSerial{Serial: serial, Hash: hash}
	}
	if dataDir == "" {
		return nil
	}
	for origin, s := range last { // zones dropped from the configuration keep their serial
		if _, ok := st.serials[origin]; !ok {
			st.serials[origin] = s
		}
	}
	return writeSerials(dataPath(dataDir, serialsFile), st.serials)
}

// serialNewer reports whether serial a is greater than b in RFC 1982 serial arithmetic.
func serialNewer(a, b uint32) bool {
	return a != b && int32(a-b) > 0
}

// transferHash is a digest of what a transfer of z carries, but for the SOA serial: the
// records in canonical text, sorted, and for a signed zone the keys and the signatures'
// validity (signTransfer's NSEC chain and RRSIGs follow from these).
func (st *state) transferHash(z *zone) string {
	soa := dns.Copy(z.soa).(*dns.SOA)
	soa.Serial = 0
	lines := []string{soa.String()}
	for _, rr := range st.zoneRecords(z) {
		lines = append(lines, rr.String()) // as written: TXT and other RDATA are case-sensitive
	}
	if zs := st.signers[z.origin]; zs != nil { // re-signed: new signatures for the secondaries
		lines = append(lines, fmt.Sprintf("; signed %d-%d by %s", zs.inception, zs.expiration, zs.fingerprint()))
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

func readSerials(path string) (map[string]zoneSerial, error) {
	out := map[string]zoneSerial{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("zone serials: %w", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("zone serials %s: %w", path, err)
	}
	return out, nil
}

// writeSerials replaces the serials file atomically and durably.
func writeSerials(path string, serials map[string]zoneSerial) error {
	b, err := json.MarshalIndent(serials, "", "  ")
	if err != nil {
		return fmt.Errorf("zone serials: %w", err)
	}
	if err := atomicfile.WriteBytes(path, 0o644, append(b, '\n')); err != nil {
		return fmt.Errorf("zone serials: %w", err)
	}
	return nil
}
