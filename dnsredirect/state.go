package dnsredirect

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/dnsredirect/geodb"
	"github.com/outpost-proxy/outpost/internal/config"
)

// state is one loaded configuration: zones, edges, pools, maps and databases, plus the cache of
// packed answers built from them. It is immutable once published (the cache and the health it
// points at are safe for concurrent use); a reload builds a new one and swaps it in atomically.
type state struct {
	cfg   config.DNSConfig
	zones map[string]*zone // by lower-case origin

	edges     []*edge
	edgeIdx   map[string]int
	pools     map[string]*pool
	dyn       map[string]*dynName
	order     []stepKind
	nets4     *trie
	nets6     *trie
	netsEdges [][]int  // per nets entry (one per prefix): ordered edges
	netsNames []string // per nets entry: the prefix, for explanations
	asnMap    map[uint32][]int
	cityDB    *geodb.DB
	asnDB     *geodb.DB

	ecs       config.DNSECSConfig
	ednsSize  uint16
	version   string
	xfrAllow  []netip.Prefix
	files     []fileStamp
	cache     *answerCache
	decisions decisionCache             // steering candidates by client network
	counters  map[string]*queryCounters // by zone origin; "" for names outside our zones
	serials   map[string]zoneSerial     // by zone origin: the serial served and its content (transfer.go)
	noZone    *queryCounters
	log       *slog.Logger

	now     time.Time              // when the state was built: the signing time (dnssec.go)
	signers map[string]*zoneSigner // signed zones by origin
	signed  bool                   // any zone is signed: DO queries get their own answers
}

// edge is one edge of a loaded configuration.
type edge struct {
	name               string
	addrs              []netip.Addr
	lat, lon           float64 // radians
	hasCoords          bool
	country, continent string
	weight             int
	full               bool
	h                  *edgeHealth
	answers            prometheus.Counter
}

// pool is a set of edges and its fallback.
type pool struct {
	name          string
	edges         []int
	member        uint64 // bit per edge index
	fallback      string // all, static, empty
	fallbackAddrs []netip.Addr
	lastLog       atomic.Int64 // last fallback log line (unix ns)
}

// dynName is a steered name.
type dynName struct {
	name    string
	pool    *pool
	ttl     uint32
	answers int
	xfr     transferView // what a zone transfer carries for it (transfer.go)
}

// fileStamp is a watched file's modification time and size when it was loaded.
type fileStamp struct {
	path string
	mod  time.Time
	size int64
}

// buildState loads cfg into a new state. prev (may be nil) lends GeoIP databases that have not
// changed. Nothing of the running server changes here: an error leaves it as it was.
func buildState(cfg config.DNSConfig, dataDir string, prev *state, hs *healthSet, m *metrics) (*state, error) {
	return buildStateAt(cfg, dataDir, prev, hs, m, time.Now())
}

// buildStateAt is buildState with the time the zones are signed at.
func buildStateAt(cfg config.DNSConfig, dataDir string, prev *state, hs *healthSet, m *metrics, now time.Time) (*state, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st := &state{cfg: cfg, ecs: cfg.ECS, ednsSize: uint16(cfg.EDNSUDPSize), version: cfg.VersionBind,
		zones: map[string]*zone{}, edgeIdx: map[string]int{}, pools: map[string]*pool{},
		dyn: map[string]*dynName{}, asnMap: map[uint32][]int{}, nets4: newTrie(), nets6: newTrie(),
		cache: newAnswerCache(cfg.MaxCachedAnswers), counters: map[string]*queryCounters{}, now: now}
	st.decisions.max = max(cfg.MaxCachedAnswers, 1)
	for _, s := range cfg.Order {
		st.order = append(st.order, stepKind(map[string]int{"nets": 0, "asn": 1, "geo": 2, "default": 3}[s]))
	}
	st.xfrAllow, _ = config.ParsePrefixes("dns.transfer.allow", cfg.Transfer.Allow)
	for _, f := range []func(*state, config.DNSConfig, string, *state, *healthSet, *metrics) error{
		(*state).loadEdges, (*state).loadZones, (*state).loadDNSSEC, (*state).loadMaps, (*state).loadDatabases,
		(*state).assignSerials,
	} {
		if err := f(st, cfg, dataDir, prev, hs, m); err != nil {
			return nil, err
		}
	}
	if m != nil {
		for origin := range st.zones {
			st.counters[origin] = m.zoneCounters(strings.TrimSuffix(origin, "."))
		}
		st.noZone = m.zoneCounters("")
	}
	return st, nil
}

// loadEdges builds edges, pools and dynamic names.
func (st *state) loadEdges(cfg config.DNSConfig, _ string, _ *state, hs *healthSet, m *metrics) error {
	for i, ec := range cfg.Edges {
		e := &edge{name: ec.Name, country: strings.ToUpper(ec.Country), continent: strings.ToUpper(ec.Continent),
			weight: max(ec.Weight, 1), full: ec.Full}
		for _, a := range ec.Addrs {
			e.addrs = append(e.addrs, netip.MustParseAddr(a).Unmap())
		}
		if ec.Latitude != 0 || ec.Longitude != 0 {
			e.lat, e.lon, e.hasCoords = ec.Latitude*math.Pi/180, ec.Longitude*math.Pi/180, true
		}
		if hs != nil {
			e.h = hs.get(ec.Name, specFor(ec, cfg.Health))
		} else {
			e.h = &edgeHealth{name: ec.Name}
			e.h.checked.Store(true)
		}
		if m != nil {
			e.answers = m.answers.WithLabelValues(ec.Name)
		}
		st.edgeIdx[strings.ToLower(ec.Name)] = i
		st.edges = append(st.edges, e)
	}
	for _, pc := range cfg.Pools {
		p := &pool{name: pc.Name, fallback: pc.Fallback}
		if p.fallback == "" {
			p.fallback = "all"
		}
		for _, n := range pc.Edges {
			i := st.edgeIdx[strings.ToLower(n)]
			if p.member&(1<<i) == 0 {
				p.edges = append(p.edges, i)
				p.member |= 1 << i
			}
		}
		for _, a := range pc.FallbackAddrs {
			p.fallbackAddrs = append(p.fallbackAddrs, netip.MustParseAddr(a).Unmap())
		}
		st.pools[strings.ToLower(pc.Name)] = p
	}
	for _, dc := range cfg.Dynamic {
		d := &dynName{name: config.CanonicalDNSName(dc.Name), pool: st.pools[strings.ToLower(dc.Pool)],
			ttl: uint32(cfg.DynamicTTL / time.Second), answers: cfg.Answers}
		if dc.TTL > 0 {
			d.ttl = uint32(dc.TTL / time.Second)
		}
		if dc.Answers > 0 {
			d.answers = dc.Answers
		}
		d.xfr = st.transferViewOf(dc, d.pool)
		if st.dyn[d.name] != nil {
			return config.Errorf("dns.dynamic", "name %s appears twice", d.name)
		}
		st.dyn[d.name] = d
	}
	return nil
}

// loadZones parses every zone and attaches the dynamic names to their nodes.
func (st *state) loadZones(cfg config.DNSConfig, dataDir string, _ *state, _ *healthSet, _ *metrics) error {
	for i, zc := range cfg.Zones {
		origin := config.CanonicalDNSName(zc.Name)
		file := ""
		if zc.File != "" {
			file = dataPath(dataDir, zc.File)
			if err := st.watch(file); err != nil {
				return fmt.Errorf("dns.zones[%d].file: %w", i, err)
			}
		}
		ttl := uint32(3600)
		if zc.TTL > 0 {
			ttl = uint32(zc.TTL / time.Second)
		}
		z, err := loadZone(origin, ttl, zc.Records, file)
		if err != nil {
			return fmt.Errorf("dns.zones[%d]: %w", i, err)
		}
		st.zones[origin] = z
	}
	for name, d := range st.dyn {
		z := st.findZone(name)
		if z == nil {
			return config.Errorf("dns.dynamic", "%s is in none of the zones", name)
		}
		if cut, _ := z.cutAbove(name); cut != "" {
			return config.Errorf("dns.dynamic", "%s is below the delegation %s", name, cut)
		}
		n := z.node(name)
		if len(n.rrsets[dns.TypeCNAME]) > 0 || len(n.rrsets[dns.TypeA]) > 0 || len(n.rrsets[dns.TypeAAAA]) > 0 {
			return config.Errorf("dns.dynamic", "%s also has static CNAME, A or AAAA records", name)
		}
		n.dyn = d
	}
	return nil
}

// loadMaps builds the networks trie and the ASN map.
func (st *state) loadMaps(cfg config.DNSConfig, _ string, _ *state, _ *healthSet, _ *metrics) error {
	for i, nc := range cfg.Nets {
		prefixes, _ := config.ParsePrefixes(fmt.Sprintf("dns.nets[%d].prefixes", i), nc.Prefixes)
		var edges []int
		for _, n := range nc.Edges {
			edges = append(edges, st.edgeIdx[strings.ToLower(n)])
		}
		for _, p := range prefixes {
			t := st.nets6
			if p.Addr().Unmap().Is4() {
				t = st.nets4
				p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-(p.Addr().BitLen()-32)))
			}
			t.insert(p, len(st.netsEdges))
			st.netsEdges = append(st.netsEdges, edges)
			st.netsNames = append(st.netsNames, p.String())
		}
	}
	for _, ac := range cfg.ASN {
		var edges []int
		for _, n := range ac.Edges {
			edges = append(edges, st.edgeIdx[strings.ToLower(n)])
		}
		for _, a := range ac.ASNs {
			if _, dup := st.asnMap[uint32(a)]; !dup {
				st.asnMap[uint32(a)] = edges
			}
		}
	}
	return nil
}

// loadDatabases opens the GeoIP databases, writing the demo ones first when asked and absent.
func (st *state) loadDatabases(cfg config.DNSConfig, dataDir string, prev *state, _ *healthSet, _ *metrics) error {
	g := cfg.GeoIP
	for _, d := range []struct {
		key, path string
		kind      geodb.Kind
		dst       **geodb.DB
		old       *geodb.DB
	}{
		{"dns.geoip.city_db", g.CityDB, geodb.City, &st.cityDB, prevDB(prev, true)},
		{"dns.geoip.asn_db", g.ASNDB, geodb.ASN, &st.asnDB, prevDB(prev, false)},
	} {
		if d.path == "" {
			continue
		}
		path := dataPath(dataDir, d.path)
		if err := ensureDemoDB(g, dataDir, d.kind, path); err != nil {
			return fmt.Errorf("%s: %w", d.key, err)
		}
		if err := st.watch(path); err != nil {
			return fmt.Errorf("%s: %w", d.key, err)
		}
		if d.old != nil && d.old.Path == path && prev.stamp(path) == st.stamp(path) {
			*d.dst = d.old
			continue
		}
		db, err := geodb.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", d.key, err)
		}
		*d.dst = db
	}
	return nil
}

func prevDB(prev *state, city bool) *geodb.DB {
	if prev == nil {
		return nil
	}
	if city {
		return prev.cityDB
	}
	return prev.asnDB
}

// ensureDemoDB writes the demo database of kind at path when generate_demo is on and the file
// does not exist. An existing file (a real GeoLite2 database, say) is never overwritten.
func ensureDemoDB(g config.DNSGeoIPConfig, dataDir string, kind geodb.Kind, path string) error {
	if !g.GenerateDemo {
		return nil
	}
	if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	csv := ""
	if g.DemoCSV != "" {
		csv = dataPath(dataDir, g.DemoCSV)
	}
	return geodb.BuildFile(kind, csv, geodb.DemoCSV, path)
}

// watch records a file's stamp for change detection; the file must exist.
func (st *state) watch(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st.files = append(st.files, fileStamp{path: path, mod: fi.ModTime(), size: fi.Size()})
	return nil
}

// stamp returns the recorded stamp of path.
func (st *state) stamp(path string) fileStamp {
	for _, f := range st.files {
		if f.path == path {
			return f
		}
	}
	return fileStamp{}
}

// changedFiles reports whether any watched file differs from when it was loaded.
func (st *state) changedFiles() (string, bool) {
	for _, f := range st.files {
		fi, err := os.Stat(f.path)
		if err != nil || !fi.ModTime().Equal(f.mod) || fi.Size() != f.size {
			return f.path, true
		}
	}
	return "", false
}

// dataPath resolves a configured path against the data directory.
func dataPath(dataDir, p string) string {
	if filepath.IsAbs(p) || dataDir == "" {
		return p
	}
	return filepath.Join(dataDir, p)
}

// healthSpecs are the checks of a configuration, by edge name.
func healthSpecs(cfg config.DNSConfig) map[string]checkSpec {
	out := map[string]checkSpec{}
	for _, e := range cfg.Edges {
		out[e.Name] = specFor(e, cfg.Health)
	}
	return out
}
