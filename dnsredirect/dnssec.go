package dnsredirect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/outpost-proxy/outpost/internal/config"
)

// zoneSigner signs one zone's answers online for one state (RFC 4035 §3.1, RFC 9824): the
// keys in use at the state's signing time, the DNSKEY RRset they publish, and the signatures
// made so far, cached by RRset. Every signature of a signer has the same inception and
// expiration, so a signature is a pure function of the RRset and can be cached with the
// packed answer; the state is rebuilt (re-signed) by deadline.
type zoneSigner struct {
	zone       *zone
	cfg        config.DNSSECConfig // with defaults applied
	keys       []*dnssecKey        // every key of the zone on disk
	dnskeys    []dns.RR            // the DNSKEY RRset published at signTime
	ksks, zsks []*dnssecKey        // the keys signing the DNSKEY RRset, and everything else
	signTime   time.Time
	inception  uint32
	expiration uint32
	deadline   time.Time // the refresh point or the next key timing event, whichever is first
	sigs       *sigCache
	keyDir     string
}

// sigCache holds signatures by RRset (owner, type, TTL and content), bounded.
type sigCache struct {
	mu  sync.Mutex
	m   map[string][]dns.RR
	max int
}

func (c *sigCache) get(k string) ([]dns.RR, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	return s, ok
}

func (c *sigCache) put(k string, sigs []dns.RR) {
	c.mu.Lock()
	if len(c.m) < c.max {
		c.m[k] = sigs
	}
	c.mu.Unlock()
}

// denial is where an answer ended negatively, or the delegation it was referred to: the zone,
// the name, and its node (nil for a name that does not exist).
type denial struct {
	zone *zone
	name string
	node *node
}

// loadDNSSEC sets up the signers of the zones with dnssec.enabled, generating keys on first
// start, and publishes each zone's DNSKEY RRset at its apex.
func (st *state) loadDNSSEC(cfg config.DNSConfig, dataDir string, prev *state, _ *healthSet, _ *metrics) error {
	st.signers = map[string]*zoneSigner{}
	for i, zc := range cfg.Zones {
		if !zc.DNSSEC.Enabled {
			continue
		}
		origin := config.CanonicalDNSName(zc.Name)
		var old *zoneSigner
		if prev != nil {
			old = prev.signers[origin]
		}
		fresh := &sigCache{m: map[string][]dns.RR{}, max: max(cfg.MaxCachedAnswers, 1)}
		zs, err := newZoneSigner(st.zones[origin], zc.DNSSEC.WithDefaults(), dataDir, st.now, old, fresh)
		if err != nil {
			return config.Errorf(fmt.Sprintf("dns.zones[%d].dnssec", i), "%v", err)
		}
		if err := st.watchKeys(zs); err != nil {
			return fmt.Errorf("dns.zones[%d].dnssec.key_dir: %w", i, err)
		}
		st.signers[origin] = zs
		st.signed = true
	}
	st.publishChildDS()
	return nil
}

// publishChildDS completes the chain of trust between zones served together: a signed zone
// whose signed parent delegates to it, with no DS of its own there, gets the DS (SHA-256) of
// its published KSKs at the parent's delegation point — what `outpost dns ds` prints for an
// outside parent. A DS configured in the parent is left as it is.
func (st *state) publishChildDS() {
	for origin, zs := range st.signers {
		parent := st.parentZone(zs.zone)
		n := parent.nodes[origin]
		if parent == zs.zone || st.signers[parent.origin] == nil || n == nil || !n.cut || len(n.rrsets[dns.TypeDS]) > 0 {
			continue
		}
		ttl := n.rrsets[dns.TypeNS][0].Header().Ttl
		for _, rr := range zs.dnskeys {
			if k := rr.(*dns.DNSKEY); k.Flags&dns.SEP != 0 {
				ds := k.ToDS(dns.SHA256)
				ds.Hdr.Ttl = ttl
				n.rrsets[dns.TypeDS] = append(n.rrsets[dns.TypeDS], ds)
				parent.records = append(parent.records, ds)
			}
		}
	}
}

// watchKeys watches the key directory and files, so a rollover or a key dropped in reloads.
func (st *state) watchKeys(zs *zoneSigner) error {
	if err := st.watch(zs.keyDir); err != nil {
		return err
	}
	for _, k := range zs.keys {
		for _, suffix := range []string{".key", ".private"} {
			if err := st.watch(k.base + suffix); err != nil {
				return err
			}
		}
	}
	return nil
}

// newZoneSigner loads (or generates) z's keys and picks those in use at now. It reuses old's
// signing time and signatures when the keys in use and the settings are unchanged and old is
// not due for refresh, so a reload does not re-sign everything; else it starts on fresh.
func newZoneSigner(z *zone, c config.DNSSECConfig, dataDir string, now time.Time, old *zoneSigner, fresh *sigCache) (*zoneSigner, error) {
	if err := checkSignable(z, c); err != nil {
		return nil, err
	}
	zs := &zoneSigner{zone: z, cfg: c, keyDir: dataPath(dataDir, c.KeyDir)}
	keys, err := loadKeys(zs.keyDir, z.origin)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		if keys, err = generateKeySet(zs.keyDir, z.origin, c, now); err != nil {
			return nil, err
		}
	}
	zs.keys = keys
	if err := zs.pickKeys(now); err != nil {
		return nil, err
	}
	zs.signTime, zs.sigs = now, fresh
	if old != nil && old.cfg == c && old.fingerprint() == zs.fingerprint() && now.Before(old.refreshAt()) {
		zs.signTime, zs.sigs = old.signTime, old.sigs
	}
	zs.inception = uint32(zs.signTime.Add(-c.InceptionOffset).Unix())
	zs.expiration = uint32(zs.signTime.Add(c.SignatureValidity).Unix())
	zs.deadline = zs.refreshAt()
	for _, k := range keys {
		for _, e := range k.events() {
			if e.After(now) && e.Before(zs.deadline) {
				zs.deadline = e
			}
		}
	}
	zs.publish()
	return zs, nil
}

// checkSignable rejects what an online signer cannot serve: DNSSEC records of its own in the
// zone data, and TTLs longer than the refresh margin (a cached record would outlive its
// signature).
func checkSignable(z *zone, c config.DNSSECConfig) error {
	for _, rr := range z.records {
		switch t := rr.Header().Rrtype; t {
		case dns.TypeDNSKEY, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM:
			return fmt.Errorf("zone %s has a %s record: a signed zone's DNSSEC records come from its keys", z.origin, dns.TypeToString[t])
		}
		if ttl := time.Duration(rr.Header().Ttl) * time.Second; ttl >= c.Refresh {
			return fmt.Errorf("refresh %s must exceed the largest TTL in zone %s (%s, %s)", c.Refresh, z.origin, ttl, rr.Header().Name)
		}
	}
	return nil
}

// generateKeySet makes the first keys of a zone: a KSK and a ZSK, or one CSK.
func generateKeySet(dir, zone string, c config.DNSSECConfig, now time.Time) ([]*dnssecKey, error) {
	timing := keyTiming{created: now, publish: now, activate: now}
	roles := []bool{true, false}
	if c.Keys == "csk" {
		roles = []bool{true}
	}
	var keys []*dnssecKey
	for _, ksk := range roles {
		k, err := generateKey(dir, zone, c.AlgorithmNumber(), ksk, timing)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *dnssecKey) int { return int(a.tag) - int(b.tag) }) // as loadKeys reads them back
	return keys, nil
}

// pickKeys chooses the DNSKEY RRset and the signing keys at now. SEP keys sign the DNSKEY
// RRset and the other keys the rest; without an active non-SEP key the SEP keys sign
// everything (a CSK), and the other way round.
func (zs *zoneSigner) pickKeys(now time.Time) error {
	zs.dnskeys, zs.ksks, zs.zsks = nil, nil, nil
	for _, k := range zs.keys {
		if !k.published(now) {
			continue
		}
		pub := *k.pub
		pub.Hdr.Ttl = uint32(zs.cfg.DNSKEYTTL / time.Second)
		zs.dnskeys = append(zs.dnskeys, &pub)
		switch {
		case !k.active(now):
		case k.ksk():
			zs.ksks = append(zs.ksks, k)
		default:
			zs.zsks = append(zs.zsks, k)
		}
	}
	if len(zs.ksks) == 0 && len(zs.zsks) == 0 {
		return fmt.Errorf("no key of %s in %s is active now (check the Publish/Activate/Inactive/Delete times)", zs.zone.origin, zs.keyDir)
	}
	if len(zs.ksks) == 0 {
		zs.ksks = zs.zsks
	}
	if len(zs.zsks) == 0 {
		zs.zsks = zs.ksks
	}
	return nil
}

// fingerprint identifies the keys in use, for reusing signatures across reloads. It does not
// depend on the order the keys were generated or read from disk in.
func (zs *zoneSigner) fingerprint() string {
	var parts []string
	for _, rr := range zs.dnskeys {
		parts = append(parts, fmt.Sprintf("p%d", rr.(*dns.DNSKEY).KeyTag()))
	}
	for _, k := range zs.ksks {
		parts = append(parts, fmt.Sprintf("k%d", k.tag))
	}
	for _, k := range zs.zsks {
		parts = append(parts, fmt.Sprintf("z%d", k.tag))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// refreshAt is when this signer's signatures have only cfg.Refresh of validity left.
func (zs *zoneSigner) refreshAt() time.Time {
	return zs.signTime.Add(zs.cfg.SignatureValidity - zs.cfg.Refresh)
}

// publish puts the DNSKEY RRset at the zone apex (answers and zone transfers).
func (zs *zoneSigner) publish() {
	z := zs.zone
	z.nodes[z.origin].rrsets[dns.TypeDNSKEY] = zs.dnskeys
	z.records = append(z.records, zs.dnskeys...) // and so in the serial's content hash (transfer.go)
}

// sign returns the RRSIGs of one RRset: by the KSKs for the DNSKEY RRset, else by the ZSKs.
func (zs *zoneSigner) sign(rrset []dns.RR) []dns.RR {
	var kb strings.Builder
	for _, rr := range rrset {
		kb.WriteString(strings.ToLower(rr.String()))
		kb.WriteByte('\n')
	}
	key := kb.String()
	if sigs, ok := zs.sigs.get(key); ok {
		return sigs
	}
	keys := zs.zsks
	if rrset[0].Header().Rrtype == dns.TypeDNSKEY {
		keys = zs.ksks
	}
	sigs := make([]dns.RR, 0, len(keys))
	for _, k := range keys {
		sig := &dns.RRSIG{Hdr: dns.RR_Header{Ttl: rrset[0].Header().Ttl}, Algorithm: k.pub.Algorithm,
			KeyTag: k.tag, SignerName: zs.zone.origin, Inception: zs.inception, Expiration: zs.expiration}
		if err := sig.Sign(k.priv, rrset); err != nil {
			continue // the key was checked when loaded; an RRset miekg cannot canonicalise stays unsigned
		}
		sigs = append(sigs, sig)
	}
	zs.sigs.put(key, sigs)
	return sigs
}

// dnssecDeadline is when the state must be rebuilt to keep its signatures fresh and follow
// the key timing (zero: no signed zone).
func (st *state) dnssecDeadline() time.Time {
	var d time.Time
	for _, zs := range st.signers {
		if d.IsZero() || zs.deadline.Before(d) {
			d = zs.deadline
		}
	}
	return d
}

// signAnswer adds DNSSEC records to a resolved answer for a query with DO set (RFC 4035
// §3.1): RRSIGs beside every authoritative RRset of a signed zone, the compact denial for a
// negative answer, and for a referral the DS RRset or the NSEC proving there is none.
func (st *state) signAnswer(res *result, qtype uint16) {
	m := res.msg
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return
	}
	m.Answer = st.signSection(m.Answer)
	switch {
	case res.neg != nil:
		st.deny(res, qtype)
	case res.cut != nil:
		st.signReferral(res)
	}
	if m.Authoritative {
		m.Extra = st.signSection(m.Extra)
	}
}

// signSection signs each RRset of a section that belongs to a signed zone (glue below a cut
// stays unsigned), each RRset followed by its RRSIGs.
func (st *state) signSection(rrs []dns.RR) []dns.RR {
	if len(rrs) == 0 {
		return rrs
	}
	out := make([]dns.RR, 0, 2*len(rrs))
	for _, set := range rrsets(rrs) {
		out = append(out, set...)
		h := set[0].Header()
		if zs := st.signerOf(strings.ToLower(h.Name), h.Rrtype); zs != nil {
			out = append(out, zs.sign(set)...)
		}
	}
	return out
}

// rrsets groups records by owner and type, in order of first appearance.
func rrsets(rrs []dns.RR) [][]dns.RR {
	var out [][]dns.RR
	for _, rr := range rrs {
		h := rr.Header()
		i := slices.IndexFunc(out, func(s []dns.RR) bool {
			return s[0].Header().Rrtype == h.Rrtype && strings.EqualFold(s[0].Header().Name, h.Name)
		})
		if i < 0 {
			out = append(out, []dns.RR{rr})
			continue
		}
		out[i] = append(out[i], rr)
	}
	return out
}

// signerOf is the signer of the zone that is authoritative for owner's RRset of type t, or
// nil (unsigned zone, or data below a delegation other than the DS at the cut). A DS at a
// zone's apex is its parent's, when we serve the parent.
func (st *state) signerOf(owner string, t uint16) *zoneSigner {
	z := st.findZone(owner)
	if z == nil {
		return nil
	}
	if t == dns.TypeDS && z.origin == owner {
		z = st.parentZone(z)
	}
	zs := st.signers[z.origin]
	if zs == nil {
		return nil
	}
	if cut, n := z.cutAbove(owner); n != nil && (cut != owner || t != dns.TypeDS) {
		return nil
	}
	return zs
}

// deny turns a negative answer of a signed zone into a compact denial (RFC 9824 §3): the name
// "exists" with no data of the type, proven by one NSEC whose next name is the name's
// immediate successor and whose bitmap holds the types really there (RRSIG, NSEC and NXNAME
// for a name that does not exist). The rcode is NOERROR also for a nonexistent name.
func (st *state) deny(res *result, qtype uint16) {
	neg, m := res.neg, res.msg
	zs := st.signers[neg.zone.origin]
	if zs == nil {
		return
	}
	m.Rcode = dns.RcodeSuccess
	nsec := st.nsec(neg, qtype)
	m.Ns = append(st.signSection(m.Ns), nsec)
	m.Ns = append(m.Ns, zs.sign([]dns.RR{nsec})...)
}

// signReferral adds to a referral from a signed zone the DS RRset of the child with its
// RRSIGs, or the NSEC proving the delegation is insecure (RFC 4035 §3.1.4).
func (st *state) signReferral(res *result) {
	cut, m := res.cut, res.msg
	zs := st.signers[cut.zone.origin]
	if zs == nil {
		return
	}
	if ds := cut.node.rrsets[dns.TypeDS]; len(ds) > 0 {
		m.Ns = append(m.Ns, ds...)
		m.Ns = append(m.Ns, zs.sign(ds)...)
		return
	}
	nsec := st.nsec(cut, 0)
	m.Ns = append(m.Ns, nsec)
	m.Ns = append(m.Ns, zs.sign([]dns.RR{nsec})...)
}

// nsec is the "black lie" NSEC at d.name: next name \000.<name>, the types present at the
// node except qtype (the answer just showed it absent), with the negative TTL (RFC 9077).
func (st *state) nsec(d *denial, qtype uint16) *dns.NSEC {
	return &dns.NSEC{
		Hdr:        dns.RR_Header{Name: d.name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: d.zone.negTTL()},
		NextDomain: `\000.` + d.name,
		TypeBitMap: st.nsecTypes(d.node, qtype),
	}
}

// nsecTypes is the type bitmap of a name: RRSIG and NSEC, plus NXNAME for a nonexistent name,
// else its RRsets (only NS and DS at a delegation), with A and AAAA for a steered name whose
// pool has addresses of the family.
func (st *state) nsecTypes(n *node, qtype uint16) []uint16 {
	types := []uint16{dns.TypeRRSIG, dns.TypeNSEC}
	if n == nil {
		return append(types, dns.TypeNXNAME)
	}
	for t := range n.rrsets {
		if !n.cut || t == dns.TypeNS || t == dns.TypeDS {
			types = append(types, t)
		}
	}
	if n.dyn != nil {
		types = append(types, st.poolTypes(n.dyn.pool)...)
	}
	types = slices.DeleteFunc(types, func(t uint16) bool { return t == qtype })
	slices.Sort(types)
	return slices.Compact(types)
}

// poolTypes are the address types a pool can answer: A and/or AAAA.
func (st *state) poolTypes(p *pool) []uint16 {
	var out []uint16
	add := func(addrs []netip.Addr) {
		for _, a := range addrs {
			if a.Is4() {
				out = append(out, dns.TypeA)
			} else {
				out = append(out, dns.TypeAAAA)
			}
		}
	}
	for _, i := range p.edges {
		add(st.edges[i].addrs)
	}
	if p.fallback == "static" {
		add(p.fallbackAddrs)
	}
	return out
}
