package dnsredirect

import (
	"errors"
	"fmt"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the component's Prometheus collectors. Hot-path counters are resolved to plain
// prometheus.Counter values when a configuration is loaded, so counting is one atomic add.
type metrics struct {
	queries *prometheus.CounterVec // zone, type, rcode
	answers *prometheus.CounterVec // edge
	steps   *prometheus.CounterVec // step
	ecs     prometheus.Counter
	health  *prometheus.CounterVec // edge, state
	rrl     *prometheus.CounterVec // action: drop, slip
	reloads *prometheus.CounterVec // result
	dnssec  *prometheus.GaugeVec   // zone, event: signature_expiration, next_resign (dnssec_server.go)

	stepC          [numSteps]prometheus.Counter
	rrlDrop, rrlTC prometheus.Counter
	dropped        prometheus.Counter
	tap            *tapMetrics // dnstap.go
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_dns_queries_total",
			Help: "DNS queries answered, by zone, query type and response code."}, []string{"zone", "type", "rcode"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_dns_edge_answers_total",
			Help: "Dynamic answers that handed out each edge."}, []string{"edge"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_dns_steering_decisions_total",
			Help: "Steering decisions by the step that decided (nets, asn, geo, default, fallback)."}, []string{"step"}),
		ecs: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_dns_ecs_queries_total",
			Help: "Queries that carried an EDNS Client Subnet option."}),
		health: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_dns_health_transitions_total",
			Help: "Edge health transitions, by edge and new state."}, []string{"edge", "state"}),
		rrl: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_dns_rrl_limited_total",
			Help: "Responses held back by response rate limiting: dropped, or slipped (sent truncated)."}, []string{"action"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_dns_reloads_total",
			Help: "Configuration reloads by result."}, []string{"result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_dns_dropped_total",
			Help: "Packets dropped unanswered (responses, runts, malformed headers)."}),
	}
	for _, c := range []*prometheus.CounterVec{m.queries, m.answers, m.steps, m.health, m.rrl, m.reloads} {
		if err := register(reg, c, func(existing prometheus.Collector) { *c = *existing.(*prometheus.CounterVec) }); err != nil {
			return nil, err
		}
	}
	for _, c := range []*prometheus.Counter{&m.ecs, &m.dropped} {
		if err := register(reg, *c, func(existing prometheus.Collector) { *c = existing.(prometheus.Counter) }); err != nil {
			return nil, err
		}
	}
	m.dnssec = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outpost_dns_dnssec_timestamp_seconds",
		Help: "Signed zones: when the signatures served expire, and when they are re-made (Unix time)."}, []string{"zone", "event"})
	if err := register(reg, m.dnssec, func(existing prometheus.Collector) { m.dnssec = existing.(*prometheus.GaugeVec) }); err != nil {
		return nil, err
	}
	for s := range numSteps {
		m.stepC[s] = m.steps.WithLabelValues(s.String())
	}
	m.rrlDrop, m.rrlTC = m.rrl.WithLabelValues("drop"), m.rrl.WithLabelValues("slip")
	var err error
	m.tap, err = newTapMetrics(reg)
	return m, err
}

// register registers c, or adopts the collector already registered under its name (a second
// Server on the same registry counts into the same series).
func register(reg prometheus.Registerer, c prometheus.Collector, adopt func(prometheus.Collector)) error {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		adopt(are.ExistingCollector)
		return nil
	}
	if err != nil {
		return fmt.Errorf("dns: metrics: %w", err)
	}
	return nil
}

// Query types and response codes counted by name; others count as "other".
var (
	countedTypes  = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeNS, dns.TypeSOA, dns.TypeTXT, dns.TypeSRV, dns.TypeCAA, dns.TypePTR, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeDS, dns.TypeDNSKEY, dns.TypeHTTPS}
	countedRcodes = []int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers}
)

const numTypes, numRcodes = 17, 8 // len(countedTypes)+1, len(countedRcodes)+1

// queryCounters are one zone's counters by type and rcode index.
type queryCounters [numTypes][numRcodes]prometheus.Counter

func (m *metrics) zoneCounters(zone string) *queryCounters {
	var qc queryCounters
	for ti := range numTypes {
		tname := "other"
		if ti < len(countedTypes) {
			tname = dns.TypeToString[countedTypes[ti]]
		}
		for ri := range numRcodes {
			rname := "other"
			if ri < len(countedRcodes) {
				rname = dns.RcodeToString[countedRcodes[ri]]
			}
			qc[ti][ri] = m.queries.WithLabelValues(zone, tname, rname)
		}
	}
	return &qc
}

// typeIndex and rcodeIndex map wire values to counter indexes.
func typeIndex(t uint16) int {
	for i, c := range countedTypes {
		if c == t {
			return i
		}
	}
	return numTypes - 1
}

func rcodeIndex(r int) int {
	for i, c := range countedRcodes {
		if c == r {
			return i
		}
	}
	return numRcodes - 1
}
