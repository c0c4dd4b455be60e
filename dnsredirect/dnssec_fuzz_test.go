package dnsredirect

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// FuzzHandleSigned is FuzzHandle against signed zones, seeded with DO queries: signed answers,
// compact denials, referrals, DNSKEY/NSEC/RRSIG/DS/NXNAME questions.
func FuzzHandleSigned(f *testing.F) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	st, err := buildStateAt(loadDNS(f, signedZones), f.TempDir(), nil, nil, m, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for _, pkt := range seedQueries() {
		var msg dns.Msg
		if msg.Unpack(pkt) != nil {
			seeds = append(seeds, pkt)
			continue
		}
		if msg.IsEdns0() == nil {
			msg.SetEdns0(1232, true)
		}
		msg.IsEdns0().SetDo()
		if b, err := msg.Pack(); err == nil {
			seeds = append(seeds, b)
		}
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"cdn.test.", dns.TypeDNSKEY}, {"www.cdn.test.", dns.TypeNSEC}, {"www.cdn.test.", dns.TypeRRSIG},
		{"sub.example.test.", dns.TypeDS}, {"nope.cdn.test.", dns.TypeNXNAME}, {"x.wild.example.test.", dns.TypeMX},
		{"host.sub.example.test.", dns.TypeA}, {"go.cdn.test.", dns.TypeA}} {
		msg := newQuery(q.name, q.qtype, true, "203.0.113.0/24")
		msg.IsEdns0().SetDo()
		if b, err := msg.Pack(); err == nil {
			seeds = append(seeds, b)
		}
	}
	fuzzHandler(f, st, m, seeds)
}
