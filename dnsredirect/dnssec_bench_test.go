package dnsredirect

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// benchSigned measures the handler for m with the DO bit against signedZones.
func benchSigned(b *testing.B, m *dns.Msg) {
	met, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	st, err := buildStateAt(loadDNS(b, signedZones), b.TempDir(), nil, nil, met, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	m.IsEdns0().SetDo()
	benchHandleOn(b, st, met, m)
}

func BenchmarkHandleSignedStatic(b *testing.B) {
	benchSigned(b, newQuery("www.example.test.", dns.TypeA, true, ""))
}

func BenchmarkHandleSignedDynamicGeoECS(b *testing.B) {
	benchSigned(b, newQuery("www.cdn.test.", dns.TypeA, true, "203.0.113.0/24"))
}

func BenchmarkHandleSignedDynamicNetsECS(b *testing.B) {
	benchSigned(b, newQuery("www.cdn.test.", dns.TypeA, true, "192.0.2.0/24"))
}

func BenchmarkHandleSignedNXDOMAIN(b *testing.B) {
	benchSigned(b, newQuery("nope.example.test.", dns.TypeA, true, ""))
}

// BenchmarkSignRRset is the cost of one signature that misses the caches (ECDSA P-256).
func BenchmarkSignRRset(b *testing.B) {
	st, err := buildStateAt(loadDNS(b, signedZones), b.TempDir(), nil, nil, nil, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	zs := st.signers["cdn.test."]
	zs.sigs.max = 0 // nothing cached: every iteration signs
	set := []dns.RR{addrRR("www.cdn.test.", st.edges[0].addrs[0], 30)}
	b.ReportAllocs()
	for b.Loop() {
		zs.sign(set)
	}
}
