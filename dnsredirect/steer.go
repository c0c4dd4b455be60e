package dnsredirect

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"sync"
)

// stepKind is a steering step; the order is configurable (dns.order).
type stepKind uint8

const (
	stepNets stepKind = iota
	stepASN
	stepGeo
	stepDefault
	stepFallback
	numSteps
)

var stepNames = [numSteps]string{"nets", "asn", "geo", "default", "fallback"}

func (s stepKind) String() string { return stepNames[s] }

// selection is the outcome of steering: up to 8 edges in answer order, or the pool's fallback.
type selection struct {
	fallback bool
	n        uint8
	edges    [8]uint8
}

// key packs the selection into the answer-cache key (edge index+1 per byte; bit 63: fallback).
func (s *selection) key() uint64 {
	if s.fallback {
		return 1 << 63
	}
	var k uint64
	for i := range s.n {
		k = k<<8 | uint64(s.edges[i]+1)
	}
	return k
}

// cand is a candidate edge with its rank (lower is better; equal ranks share by weight).
type cand struct {
	e    uint8
	rank float64
}

// steer chooses the edges of dynamic name d for a client address. It returns the selection, the
// step that decided, and the ECS scope: the widest prefix around client over which every step
// consulted gives the same outcome. ex, when not nil, records the steps.
//
// The candidates of each step (before health) are cached per pool and client /24 (/56 for
// IPv6) when every step's outcome is uniform over that block, so a query costs the lookups
// once per network; health and weights apply per query.
func (st *state) steer(d *dynName, client netip.Addr, ex *Explain) (selection, stepKind, int) {
	if ex != nil {
		return st.decide(d, st.decision(d, client, ex), ex)
	}
	key := decisionKeyOf(d.pool, client)
	if dec := st.decisions.get(key); dec != nil {
		return st.decide(d, dec, nil)
	}
	dec := st.decision(d, client, nil)
	if dec.maxScope <= key.bits {
		st.decisions.put(key, dec)
	}
	return st.decide(d, dec, nil)
}

// decision is what each steering step offers for one client network, before health.
type decision struct {
	steps    [numSteps - 1]decisionStep
	n        int
	maxScope int
}

type decisionStep struct {
	kind  stepKind
	cands []cand
	scope int // cumulative scope after this step
}

// decision consults every configured step for client.
func (st *state) decision(d *dynName, client netip.Addr, ex *Explain) *decision {
	dec := &decision{}
	var buf [64]cand
	scope := 0
	for _, s := range st.order {
		var cs []cand
		switch s {
		case stepNets:
			cs = st.netsCands(client, buf[:0], &scope, ex)
		case stepASN:
			cs = st.asnCands(client, buf[:0], &scope, ex)
		case stepGeo:
			cs = st.geoCands(d, client, buf[:0], &scope, ex)
		case stepDefault:
			cs = buf[:0]
			for _, e := range d.pool.edges {
				cs = append(cs, cand{e: uint8(e)})
			}
		}
		dec.steps[dec.n] = decisionStep{kind: s, cands: slices.Clone(cs), scope: scope}
		dec.n++
	}
	dec.maxScope = scope
	return dec
}

// decide applies health and weights to a decision: the first step with a healthy candidate
// chooses; with none, the pool's fallback answers.
func (st *state) decide(d *dynName, dec *decision, ex *Explain) (sel selection, step stepKind, scope int) {
	var buf [64]cand
	for _, ds := range dec.steps[:dec.n] {
		scope = ds.scope
		if len(ds.cands) == 0 {
			continue
		}
		cs := append(buf[:0], ds.cands...)
		if st.choose(d, cs, &sel) {
			if ex != nil {
				ex.trimAfter(ds.kind)
				ex.decide(ds.kind, "", st.selNames(d, &sel))
			}
			return sel, ds.kind, scope
		}
		if ex != nil {
			ex.decide(ds.kind, "no healthy candidate in the pool", "")
		}
	}
	sel.fallback = true
	if ex != nil {
		ex.step(stepFallback, "every edge of pool "+d.pool.name+" is down: fallback "+d.pool.fallback, st.selNames(d, &sel))
	}
	return sel, stepFallback, scope
}

// decisionKey names a pool and a client network (/24 or /56) in the decision cache.
type decisionKey struct {
	pool *pool
	hi   uint64 // the network's leading bits
	v6   bool
	bits int // the network's prefix length: entries must be uniform over it
}

func decisionKeyOf(p *pool, a netip.Addr) decisionKey {
	if a.Is4() {
		b := a.As4()
		return decisionKey{pool: p, hi: uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2]), bits: 24}
	}
	b := a.As16()
	var hi uint64
	for _, x := range b[:7] {
		hi = hi<<8 | uint64(x)
	}
	return decisionKey{pool: p, hi: hi, v6: true, bits: 56}
}

// decisionCache holds decisions by client network; it is bounded and lives as long as one
// loaded configuration.
type decisionCache struct {
	mu  sync.RWMutex
	m   map[decisionKey]*decision
	max int
}

func (c *decisionCache) get(k decisionKey) *decision {
	c.mu.RLock()
	d := c.m[k]
	c.mu.RUnlock()
	return d
}

func (c *decisionCache) put(k decisionKey, d *decision) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[decisionKey]*decision{}
	}
	if len(c.m) < c.max {
		c.m[k] = d
	}
	c.mu.Unlock()
}

// netsCands looks the client up in the explicit networks map.
func (st *state) netsCands(client netip.Addr, cs []cand, scope *int, ex *Explain) []cand {
	t := st.nets6
	if client.Is4() {
		t = st.nets4
	}
	entry, bits := t.lookup(client)
	*scope = max(*scope, bits)
	if entry < 0 {
		if ex != nil {
			ex.step(stepNets, "no match (uniform over /"+strconv.Itoa(bits)+")", "")
		}
		return cs
	}
	if ex != nil {
		ex.step(stepNets, "matched "+st.netsNames[entry], "")
	}
	for i, e := range st.netsEdges[entry] {
		cs = append(cs, cand{e: uint8(e), rank: float64(i)})
	}
	return cs
}

// asnCands looks the client's AS number up in the ASN database and the ASN map.
func (st *state) asnCands(client netip.Addr, cs []cand, scope *int, ex *Explain) []cand {
	if st.asnDB == nil {
		return cs
	}
	asn, network, found, err := st.asnDB.ASN(client)
	if err != nil {
		if ex != nil {
			ex.step(stepASN, "lookup error: "+err.Error(), "")
		}
		return cs
	}
	if network.IsValid() {
		*scope = max(*scope, network.Bits())
	}
	if !found {
		if ex != nil {
			ex.step(stepASN, "not in the ASN database", "")
		}
		return cs
	}
	list := st.asnMap[asn]
	if ex != nil {
		ex.step(stepASN, "AS"+strconv.FormatUint(uint64(asn), 10)+" ("+network.String()+")", "")
	}
	for i, e := range list {
		cs = append(cs, cand{e: uint8(e), rank: float64(i)})
	}
	return cs
}

// geoCands ranks the pool's edges by great-circle distance from the client's location.
func (st *state) geoCands(d *dynName, client netip.Addr, cs []cand, scope *int, ex *Explain) []cand {
	if st.cityDB == nil {
		return cs
	}
	loc, network, found, err := st.cityDB.City(client)
	if err != nil {
		if ex != nil {
			ex.step(stepGeo, "lookup error: "+err.Error(), "")
		}
		return cs
	}
	if network.IsValid() {
		*scope = max(*scope, network.Bits())
	}
	if !found || (!loc.HasCoords && loc.Country == "" && loc.Continent == "") {
		if ex != nil {
			ex.step(stepGeo, "no location in the city database", "")
		}
		return cs
	}
	if ex != nil {
		ex.step(stepGeo, "located "+loc.Country+"/"+loc.Continent+" at "+
			strconv.FormatFloat(loc.Latitude, 'f', 2, 64)+","+strconv.FormatFloat(loc.Longitude, 'f', 2, 64)+
			" ("+network.String()+")", "")
	}
	lat, lon := loc.Latitude*math.Pi/180, loc.Longitude*math.Pi/180
	for _, i := range d.pool.edges {
		e := st.edges[i]
		var km float64
		switch {
		case e.hasCoords && loc.HasCoords:
			km = math.Round(haversine(lat, lon, e.lat, e.lon))
		case e.country != "" && e.country == loc.Country:
			km = 0
		case e.continent != "" && e.continent == loc.Continent:
			km = continentKM
		default:
			km = farKM
		}
		cs = append(cs, cand{e: uint8(i), rank: km})
	}
	return cs
}

// Distances used when an edge or the client has no coordinates.
const (
	earthRadiusKM = 6371.0
	continentKM   = 5000.0  // same continent, no coordinates
	farKM         = 20038.0 // half the circumference: anywhere else
)

// haversine is the great-circle distance in km between two points given in radians.
func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	s1 := math.Sin((lat2 - lat1) / 2)
	s2 := math.Sin((lon2 - lon1) / 2)
	a := s1*s1 + math.Cos(lat1)*math.Cos(lat2)*s2*s2
	return 2 * earthRadiusKM * math.Asin(math.Sqrt(min(1, a)))
}

// choose fills sel with the best N healthy pool members of cs: full edges last, equal ranks
// ordered by weighted random choice. It reports whether any edge was chosen.
func (st *state) choose(d *dynName, cs []cand, sel *selection) bool {
	k := 0
	for _, c := range cs {
		e := st.edges[c.e]
		if d.pool.member&(1<<c.e) == 0 || !e.h.up() {
			continue
		}
		if e.full {
			c.rank += 1e9
		}
		cs[k] = c
		k++
	}
	cs = cs[:k]
	if k == 0 {
		return false
	}
	for i := 1; i < len(cs); i++ { // insertion sort: a handful of edges, stable
		for j := i; j > 0 && cs[j].rank < cs[j-1].rank; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
	for i := 0; i < len(cs) && int(sel.n) < d.answers; {
		j := i
		for j < len(cs) && cs[j].rank == cs[i].rank {
			j++
		}
		st.takeWeighted(d, cs[i:j], sel)
		i = j
	}
	return true
}

// takeWeighted appends edges of one rank to sel in weighted random order until sel is full.
func (st *state) takeWeighted(d *dynName, run []cand, sel *selection) {
	for len(run) > 0 && int(sel.n) < d.answers {
		idx := 0
		if len(run) > 1 {
			total := 0
			for _, c := range run {
				total += st.edges[c.e].weight
			}
			r := rand.IntN(total)
			for idx = 0; idx < len(run)-1; idx++ {
				if r -= st.edges[run[idx].e].weight; r < 0 {
					break
				}
			}
		}
		sel.edges[sel.n] = run[idx].e
		sel.n++
		run[idx] = run[len(run)-1]
		run = run[:len(run)-1]
	}
}

// selectionAddrs are the addresses a selection answers with, of one family.
func (st *state) selectionAddrs(d *dynName, sel *selection, v4 bool) []netip.Addr {
	var out []netip.Addr
	add := func(as []netip.Addr) {
		for _, a := range as {
			if a.Is4() == v4 {
				out = append(out, a)
			}
		}
	}
	if !sel.fallback {
		for _, i := range sel.edges[:sel.n] {
			add(st.edges[i].addrs)
		}
		return out
	}
	switch d.pool.fallback {
	case "all":
		for _, i := range d.pool.edges {
			add(st.edges[i].addrs)
		}
	case "static":
		add(d.pool.fallbackAddrs)
	}
	return out
}

// selNames names the chosen edges for logs and explanations.
func (st *state) selNames(d *dynName, sel *selection) string {
	if sel.fallback {
		return "fallback " + d.pool.fallback
	}
	s := ""
	for i, e := range sel.edges[:sel.n] {
		if i > 0 {
			s += ","
		}
		s += st.edges[e].name
	}
	return s
}
