package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// The lab's topology is fixed: three client regions, three edges (region i's near edge is edge
// i), one parent, one origin and the authoritative DNS.
const labRegions = 3

// LabDelays is the lab's link table: the round-trip time of every link.
type LabDelays struct {
	// NearEdge is the RTT between a region and its near edge.
	NearEdge time.Duration `json:"near_edge_ns"`
	// NextEdge and FarEdge are the RTTs between a region and its next-nearest and its farthest
	// edge (region i's next edge is edge i+1, wrapping).
	NextEdge time.Duration `json:"next_edge_ns"`
	FarEdge  time.Duration `json:"far_edge_ns"`
	// EdgeParent and ParentOrigin are the RTTs of the parent tier's links.
	EdgeParent   time.Duration `json:"edge_parent_ns"`
	ParentOrigin time.Duration `json:"parent_origin_ns"`
	// EdgeOrigin is the RTT of an edge's direct path to the origin, used when edges have no
	// parent tier; 0 means EdgeParent + ParentOrigin (the same route, with no cache on it).
	EdgeOrigin time.Duration `json:"edge_origin_ns"`
	// EdgeBandwidth caps every region ↔ edge link, bytes per second per direction, with the
	// delay line's own shaper (a bottleneck shared by the link's connections); 0: none.
	EdgeBandwidth int64 `json:"edge_bandwidth"`
}

// DefaultLabDelays is the table: near edge 5 ms, far edges 60 and 120 ms, edge ↔
// parent 30 ms, parent ↔ origin 80 ms.
func DefaultLabDelays() LabDelays {
	return LabDelays{NearEdge: 5 * time.Millisecond, NextEdge: 60 * time.Millisecond, FarEdge: 120 * time.Millisecond,
		EdgeParent: 30 * time.Millisecond, ParentOrigin: 80 * time.Millisecond}
}

// edgeOrigin is the direct edge ↔ origin RTT.
func (d LabDelays) edgeOrigin() time.Duration {
	if d.EdgeOrigin > 0 {
		return d.EdgeOrigin
	}
	return d.EdgeParent + d.ParentOrigin
}

// regionEdge is the RTT between region r and edge e (0-based).
func (d LabDelays) regionEdge(r, e int) time.Duration {
	switch (e - r + labRegions) % labRegions {
	case 0:
		return d.NearEdge
	case 1:
		return d.NextEdge
	}
	return d.FarEdge
}

// LabHealth is the DNS's health check of the edges in the lab.
type LabHealth struct {
	Interval time.Duration `json:"interval_ns"`
	Timeout  time.Duration `json:"timeout_ns"`
	Fall     int           `json:"fall"`
	Rise     int           `json:"rise"`
}

// LabOptions configure one lab run.
type LabOptions struct {
	// Binary is the outpost executable every server runs as (`outpost proxy`, `dns`, `up`).
	Binary string
	// Delays is the link table.
	Delays LabDelays
	// Health is the DNS's check of the edges (and so the failover time).
	Health LabHealth
	// PageObjects is n of the demo page /page/n; ObjectSize their size (0: the origin's).
	PageObjects int
	ObjectSize  int64
	// WarmRuns is how many warm page loads each region makes (the median is reported).
	WarmRuns int
	// FailRegion is the region (1-based) whose near edge is stopped in the failover phase.
	FailRegion int
	// ParentTier is "auto" (edges use the parent when the binary accepts [proxy.parents]),
	// "on" (required) or "off" (edges go to the origin directly).
	ParentTier string
	// Keep leaves the run directory (configs, logs) in place and prints its path.
	Keep bool
	// Progress receives one line per step (nil: none).
	Progress io.Writer
	// Ready, when not nil, is called once the topology and every server are up, before the
	// measurements (tests use it to interrupt a run midway).
	Ready func(prefix string)
}

// Validate checks the options, returning a *UsageError naming the flag.
func (o *LabOptions) Validate() error {
	d := o.Delays
	for _, v := range []struct {
		flag string
		d    time.Duration
	}{{"--near", d.NearEdge}, {"--next", d.NextEdge}, {"--far", d.FarEdge}, {"--edge-parent", d.EdgeParent},
		{"--parent-origin", d.ParentOrigin}, {"--edge-origin", d.EdgeOrigin}} {
		if v.d < 0 || v.d > 10*time.Second {
			return usagef("%s must be between 0 and 10s, got %s", v.flag, v.d)
		}
	}
	switch {
	case d.EdgeBandwidth < 0:
		return usagef("--bandwidth must not be negative")
	case o.Binary == "":
		return usagef("lab: no outpost binary to run the servers")
	case o.PageObjects <= 0 || o.PageObjects > 100:
		return usagef("--objects must be between 1 and 100, got %d", o.PageObjects)
	case o.ObjectSize < 0 || o.ObjectSize > 1<<20:
		return usagef("--size must be between 0 and 1MiB")
	case o.WarmRuns <= 0 || o.WarmRuns > 50:
		return usagef("--warm-runs must be between 1 and 50, got %d", o.WarmRuns)
	case o.Health.Interval < 50*time.Millisecond || o.Health.Interval > time.Minute:
		return usagef("--health-interval must be between 50ms and 1m, got %s", o.Health.Interval)
	case o.Health.Timeout <= 0 || o.Health.Timeout > o.Health.Interval:
		return usagef("--health-timeout must be positive and at most --health-interval, got %s", o.Health.Timeout)
	case o.Health.Fall < 1 || o.Health.Fall > 10 || o.Health.Rise < 1 || o.Health.Rise > 10:
		return usagef("--health-fall and --health-rise must be between 1 and 10")
	case o.FailRegion < 1 || o.FailRegion > labRegions:
		return usagef("--fail-region must be between 1 and %d, got %d", labRegions, o.FailRegion)
	case o.ParentTier != "auto" && o.ParentTier != "on" && o.ParentTier != "off":
		return usagef("--parent-tier must be auto, on or off, got %q", o.ParentTier)
	}
	return nil
}

// LabResult is what one lab run measured.
type LabResult struct {
	// Prefix names everything the run made (namespaces olab-<id>-*, links ol<id>-*).
	Prefix string `json:"prefix"`
	// ParentTier says whether edges used the parent, and why not.
	ParentTier string          `json:"parent_tier"`
	Delays     LabDelays       `json:"delays"`
	Health     LabHealth       `json:"health"`
	Page       string          `json:"page"`
	Links      []LabLinkResult `json:"links"`
	Regions    []LabRegion     `json:"regions"`
	// OriginRequestsPerObject is the maximum over the page's URLs of the origin's requests for
	// it in the cold phase, across all regions (1 when a parent tier collapses them).
	OriginRequestsPerObject int            `json:"origin_requests_per_object"`
	OriginRequestsByURL     map[string]int `json:"origin_requests_by_url"`
	Failover                LabFailover    `json:"failover"`
	Purge                   LabPurge       `json:"purge"`
	Leftover                LabLeftover    `json:"leftover"`
	// Seconds is the whole run's wall time, set-up and clean-up included.
	Seconds float64  `json:"seconds"`
	Notes   []string `json:"notes"`
}

// LabLinkResult is one link of the topology: its configured RTT and the RTT measured through
// its delay line (a request/response round trip on an open connection, minus nothing: the
// server's own time is included and is well under a millisecond).
type LabLinkResult struct {
	A          string  `json:"a"`
	B          string  `json:"b"`
	AAddr      string  `json:"a_addr"`
	BAddr      string  `json:"b_addr"`
	RTTms      float64 `json:"rtt_ms"`
	MeasuredMS float64 `json:"measured_ms"`
	// Use says what the link carries ("page loads", "misses today", "none until the parent tier").
	Use string `json:"use"`
}

// LabRegion is one client region's result.
type LabRegion struct {
	Name         string  `json:"name"`
	EdgeExpected string  `json:"edge_expected"`
	EdgeAnswered string  `json:"edge_answered"`
	ColdMS       float64 `json:"cold_ms"`
	WarmMS       float64 `json:"warm_ms"` // median of the warm runs
	WarmMinMS    float64 `json:"warm_min_ms"`
	ModelColdMS  float64 `json:"model_cold_ms"`
	ModelWarmMS  float64 `json:"model_warm_ms"`
	// ModelColdLinksMS and ModelWarmLinksMS are the same models with the links' measured
	// RTTs: what is left between them and the measurement is the servers' own time.
	ModelColdLinksMS float64 `json:"model_cold_links_ms"`
	ModelWarmLinksMS float64 `json:"model_warm_links_ms"`
	ModelCold        string  `json:"model_cold"`
	ModelWarm        string  `json:"model_warm"`
	// OriginRequests counts the origin's requests from this region's edge (or, with a parent
	// tier, those the region's cold load caused) in the cold phase.
	OriginRequests int      `json:"origin_requests"`
	ColdHits       TierHits `json:"cold_hits"`
	WarmHits       TierHits `json:"warm_hits"`
	WarmRatio      float64  `json:"warm_ratio"` // warm_ms / model_warm_ms
}

// TierHits counts the page's responses by the Cache-Status member of each tier (RFC 9211: the
// member nearest the client comes last): hits at the edge, hits at the parent, and the rest.
type TierHits struct {
	Edge   int `json:"edge"`
	Parent int `json:"parent"`
	Miss   int `json:"miss"`
}

// LabFailover is the failover phase: one edge stopped, its region steered elsewhere.
type LabFailover struct {
	EdgeStopped string `json:"edge_stopped"`
	Region      string `json:"region"`
	// Seconds from the stop to the DNS's first answer naming another edge.
	Seconds float64 `json:"seconds"`
	// BoundSeconds is the health check's (fall + 1) × interval + timeout: fall failed probes,
	// the interval in which the stop happened, and the last probe's timeout.
	BoundSeconds float64 `json:"bound_seconds"`
	EdgeAfter    string  `json:"edge_after"`
	PageOK       bool    `json:"page_ok"`
	PageMS       float64 `json:"page_ms"`
	ModelMS      float64 `json:"model_ms"`
	Error        string  `json:"error,omitempty"`
}

// LabPurge is the purge phase: one PURGE at one edge, then every running tier asked whether it
// still serves the object from its cache (GET with Cache-Control: only-if-cached).
type LabPurge struct {
	URL      string `json:"url"`
	PurgedAt string `json:"purged_at"`
	Status   int    `json:"status"`
	// Answer is the PURGE's answer body: the responses removed there and, with purge
	// fan-out, how many caches it was forwarded to and which failed.
	Answer string `json:"answer,omitempty"`
	// AnsweredSeconds is when the PURGE was answered: the fan-out waits for every cache.
	AnsweredSeconds float64 `json:"answered_seconds"`
	Converged       bool    `json:"converged"`
	// Seconds until no tier served it, or the time waited when some still did.
	Seconds           float64  `json:"seconds"`
	TiersChecked      []string `json:"tiers_checked"`
	TiersStillServing int      `json:"tiers_still_serving"`
	StillServing      []string `json:"still_serving"`
}

// LabLeftover counts what remains of a run after its clean-up: all zeros when it cleaned up.
type LabLeftover struct {
	Namespaces int `json:"namespaces"`
	Links      int `json:"links"`
	Processes  int `json:"processes"`
}

// Zero reports whether nothing is left.
func (l LabLeftover) Zero() bool { return l == LabLeftover{} }

// RunLab builds the topology, starts every server as its own process inside its namespace,
// measures, and removes everything it made whatever happens (also when ctx is cancelled, for
// example by SIGINT). The result is returned with the error when a phase failed after set-up,
// so the leftover count is always reported.
func RunLab(ctx context.Context, o LabOptions) (*LabResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := checkLabSupport(); err != nil {
		return nil, err
	}
	return runLab(ctx, o)
}

// The lab's addresses come from 198.18.0.0/15 (RFC 2544, the benchmarking range) and exist only
// inside its namespaces: link k is 198.18.k.0/24 (.1 on side a, .2 on side b); the servers'
// service addresses — what the DNS and the configs name — are 198.19.0.x.
var (
	labEdgeAddr   = func(e int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 0, byte(11 + e)}) }
	labParentAddr = netip.MustParseAddr("198.19.0.20")
	labOriginAddr = netip.MustParseAddr("198.19.0.30")
	labDNSAddr    = netip.MustParseAddr("198.19.0.53")
)

// Ports of the lab's servers, the same in every namespace.
const (
	labHTTPPort    = 80
	labFTPPort     = 21
	labFTPPassive  = 30000 // first passive data port; labFTPPassiveN of them are relayed
	labFTPPassiveN = 4
	labDNSPort     = 53
	labAdminPort   = 9090
)

// labNode is one namespace: a client region or a server.
type labNode struct {
	name string     // "region1", "edge1", "parent", "origin", "dns"
	svc  netip.Addr // service address (servers); zero for regions
}

// labLink is a veth pair between two nodes. A link with ports carries a delay line in a's
// namespace, listening on b's service address and relaying to b's end of the link; a link
// without ports only routes b's service address (UDP DNS, health checks), undelayed.
type labLink struct {
	idx          int
	a, b         *labNode
	aAddr, bAddr netip.Addr
	rtt          time.Duration
	ports        []int
	use          string
	bandwidth    int64         // bytes/s per direction (0: none)
	measured     time.Duration // RTT measured through the delay line (0: not measured)
}

// labTopology is the fixed graph of the lab.
type labTopology struct {
	regions, edges []*labNode
	parent, origin *labNode
	dns            *labNode
	links          []*labLink
}

// nodes lists every namespace in creation order.
func (t *labTopology) nodes() []*labNode {
	out := append([]*labNode{}, t.regions...)
	out = append(out, t.edges...)
	return append(out, t.parent, t.origin, t.dns)
}

// link finds the link from a to b.
func (t *labTopology) link(a, b *labNode) *labLink {
	for _, l := range t.links {
		if l.a == a && l.b == b {
			return l
		}
	}
	return nil
}

// newLabTopology lays out the nodes and links with the table's delays.
func newLabTopology(d LabDelays, parentTier bool) *labTopology {
	t := &labTopology{
		parent: &labNode{name: "parent", svc: labParentAddr},
		origin: &labNode{name: "origin", svc: labOriginAddr},
		dns:    &labNode{name: "dns", svc: labDNSAddr},
	}
	for i := range labRegions {
		t.regions = append(t.regions, &labNode{name: fmt.Sprintf("region%d", i+1)})
		t.edges = append(t.edges, &labNode{name: fmt.Sprintf("edge%d", i+1), svc: labEdgeAddr(i)})
	}
	add := func(a, b *labNode, rtt time.Duration, use string, ports ...int) {
		k := len(t.links) + 1
		t.links = append(t.links, &labLink{idx: k, a: a, b: b, rtt: rtt, ports: ports, use: use,
			aAddr: netip.AddrFrom4([4]byte{198, 18, byte(k), 1}), bAddr: netip.AddrFrom4([4]byte{198, 18, byte(k), 2})})
	}
	for r, rn := range t.regions {
		for e, en := range t.edges {
			use := "page loads"
			if r != e {
				use = "page loads after a failover"
			}
			add(rn, en, d.regionEdge(r, e), use, labHTTPPort)
			t.links[len(t.links)-1].bandwidth = d.EdgeBandwidth
		}
	}
	ftp := []int{labHTTPPort, labFTPPort}
	for i := range labFTPPassiveN {
		ftp = append(ftp, labFTPPassive+i)
	}
	parentUse, directUse := "edge misses", "none (edges use the parent)"
	if !parentTier {
		parentUse, directUse = "health check only, until the parent tier", "edge misses (no parent tier yet)"
	}
	for _, en := range t.edges {
		add(en, t.parent, d.EdgeParent, parentUse, labHTTPPort)
		add(en, t.origin, d.edgeOrigin(), directUse, ftp...)
	}
	add(t.parent, t.origin, d.ParentOrigin, "parent misses", ftp...)
	for _, rn := range t.regions {
		add(rn, t.dns, 0, "DNS queries (UDP, undelayed)")
	}
	for _, en := range t.edges {
		add(t.dns, en, 0, "DNS health checks (undelayed)")
	}
	if parentTier {
		for _, en := range t.edges {
			add(t.parent, en, d.EdgeParent, purgeUse, labHTTPPort)
		}
	}
	return t
}

// purgeUse is the use of the parent → edge links: the parent's purge fan-out to its edges
// ([proxy.purge] peers), the reverse direction of the edge → parent links.
const purgeUse = "purge fan-out (the parent's PURGE to its edges)"
