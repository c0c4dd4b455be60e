package dnsredirect

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/clienttest"
	"github.com/outpost-proxy/outpost/internal/component"
)

// signedZones is testZones with cdn.test signed by ECDSA P-256 keys (KSK+ZSK) and example.test
// by one Ed25519 CSK.
var signedZones = strings.NewReplacer(
	"  \"go IN CNAME www.cdn.test.\",\n]\n",
	"  \"go IN CNAME www.cdn.test.\",\n]\n[dns.zones.dnssec]\nenabled = true\n",
	"  \"@ IN CAA 0 issue \\\"ca.test\\\"\",\n]\n",
	"  \"@ IN CAA 0 issue \\\"ca.test\\\"\",\n]\n[dns.zones.dnssec]\nenabled = true\nalgorithm = \"ED25519\"\nkeys = \"csk\"\n",
).Replace(testZones)

// startSigned starts a server for signedZones and returns it with its data directory.
func startSigned(t *testing.T) (*testServer, string) {
	t.Helper()
	if !strings.Contains(signedZones, "ED25519") || strings.Count(signedZones, "[dns.zones.dnssec]") != 2 {
		t.Fatal("signedZones did not patch testZones")
	}
	dir := t.TempDir()
	return startServerCfg(t, loadDNS(t, signedZones), dir), dir
}

// zoneKeys reads the DNSKEY records of zone from the data directory's key files.
func zoneKeys(t *testing.T, dataDir, zone string) []*dnssecKey {
	t.Helper()
	keys, err := loadKeys(filepath.Join(dataDir, "dnssec"), zone)
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys of %s: %v (%d)", zone, err, len(keys))
	}
	return keys
}

// anchorFile writes a delv trust-anchors file with zone's key-signing keys.
func anchorFile(t *testing.T, dataDir, zone string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("trust-anchors {\n")
	for _, k := range zoneKeys(t, dataDir, zone) {
		if k.ksk() {
			fmt.Fprintf(&b, "  %s static-key %d %d %d \"%s\";\n", zone, k.pub.Flags, k.pub.Protocol, k.pub.Algorithm, k.pub.PublicKey)
		}
	}
	b.WriteString("};\n")
	path := filepath.Join(t.TempDir(), "anchor.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// relay is a UDP forwarder between a validator and the server: it adds an ECS option to each
// query (delv has no +subnet), strips it from the reply, remembers the scope, and can flip a
// byte of the answer's RRSIG.
type relay struct {
	pc       *net.UDPConn
	upstream string
	subnet   string
	tamper   bool
	mu       sync.Mutex
	scope    int // ECS scope of the last steered answer
}

func startRelay(t *testing.T, upstream, subnet string, tamper bool) *relay {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{pc: pc, upstream: upstream, subnet: subnet, tamper: tamper, scope: -1}
	done := make(chan struct{})
	go func() { defer close(done); r.serve() }()
	t.Cleanup(func() { pc.Close(); <-done })
	return r
}

func (r *relay) port() string { return fmt.Sprint(r.pc.LocalAddr().(*net.UDPAddr).Port) }

func (r *relay) serve() {
	buf := make([]byte, 65535)
	c := &dns.Client{Net: "udp", UDPSize: 65535, Timeout: 2 * time.Second}
	for {
		n, src, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil {
			continue
		}
		if r.subnet != "" {
			addECS(q, r.subnet)
		}
		resp, _, err := c.Exchange(q, r.upstream)
		if err != nil {
			continue
		}
		if s := ecsScope(resp); s >= 0 && len(resp.Answer) > 0 && resp.Answer[0].Header().Rrtype != dns.TypeDNSKEY {
			r.mu.Lock()
			r.scope = s
			r.mu.Unlock()
		}
		if o := resp.IsEdns0(); o != nil {
			o.Option = nil
		}
		if r.tamper && q.Question[0].Qtype != dns.TypeDNSKEY {
			flipRRSIG(resp)
		}
		if b, err := resp.Pack(); err == nil {
			_, _ = r.pc.WriteToUDPAddrPort(b, src)
		}
	}
}

func (r *relay) lastScope() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scope
}

// addECS adds an EDNS Client Subnet option for subnet to q.
func addECS(q *dns.Msg, subnet string) {
	if q.IsEdns0() == nil {
		q.SetEdns0(1232, true)
	}
	p := netip.MustParsePrefix(subnet)
	o := q.IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
		SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())})
}

// flipRRSIG flips one byte of the first RRSIG's signature in the answer (or authority).
func flipRRSIG(m *dns.Msg) {
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Ns...) {
		if sig, ok := rr.(*dns.RRSIG); ok {
			b, _ := base64.StdEncoding.DecodeString(sig.Signature)
			b[len(b)/2] ^= 0x01
			sig.Signature = base64.StdEncoding.EncodeToString(b)
			return
		}
	}
}

// TestDelvValidates (acceptance 1): delv, with the zone's KSK as trust anchor, fully validates
// each demo region's steered answer (ECS added by a relay), static names, a CNAME into the
// steered name, the Ed25519 zone, and the compact denials of an NXDOMAIN and a NODATA; an
// answer whose RRSIG lost a bit does not validate.
func TestDelvValidates(t *testing.T) {
	delv := clienttest.Need(t, "delv", "bind9-dnsutils")
	ts, dir := startSigned(t)
	anchors := map[string]string{"cdn.test.": anchorFile(t, dir, "cdn.test."), "example.test.": anchorFile(t, dir, "example.test.")}
	tests := []struct {
		name, qname, qtype, subnet string
		zone                       string
		want                       []string // substrings of delv's output
		scope                      int      // ECS scope seen by the relay (-1: not checked)
		tamper                     bool
	}{
		{"nets region", "www.cdn.test", "A", "192.0.2.0/24", "cdn.test.", []string{"; fully validated", "IN\tA\t127.0.0.11"}, 24, false},
		{"asn region", "www.cdn.test", "A", "198.51.100.0/24", "cdn.test.", []string{"; fully validated", "IN\tA\t127.0.0.12"}, 24, false},
		{"geo region", "www.cdn.test", "A", "203.0.113.0/24", "cdn.test.", []string{"; fully validated", "IN\tA\t127.0.0.13"}, 24, false},
		{"steered AAAA", "www.cdn.test", "AAAA", "192.0.2.0/24", "cdn.test.", []string{"; fully validated", "IN\tAAAA\t::11"}, 24, false},
		{"static", "origin.cdn.test", "A", "", "cdn.test.", []string{"; fully validated", "IN\tA\t127.0.0.1"}, -1, false},
		{"CNAME to steered", "go.cdn.test", "A", "203.0.113.0/24", "cdn.test.", []string{"; fully validated", "CNAME\twww.cdn.test.", "IN\tA\t127.0.0.13"}, 24, false},
		{"DNSKEY", "cdn.test", "DNSKEY", "", "cdn.test.", []string{"; fully validated", "DNSKEY\t257 3 13"}, -1, false},
		{"NXDOMAIN", "nope.cdn.test", "A", "", "cdn.test.", []string{"; negative response, fully validated", `NSEC \000.nope.cdn.test. RRSIG NSEC TYPE128`}, -1, false},
		{"NODATA", "origin.cdn.test", "TXT", "", "cdn.test.", []string{"; negative response, fully validated", `NSEC \000.origin.cdn.test. A RRSIG NSEC`}, -1, false},
		{"steered NODATA", "www.cdn.test", "MX", "192.0.2.0/24", "cdn.test.", []string{"; negative response, fully validated", "A AAAA RRSIG NSEC"}, -1, false},
		{"Ed25519 static", "www.example.test", "AAAA", "", "example.test.", []string{"; fully validated", "2001:db8::80", "RRSIG\tAAAA 15 3"}, -1, false},
		{"Ed25519 wildcard", "x.wild.example.test", "TXT", "", "example.test.", []string{"; fully validated", `"wildcard"`}, -1, false},
		{"Ed25519 NXDOMAIN", "nope.example.test", "A", "", "example.test.", []string{"; negative response, fully validated"}, -1, false},
		{"Ed25519 empty non-terminal", "deep.example.test", "A", "", "example.test.", []string{"; negative response, fully validated", `NSEC \000.deep.example.test. RRSIG NSEC`}, -1, false},
		{"Ed25519 wildcard NODATA", "x.wild.example.test", "MX", "", "example.test.", []string{"; negative response, fully validated", `NSEC \000.x.wild.example.test. A TXT RRSIG NSEC`}, -1, false},
		{"Ed25519 CNAME chain", "chain.example.test", "AAAA", "", "example.test.", []string{"; fully validated", "CNAME\talias.example.test.", "2001:db8::80"}, -1, false},
		{"Ed25519 MX with additional", "example.test", "MX", "", "example.test.", []string{"; fully validated", "MX\t10 mail.example.test."}, -1, false},
		{"tampered steered", "www.cdn.test", "A", "203.0.113.0/24", "cdn.test.", []string{"resolution failed"}, -1, true},
		{"tampered denial", "nope.cdn.test", "A", "", "cdn.test.", []string{"resolution failed"}, -1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, ts.addr, tc.subnet, tc.tamper)
			args := []string{"@127.0.0.1", "-p", r.port(), "-a", anchors[tc.zone], "+root=" + tc.zone, tc.qname, tc.qtype}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, delv, args...).CombinedOutput()
			text := string(out)
			if tc.tamper {
				if strings.Contains(text, "fully validated") {
					t.Fatalf("tampered answer validated:\n%s", text)
				}
			} else if err != nil {
				t.Fatalf("delv %s: %v\n%s", strings.Join(args, " "), err, text)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("delv %s: output lacks %q:\n%s", strings.Join(args, " "), w, text)
				}
			}
			if tc.scope >= 0 && r.lastScope() != tc.scope {
				t.Errorf("ECS scope %d, want %d", r.lastScope(), tc.scope)
			}
		})
	}
}

// TestKdigDNSSEC: kdig +dnssec +subnet gets each region's steered answer with its RRSIG, which
// verifies with the zone's ZSK, and the ECS scope of the unsigned answer.
func TestKdigDNSSEC(t *testing.T) {
	kdig := clienttest.Need(t, "kdig", "knot-dnsutils")
	ts, dir := startSigned(t)
	host, port, _ := net.SplitHostPort(ts.addr)
	var zsk *dns.DNSKEY
	for _, k := range zoneKeys(t, dir, "cdn.test.") {
		if !k.ksk() {
			zsk = k.pub
		}
	}
	for subnet, want := range map[string]string{"192.0.2.0/24": "127.0.0.11", "198.51.100.0/24": "127.0.0.12", "203.0.113.0/24": "127.0.0.13"} {
		out := string(clienttest.Run(t, 10*time.Second, kdig, "@"+host, "-p", port, "+dnssec", "+norec", "+subnet="+subnet, "www.cdn.test", "A"))
		if !strings.Contains(out, subnet+"/24") {
			t.Errorf("%s: no ECS scope /24 in\n%s", subnet, out)
		}
		var rrset []dns.RR
		var sig *dns.RRSIG
		for _, line := range strings.Split(out, "\n") {
			if line == "" || strings.HasPrefix(line, ";") {
				continue
			}
			rr, err := dns.NewRR(line)
			if err != nil || rr == nil {
				continue
			}
			switch v := rr.(type) {
			case *dns.RRSIG:
				sig = v
			case *dns.A:
				rrset = append(rrset, v)
			}
		}
		if got := addrs(rrset); len(got) != 1 || got[0] != want || sig == nil {
			t.Fatalf("%s: answer %v, RRSIG %v, want %s signed\n%s", subnet, got, sig, want, out)
		}
		if err := sig.Verify(zsk, rrset); err != nil || !sig.ValidityPeriod(time.Now()) {
			t.Errorf("%s: RRSIG does not verify with ZSK %d: %v", subnet, zsk.KeyTag(), err)
		}
	}
}

// verifyMsg checks, as a validator holding keyset would at now, that every RRset of the
// answer and authority sections of r has a valid RRSIG by one of the keys.
func verifyMsg(r *dns.Msg, keyset []dns.RR, now time.Time) error {
	keys := map[uint16]*dns.DNSKEY{}
	for _, rr := range keyset {
		if k, ok := rr.(*dns.DNSKEY); ok {
			keys[k.KeyTag()] = k
		}
	}
	for _, section := range [][]dns.RR{r.Answer, r.Ns} {
		var data []dns.RR
		var sigs []*dns.RRSIG
		for _, rr := range section {
			if s, ok := rr.(*dns.RRSIG); ok {
				sigs = append(sigs, s)
			} else {
				data = append(data, rr)
			}
		}
		for _, set := range rrsets(data) {
			if err := verifySet(set, sigs, keys, now); err != nil {
				return err
			}
		}
	}
	return nil
}

func verifySet(set []dns.RR, sigs []*dns.RRSIG, keys map[uint16]*dns.DNSKEY, now time.Time) error {
	h := set[0].Header()
	for _, s := range sigs {
		if s.TypeCovered != h.Rrtype || !strings.EqualFold(s.Hdr.Name, h.Name) {
			continue
		}
		if k := keys[s.KeyTag]; k != nil && s.Verify(k, set) == nil && s.ValidityPeriod(now) {
			return nil
		}
	}
	return fmt.Errorf("%s %s: no RRSIG verifies with keys %v at %s", h.Name, dns.TypeToString[h.Rrtype], keyTags(keys), now.Format(time.RFC3339))
}

func keyTags(keys map[uint16]*dns.DNSKEY) []uint16 {
	var out []uint16
	for t := range keys {
		out = append(out, t)
	}
	return out
}

// ask answers one DO query from st in process.
func ask(t *testing.T, st *state, name string, qtype uint16, subnet string) *dns.Msg {
	t.Helper()
	m := newQuery(name, qtype, true, subnet)
	m.IsEdns0().SetDo()
	return handleMsg(t, st, m)
}

// handleMsg answers m from st in process, over "TCP" (no size limit).
func handleMsg(t *testing.T, st *state, m *dns.Msg) *dns.Msg {
	t.Helper()
	pkt, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	met, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	out := st.handle(pkt, make([]byte, 0, maxTCPLength), new(query), netip.MustParseAddr("127.0.0.1"), true, met)
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("%s: %v", m.Question[0].Name, err)
	}
	return r
}

// TestSignedECSAndUnsignedPath: with DO the steered answer is the client network's, signed,
// with the same ECS scope as unsigned; without DO nothing DNSSEC is added, and the compact
// denial answers NXDOMAIN as NOERROR only with DO.
func TestSignedECSAndUnsignedPath(t *testing.T) {
	st, _ := testSignedState(t, time.Now())
	for subnet, want := range map[string]string{"192.0.2.0/24": "127.0.0.11", "198.51.100.0/24": "127.0.0.12", "203.0.113.0/24": "127.0.0.13", "100.64.0.0/24": ""} {
		signed := ask(t, st, "www.cdn.test.", dns.TypeA, subnet)
		plain := askPlain(t, st, "www.cdn.test.", dns.TypeA, subnet)
		got := addrs(signed.Answer)
		if len(got) != 1 || (want != "" && got[0] != want) {
			t.Errorf("%s: signed answer %v, want %s", subnet, got, want)
		}
		if ecsScope(signed) != ecsScope(plain) {
			t.Errorf("%s: ECS scope signed %d, unsigned %d", subnet, ecsScope(signed), ecsScope(plain))
		}
		if len(signed.Answer) != 2 || len(plain.Answer) != 1 {
			t.Errorf("%s: %d records with DO, %d without; want A+RRSIG and A", subnet, len(signed.Answer), len(plain.Answer))
		}
	}
	if r := askPlain(t, st, "nope.cdn.test.", dns.TypeA, ""); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Errorf("unsigned NXDOMAIN: rcode %s, %d authority records", dns.RcodeToString[r.Rcode], len(r.Ns))
	}
	if r := ask(t, st, "nope.cdn.test.", dns.TypeA, ""); r.Rcode != dns.RcodeSuccess || len(r.Ns) != 4 {
		t.Errorf("compact denial: rcode %s, %d authority records, want NOERROR with SOA, NSEC and their RRSIGs", dns.RcodeToString[r.Rcode], len(r.Ns))
	}
	if c := st.template(&query{}, []byte("nope.cdn.test.\x00\x01D"), nil).count; c != st.counters["cdn.test."][typeIndex(dns.TypeA)][rcodeIndex(dns.RcodeNameError)] {
		t.Error("a compact denial is not counted as NXDOMAIN")
	}
	if r := ask(t, st, "nope.cdn.test.", dns.TypeNXNAME, ""); r.Rcode != dns.RcodeFormatError {
		t.Errorf("NXNAME query: rcode %s, want FORMERR (RFC 9824 §3.5)", dns.RcodeToString[r.Rcode])
	}
	r := ask(t, st, "host.sub.example.test.", dns.TypeA, "")
	if r.Authoritative || !hasType(r.Ns, dns.TypeNSEC) || verifyMsg(r, st.signers["example.test."].dnskeys, time.Now()) == nil {
		// the referral's NS RRset is not signed (the child's), so verifyMsg fails on it; the
		// NSEC proving no DS must be there and signed.
		t.Errorf("insecure referral: AA %v, authority %v", r.Authoritative, r.Ns)
	}
	nsec := []dns.RR{}
	for _, rr := range r.Ns {
		if rr.Header().Rrtype == dns.TypeNSEC || (rr.Header().Rrtype == dns.TypeRRSIG && rr.(*dns.RRSIG).TypeCovered == dns.TypeNSEC) {
			nsec = append(nsec, rr)
		}
	}
	if err := verifyMsg(&dns.Msg{Ns: nsec}, st.signers["example.test."].dnskeys, time.Now()); err != nil {
		t.Errorf("referral NSEC: %v", err)
	}
}

func hasType(rrs []dns.RR, t uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}

// askPlain is ask without the DO bit.
func askPlain(t *testing.T, st *state, name string, qtype uint16, subnet string) *dns.Msg {
	t.Helper()
	return handleMsg(t, st, newQuery(name, qtype, true, subnet))
}

// testSignedState builds signedZones at now in a fresh data directory.
func testSignedState(t *testing.T, now time.Time) (*state, string) {
	t.Helper()
	dir := t.TempDir()
	met, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st, err := buildStateAt(loadDNS(t, signedZones), dir, nil, nil, met, now)
	if err != nil {
		t.Fatal(err)
	}
	return st, dir
}

// cached is a record set a validating resolver holds, with when it fetched it.
type cached struct {
	msg     *dns.Msg
	fetched time.Time
}

func (c *cached) fresh(now time.Time) bool {
	if c.msg == nil {
		return false
	}
	ttl := uint32(1 << 31)
	for _, rr := range append(append([]dns.RR{}, c.msg.Answer...), c.msg.Ns...) {
		ttl = min(ttl, rr.Header().Ttl)
	}
	return now.Sub(c.fetched) < time.Duration(ttl)*time.Second
}

// TestZSKRollover (acceptance 2): a ZSK rollover by pre-publication, driven by Rollover and
// the states rebuilt at each minute of an injected clock, validates throughout for every mix
// a caching resolver can hold: a fresh or cached DNSKEY RRset with a fresh or cached answer.
func TestZSKRollover(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	cfg := loadDNS(t, signedZones)
	dir := t.TempDir()
	st, err := buildStateAt(cfg, dir, nil, nil, nil, start)
	if err != nil {
		t.Fatal(err)
	}
	oldZSK := st.signers["cdn.test."].zsks[0].tag
	t0 := start.Add(10 * time.Minute)
	var plan *RolloverPlan
	var keys, answer, nxAnswer cached
	phases := map[string]bool{}
	for now := start; now.Before(t0.Add(3 * time.Hour)); now = now.Add(time.Minute) {
		if plan == nil && !now.Before(t0) {
			if plan, err = Rollover(cfg, dir, "cdn.test", now); err != nil {
				t.Fatal(err)
			}
			if _, err := Rollover(cfg, dir, "cdn.test", now); err == nil {
				t.Error("a second rollover during the first was accepted")
			}
		}
		if st, err = buildStateAt(cfg, dir, st, nil, nil, now); err != nil {
			t.Fatalf("%s: %v", now, err)
		}
		zs := st.signers["cdn.test."]
		phases[fmt.Sprintf("%d keys, ZSK %d", len(zs.dnskeys), zs.zsks[0].tag)] = true
		fresh := cached{msg: ask(t, st, "cdn.test.", dns.TypeDNSKEY, ""), fetched: now}
		if err := verifyMsg(fresh.msg, fresh.msg.Answer, now); err != nil {
			t.Fatalf("%s: DNSKEY: %v", now, err)
		}
		if !keys.fresh(now) {
			keys = fresh
		}
		for _, q := range []struct {
			c     *cached
			name  string
			qtype uint16
		}{{&answer, "www.cdn.test.", dns.TypeA}, {&nxAnswer, "nope.cdn.test.", dns.TypeA}} {
			a := cached{msg: ask(t, st, q.name, q.qtype, "203.0.113.0/24"), fetched: now}
			if !q.c.fresh(now) {
				*q.c = a
			}
			for _, combo := range []struct {
				what   string
				msg    *dns.Msg
				keyset []dns.RR
			}{{"fresh answer, fresh keys", a.msg, fresh.msg.Answer}, {"fresh answer, cached keys", a.msg, keys.msg.Answer},
				{"cached answer, fresh keys", q.c.msg, fresh.msg.Answer}, {"cached answer, cached keys", q.c.msg, keys.msg.Answer}} {
				if err := verifyMsg(combo.msg, combo.keyset, now); err != nil {
					t.Fatalf("%s (%s after the rollover began): %s %s: %v", now.Format(time.RFC3339), now.Sub(t0), q.name, combo.what, err)
				}
			}
		}
	}
	if plan == nil || plan.OldTags[0] != oldZSK {
		t.Fatalf("plan %+v, old ZSK %d", plan, oldZSK)
	}
	want := []string{fmt.Sprintf("2 keys, ZSK %d", oldZSK), fmt.Sprintf("3 keys, ZSK %d", oldZSK),
		fmt.Sprintf("3 keys, ZSK %d", plan.NewTag), fmt.Sprintf("2 keys, ZSK %d", plan.NewTag)}
	for _, w := range want {
		if !phases[w] {
			t.Errorf("phase %q never seen (saw %v)", w, phases)
		}
	}
	if d := plan.Activate.Sub(plan.Publish); d != time.Hour+5*time.Minute {
		t.Errorf("activate %s after publish, want DNSKEY TTL + propagation = 1h5m", d)
	}
	if d := plan.Delete.Sub(plan.Activate); d != time.Hour+5*time.Minute {
		t.Errorf("delete %s after activate, want max TTL (1h) + propagation", d)
	}
}

// TestDnssecKeygenDropIn: keys made by BIND's dnssec-keygen in the key directory are used as
// they are (no keys generated), and answers verify with them.
func TestDnssecKeygenDropIn(t *testing.T) {
	keygen := clienttest.Need(t, "dnssec-keygen", "bind9-utils")
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "dnssec")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	clienttest.Run(t, 20*time.Second, keygen, "-q", "-K", keyDir, "-a", "ECDSAP256SHA256", "-f", "KSK", "cdn.test")
	clienttest.Run(t, 20*time.Second, keygen, "-q", "-K", keyDir, "-a", "ECDSAP256SHA256", "cdn.test")
	before, _ := filepath.Glob(filepath.Join(keyDir, "Kcdn.test.+*"))
	st, err := buildStateAt(loadDNS(t, signedZones), dir, nil, nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	after, _ := filepath.Glob(filepath.Join(keyDir, "Kcdn.test.+*"))
	if len(before) != 4 || len(after) != 4 {
		t.Fatalf("key files %v before, %v after", before, after)
	}
	zs := st.signers["cdn.test."]
	if len(zs.dnskeys) != 2 || len(zs.ksks) != 1 || len(zs.zsks) != 1 {
		t.Fatalf("keys: %d published, %d KSK, %d ZSK", len(zs.dnskeys), len(zs.ksks), len(zs.zsks))
	}
	for _, q := range []string{"www.cdn.test.", "origin.cdn.test.", "nope.cdn.test."} {
		if err := verifyMsg(ask(t, st, q, dns.TypeA, "192.0.2.0/24"), zs.dnskeys, time.Now()); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestGeneratedKeyFiles: first start writes a KSK and a ZSK pair, 0600, that read back
// identically; a broken key file is a configuration error naming the zone's dnssec key.
func TestGeneratedKeyFiles(t *testing.T) {
	st, dir := testSignedState(t, time.Now())
	for _, zone := range []string{"cdn.test.", "example.test."} {
		files, _ := filepath.Glob(filepath.Join(dir, "dnssec", "K"+zone+"+*"))
		want := map[string]int{"cdn.test.": 4, "example.test.": 2}[zone]
		if len(files) != want {
			t.Errorf("%s: %d key files, want %d", zone, len(files), want)
		}
		for _, f := range files {
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v (%v), want 0600", f, fi.Mode(), err)
			}
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "dnssec")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %v (%v), want 0700", fi.Mode(), err)
	}
	if alg := st.signers["example.test."].ksks[0].pub.Algorithm; alg != dns.ED25519 {
		t.Errorf("example.test algorithm %d, want 15", alg)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "dnssec", "Kcdn.test.+*.private"))
	if err := os.WriteFile(files[0], []byte("Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: !!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := buildStateAt(loadDNS(t, signedZones), dir, nil, nil, nil, time.Now())
	if err == nil || !strings.Contains(err.Error(), "dns.zones[1].dnssec") {
		t.Errorf("broken key file: %v, want an error naming dns.zones[1].dnssec", err)
	}
}

// TestResignAtDeadline: when the server's clock reaches the signatures' refresh point, the
// server rebuilds its state by itself, signing afresh, and keeps answering.
func TestResignAtDeadline(t *testing.T) {
	dir := t.TempDir()
	s, err := New(loadDNS(t, signedZones), component.Test(dir))
	if err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64
	s.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
	})
	first := s.st.Load()
	due := first.dnssecDeadline()
	reg := s.env.Metrics.(*prometheus.Registry)
	for deadline := time.Now().Add(5 * time.Second); gaugeValue(t, reg, "outpost_dns_dnssec_timestamp_seconds", "cdn.test", "next_resign") != float64(due.Unix()); {
		if time.Now().After(deadline) {
			t.Fatal("next_resign gauge never showed the deadline")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	if want := first.now.Add(10 * 24 * time.Hour); !due.Equal(want) {
		t.Fatalf("deadline %s, want signing time + validity - refresh = %s", due, want)
	}
	skew.Store(int64(time.Until(due) + time.Minute))
	for deadline := time.Now().Add(10 * time.Second); s.st.Load() == first; {
		if time.Now().After(deadline) {
			t.Fatal("state not rebuilt at the refresh point")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	st := s.st.Load()
	zs := st.signers["cdn.test."]
	if !zs.signTime.After(due) {
		t.Errorf("new signing time %s, want after %s", zs.signTime, due)
	}
	r := ask(t, st, "www.cdn.test.", dns.TypeA, "")
	if err := verifyMsg(r, zs.dnskeys, s.now()); err != nil {
		t.Errorf("after re-signing: %v", err)
	}
	if err := verifyMsg(r, zs.dnskeys, s.now().Add(11*24*time.Hour)); err != nil {
		t.Errorf("new signatures do not last past the old expiry: %v", err)
	}
}

// TestReloadKeepsSignatures: a reload before the refresh point keeps the signing time and the
// signatures made so far; one after it signs afresh.
func TestReloadKeepsSignatures(t *testing.T) {
	start := time.Now()
	st1, dir := testSignedState(t, start)
	cfg := loadDNS(t, signedZones)
	ask(t, st1, "www.cdn.test.", dns.TypeA, "203.0.113.0/24")
	st2, err := buildStateAt(cfg, dir, st1, nil, nil, start.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a, b := st1.signers["cdn.test."], st2.signers["cdn.test."]
	if !b.signTime.Equal(a.signTime) || b.sigs != a.sigs {
		t.Errorf("reload after 1h: signing time %s (was %s), cache kept %v", b.signTime, a.signTime, b.sigs == a.sigs)
	}
	st3, err := buildStateAt(cfg, dir, st2, nil, nil, a.refreshAt().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c := st3.signers["cdn.test."]; !c.signTime.After(a.signTime) || c.sigs == a.sigs {
		t.Errorf("reload after the refresh point kept the old signatures (signing time %s)", c.signTime)
	}
}

// gaugeValue sums the gauges of name that have every one of labels among their label values.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && !slices.ContainsFunc(labels, func(l string) bool { return !hasLabel(m, l) }) {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// TestDSFromParent: with parent and child zone on one server, a DS query for the child's apex
// is answered from the parent (its DS, signed by the parent's keys), not as NODATA from the
// child.
func TestDSFromParent(t *testing.T) {
	text := signedZones + `
[[dns.zones]]
name = "sub.example.test"
records = [
  "@ IN SOA ns.sub.example.test. hostmaster.example.test. 1 7200 3600 1209600 60",
  "@ IN NS ns.sub.example.test.",
  "ns IN A 192.0.2.53",
]
`
	text = strings.Replace(text, `  "ns.sub IN A 192.0.2.53",`, "  \"ns.sub IN A 192.0.2.53\",\n  \"sub IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\",", 1)
	st, err := buildStateAt(loadDNS(t, text), t.TempDir(), nil, nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r := ask(t, st, "sub.example.test.", dns.TypeDS, "")
	if !r.Authoritative || !hasType(r.Answer, dns.TypeDS) {
		t.Fatalf("DS of a hosted child: AA %v, answer %v", r.Authoritative, r.Answer)
	}
	if err := verifyMsg(r, st.signers["example.test."].dnskeys, time.Now()); err != nil {
		t.Errorf("DS not signed by the parent: %v", err)
	}
	if r := ask(t, st, "sub.example.test.", dns.TypeSOA, ""); !hasType(r.Answer, dns.TypeSOA) || r.Answer[0].(*dns.SOA).Ns != "ns.sub.example.test." {
		t.Errorf("the child's own data: %v", r.Answer)
	}
	// Signed child and parent: the parent publishes the child's DS by itself, and delv
	// validates the child's data from the parent's trust anchor alone.
	delv := clienttest.Need(t, "delv", "bind9-dnsutils")
	dir := t.TempDir()
	signedChild := strings.Replace(text, "  \"ns IN A 192.0.2.53\",\n]\n", "  \"ns IN A 192.0.2.53\",\n]\n[dns.zones.dnssec]\nenabled = true\n", 1)
	signedChild = strings.Replace(signedChild, "  \"sub IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\",\n", "", 1)
	ts := startServerCfg(t, loadDNS(t, signedChild), dir)
	st = ts.st.Load()
	child := st.signers["sub.example.test."]
	if child == nil {
		t.Fatal("child zone not signed")
	}
	r = ask(t, st, "sub.example.test.", dns.TypeDS, "")
	if len(r.Answer) < 2 || r.Answer[0].(*dns.DS).KeyTag != child.ksks[0].tag {
		t.Fatalf("published DS: %v, want the child's KSK %d", r.Answer, child.ksks[0].tag)
	}
	_, port, _ := net.SplitHostPort(ts.addr)
	out := clienttest.Run(t, 20*time.Second, delv, "@127.0.0.1", "-p", port, "-a", anchorFile(t, dir, "example.test."), "+root=example.test", "ns.sub.example.test", "A")
	if !strings.Contains(string(out), "; fully validated") {
		t.Errorf("child data from the parent's anchor:\n%s", out)
	}
}

// rollZone is a signed zone whose every TTL is one second, so a rollover runs in seconds.
const rollZone = `
[dns]
listen = "127.0.0.1:0"
watch_interval = "100ms"
[dns.rrl]
enabled = false
[[dns.zones]]
name = "roll.test"
records = [
  "@ 1 IN SOA ns1.roll.test. hostmaster.roll.test. 1 7200 3600 1209600 1",
  "@ 1 IN NS ns1.roll.test.",
  "ns1 1 IN A 127.0.0.1",
  "www 1 IN A 192.0.2.1",
]
[dns.zones.dnssec]
enabled = true
dnskey_ttl = "1s"
propagation_delay = "1s"
`

// TestRolloverLive: a running server follows a rollover started by Rollover (as `outpost dns
// rollover` does) by itself — the key files are picked up by the watcher, the new ZSK signs
// at Activate and the old one leaves at Delete — and every answer on the way validates, with
// miekg/dns at each poll and with delv once in each phase.
func TestRolloverLive(t *testing.T) {
	dir := t.TempDir()
	cfg := loadDNS(t, rollZone)
	ts := startServerCfg(t, cfg, dir)
	get := func(name string, qtype uint16) *dns.Msg {
		m := newQuery(name, qtype, true, "")
		m.IsEdns0().SetDo()
		return ts.exchange(t, "udp", m)
	}
	delv, hasDelv := exec.LookPath("delv")
	check := func(phase string, withDelv bool) (keys int, zsk uint16) {
		k := get("roll.test.", dns.TypeDNSKEY)
		if err := verifyMsg(k, k.Answer, time.Now()); err != nil {
			t.Fatalf("%s: DNSKEY: %v", phase, err)
		}
		for _, q := range []string{"www.roll.test.", "nope.roll.test."} {
			r := get(q, dns.TypeA)
			if err := verifyMsg(r, k.Answer, time.Now()); err != nil {
				t.Fatalf("%s: %s: %v", phase, q, err)
			}
			if q == "www.roll.test." {
				zsk = r.Answer[1].(*dns.RRSIG).KeyTag
			}
		}
		if withDelv && hasDelv == nil {
			_, port, _ := net.SplitHostPort(ts.addr)
			out := clienttest.Run(t, 20*time.Second, delv, "@127.0.0.1", "-p", port, "-a", anchorFile(t, dir, "roll.test."), "+root=roll.test", "www.roll.test", "A")
			if !strings.Contains(string(out), "; fully validated") {
				t.Errorf("%s: delv:\n%s", phase, out)
			}
		}
		return len(k.Answer) - 1, zsk // minus the RRSIG
	}
	keys, oldZSK := check("before", true)
	if keys != 2 {
		t.Fatalf("before: %d keys", keys)
	}
	plan, err := Rollover(cfg, dir, "roll.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for deadline := time.Now().Add(20 * time.Second); !seen["done"]; {
		if time.Now().After(deadline) {
			t.Fatalf("rollover did not finish: saw %v (plan %+v)", seen, plan)
		}
		keys, zsk := check("during", false)
		phase := ""
		switch {
		case keys == 3 && zsk == oldZSK:
			phase = "published"
		case keys == 3 && zsk == plan.NewTag:
			phase = "active"
		case keys == 2 && zsk == plan.NewTag:
			phase = "done"
		case keys == 2 && zsk == oldZSK:
			phase = "not yet"
		default:
			t.Fatalf("unexpected state: %d keys, ZSK %d (old %d, new %d)", keys, zsk, oldZSK, plan.NewTag)
		}
		if phase != "not yet" && !seen[phase] {
			seen[phase] = true
			check(phase, true)
		}
		time.Sleep(50 * time.Millisecond) // polling the server's state with a deadline
	}
	if !seen["published"] || !seen["active"] {
		t.Errorf("phases seen: %v", seen)
	}
}
