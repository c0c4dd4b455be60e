package dnsredirect

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// axfrRecordsPerMessage bounds the records of one transfer message.
const axfrRecordsPerMessage = 200

// transfer answers an AXFR (or IXFR, with a full transfer, RFC 1995 §4) over TCP to an allowed
// secondary (RFC 5936): SOA, every record, SOA. Steered names appear with their transfer view
// (transfer.go). It returns the REFUSED/NOTAUTH reply instead when
// the transfer is not allowed.
func (st *state) transfer(w io.Writer, q *query, src netip.Addr, out []byte) ([]byte, error) {
	z := st.zones[string(q.name)]
	allowed := false
	for _, p := range st.xfrAllow {
		allowed = allowed || p.Contains(src.Unmap())
	}
	if z == nil || !allowed {
		rcode := dns.RcodeRefused
		if allowed {
			rcode = dns.RcodeNotAuth
		}
		return st.reply(q, rcode, nil, out, maxTCPLength), nil
	}
	rrs := append([]dns.RR{z.soa}, st.signTransfer(z, z.soa, st.zoneRecords(z))...)
	rrs = append(rrs, z.soa)
	for len(rrs) > 0 {
		n := min(len(rrs), axfrRecordsPerMessage)
		m := &dns.Msg{Answer: rrs[:n], Compress: true}
		m.Id, m.Response, m.Authoritative = q.id, true, true
		m.Question = []dns.Question{{Name: z.origin, Qtype: q.qtype, Qclass: dns.ClassINET}}
		wire, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("dns: axfr %s: %w", z.origin, err)
		}
		frame := binary.BigEndian.AppendUint16(make([]byte, 0, len(wire)+2), uint16(len(wire)))
		if _, err := w.Write(append(frame, wire...)); err != nil {
			return nil, fmt.Errorf("dns: axfr %s: %w", z.origin, err)
		}
		rrs = rrs[n:]
	}
	st.counterFor(z.origin, q.qtype, 0).Inc()
	return nil, nil
}

// notify sends a NOTIFY (RFC 1996) for zone to target, retrying a few times until it is
// acknowledged or ctx ends.
func notify(ctx context.Context, z *zone, target string) error {
	m := new(dns.Msg)
	m.SetNotify(z.origin)
	m.Answer = []dns.RR{z.soa}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	var err error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(try) * time.Second):
			}
		}
		var r *dns.Msg
		r, _, err = c.ExchangeContext(ctx, m, target)
		if err == nil && r.Rcode == dns.RcodeSuccess {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
		}
	}
	return fmt.Errorf("dns: notify %s of %s: %w", target, z.origin, err)
}
