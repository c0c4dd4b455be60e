package dnsredirect

import (
	"fmt"
	"time"

	"github.com/miekg/dns"

	"github.com/outpost-proxy/outpost/internal/config"
)

// signerFor loads cfg as the server would at now (generating the zone's keys on first use)
// and returns the signer of zone.
func signerFor(cfg config.DNSConfig, dataDir, zone string, now time.Time) (*state, *zoneSigner, error) {
	st, err := buildStateAt(cfg, dataDir, nil, nil, nil, now)
	if err != nil {
		return nil, nil, err
	}
	origin := config.CanonicalDNSName(zone)
	zs := st.signers[origin]
	if zs == nil {
		if st.zones[origin] == nil {
			return nil, nil, fmt.Errorf("dns: no zone %s in the configuration", origin)
		}
		return nil, nil, fmt.Errorf("dns: zone %s is not signed (set enabled = true in its [dns.zones.dnssec])", origin)
	}
	return st, zs, nil
}

// DSRecords returns what the parent of zone needs: a DS record (SHA-256, RFC 4509) for each
// published key-signing key, followed by the same as CDS and CDNSKEY records (RFC 7344) that
// a parent which scans for them picks up.
func DSRecords(cfg config.DNSConfig, dataDir, zone string, now time.Time) ([]dns.RR, error) {
	_, zs, err := signerFor(cfg, dataDir, zone, now)
	if err != nil {
		return nil, err
	}
	var ds, cds, cdnskey []dns.RR
	for _, rr := range zs.dnskeys {
		k := rr.(*dns.DNSKEY)
		if k.Flags&dns.SEP == 0 {
			continue
		}
		d := k.ToDS(dns.SHA256)
		ds = append(ds, d)
		cds = append(cds, d.ToCDS())
		cdnskey = append(cdnskey, k.ToCDNSKEY())
	}
	return append(append(ds, cds...), cdnskey...), nil
}

// RolloverPlan is the schedule of a ZSK rollover by pre-publication (RFC 6781 §4.1.1.1,
// RFC 7583 §3.2): the new key is published at once, signs from Activate (after the DNSKEY
// RRset's TTL plus the propagation delay, when every resolver that holds the key set has the
// new key), and the old key, which stops signing then, leaves the key set at Delete (after
// the largest TTL of signed data plus the propagation delay, when no cached signature of the
// old key is left).
type RolloverPlan struct {
	Zone             string
	OldTags          []uint16
	NewTag           uint16
	Publish          time.Time // new ZSK in the DNSKEY RRset
	Activate         time.Time // new ZSK signs, old ZSKs stop (Inactive)
	Delete           time.Time // old ZSKs leave the DNSKEY RRset
	DNSKEYTTL        time.Duration
	MaxTTL           time.Duration
	PropagationDelay time.Duration
}

// Rollover starts a ZSK rollover of zone at now: it writes the new key pair and the old keys'
// Inactive and Delete times into the key directory. A running server follows the schedule by
// itself (it watches the key files and re-signs at each step); nothing else is needed.
func Rollover(cfg config.DNSConfig, dataDir, zone string, now time.Time) (*RolloverPlan, error) {
	st, zs, err := signerFor(cfg, dataDir, zone, now)
	if err != nil {
		return nil, err
	}
	var old []*dnssecKey
	for _, k := range zs.keys {
		t := k.timing
		if k.ksk() || (!t.delete.IsZero() && !now.Before(t.delete)) {
			continue
		}
		if t.activate.After(now) || !t.inactive.IsZero() {
			return nil, fmt.Errorf("dns: a rollover of %s is in progress (key %d is not yet active or already retiring); run it again after %s",
				zs.zone.origin, k.tag, rolloverEnd(zs.keys).UTC().Format(time.RFC3339))
		}
		old = append(old, k)
	}
	if len(old) == 0 {
		return nil, fmt.Errorf("dns: zone %s has no zone-signing key to roll (a CSK rollover changes the DS at the parent: not supported)", zs.zone.origin)
	}
	c := zs.cfg
	p := &RolloverPlan{Zone: zs.zone.origin, Publish: now, DNSKEYTTL: c.DNSKEYTTL,
		MaxTTL: st.maxTTL(zs.zone), PropagationDelay: c.PropagationDelay}
	p.Activate = now.Add(c.DNSKEYTTL + c.PropagationDelay)
	p.Delete = p.Activate.Add(p.MaxTTL + c.PropagationDelay)
	k, err := generateKey(zs.keyDir, zs.zone.origin, old[0].pub.Algorithm, false,
		keyTiming{created: now, publish: p.Publish, activate: p.Activate})
	if err != nil {
		return nil, err
	}
	p.NewTag = k.tag
	for _, o := range old {
		o.timing.inactive, o.timing.delete = p.Activate, p.Delete
		if err := o.write(); err != nil {
			return nil, err
		}
		p.OldTags = append(p.OldTags, o.tag)
	}
	return p, nil
}

// rolloverEnd is the last timing event of the keys: when a rollover in progress is over.
func rolloverEnd(keys []*dnssecKey) time.Time {
	var end time.Time
	for _, k := range keys {
		for _, e := range k.events() {
			if e.After(end) {
				end = e
			}
		}
	}
	return end
}

// maxTTL is the largest TTL of signed data in z: its records (DNSKEY included), the negative
// TTL and the steered names' TTL.
func (st *state) maxTTL(z *zone) time.Duration {
	m := z.negTTL()
	for _, rr := range z.records {
		m = max(m, rr.Header().Ttl)
	}
	for name, n := range z.nodes {
		if n.dyn != nil && dns.IsSubDomain(z.origin, name) {
			m = max(m, n.dyn.ttl)
		}
	}
	return time.Duration(m) * time.Second
}
