package dnsredirect

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outpost-proxy/outpost/internal/clienttest"
)

// knotZones is testZones with cdn.test signed and carrying three steered names, one per
// transfer view, and example.test unsigned; transfers allowed to loopback and NOTIFY sent to
// the secondary at notify.
func knotZones(notify string) string {
	text := strings.NewReplacer(
		"  \"go IN CNAME www.cdn.test.\",\n]\n",
		"  \"go IN CNAME www.cdn.test.\",\n]\n[dns.zones.dnssec]\nenabled = true\n",
		"[dns.rrl]",
		"[dns.transfer]\nallow = [\"127.0.0.0/8\"]\nnotify = [\""+notify+"\"]\n[dns.rrl]",
		"name = \"www.cdn.test\"\npool = \"edges\"",
		`name = "www.cdn.test"
pool = "edges"
transfer = "edges"
transfer_edges = ["edge3"]
[[dns.dynamic]]
name = "all.cdn.test"
pool = "edges"
transfer = "all"
[[dns.dynamic]]
name = "hidden.cdn.test"
pool = "edges"
transfer = "exclude"`,
	).Replace(testZones)
	return text
}

// knotd is a Knot DNS secondary run by a test: its own configuration, run directory and
// storage in a temporary directory, on a free loopback port.
type knotd struct {
	addr string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// freePort returns a loopback address whose port was free for both UDP and TCP a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port for UDP and TCP")
	return ""
}

// startKnot starts knotd as a secondary of primary for the zones, at addr.
func startKnot(t *testing.T, bin, addr, primary string, zones ...string) *knotd {
	t.Helper()
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(addr)
	phost, pport, _ := net.SplitHostPort(primary)
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n    rundir: %q\n    listen: %s@%s\n", filepath.Join(dir, "run"), host, port)
	fmt.Fprintf(&b, "database:\n    storage: %q\n", filepath.Join(dir, "db"))
	b.WriteString("log:\n  - target: stderr\n    any: info\n")
	fmt.Fprintf(&b, "remote:\n  - id: primary\n    address: %s@%s\n", phost, pport)
	b.WriteString("acl:\n  - id: notify\n    address: 127.0.0.0/8\n    action: notify\n")
	b.WriteString("  - id: transfer\n    address: 127.0.0.0/8\n    action: transfer\n")
	fmt.Fprintf(&b, "template:\n  - id: default\n    storage: %q\n    zonefile-sync: -1\n    zonefile-load: none\n    journal-content: none\n", filepath.Join(dir, "zones"))
	b.WriteString("zone:\n")
	for _, z := range zones {
		fmt.Fprintf(&b, "  - domain: %s\n    master: primary\n    acl: [notify, transfer]\n", z)
	}
	for _, sub := range []string{"run", "db", "zones"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &knotd{addr: addr, out: &lockedBuffer{}, done: make(chan struct{})}
	k.cmd = exec.Command(bin, "-c", conf)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		k.cmd.Process.Signal(os.Interrupt)
		select {
		case <-k.done:
		case <-time.After(10 * time.Second):
			k.cmd.Process.Kill()
			<-k.done
		}
		if t.Failed() || os.Getenv("KNOT_LOG") != "" {
			t.Logf("knotd output:\n%s", k.out)
		}
	})
	return k
}

// ask sends a query to the secondary over UDP (TCP when truncated).
func (k *knotd) ask(name string, qtype uint16, do bool) (*dns.Msg, error) {
	m := newQuery(name, qtype, true, "")
	m.IsEdns0().SetDo(do)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second, UDPSize: 4096}).Exchange(m, k.addr)
	if err == nil && r.Truncated {
		r, _, err = (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, k.addr)
	}
	return r, err
}

// waitSerial polls the secondary until it serves zone with serial, failing after 30 s.
func (k *knotd) waitSerial(t *testing.T, zone string, serial uint32) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	last := "no answer"
	for {
		r, err := k.ask(zone, dns.TypeSOA, false)
		switch {
		case err != nil:
			last = err.Error()
		case r.Rcode == dns.RcodeSuccess && r.Authoritative && len(r.Answer) == 1:
			if got := r.Answer[0].(*dns.SOA).Serial; got == serial {
				return
			} else {
				last = fmt.Sprintf("serial %d", got)
			}
		default:
			last = dns.RcodeToString[r.Rcode]
		}
		select {
		case <-tick.C:
		case <-k.done:
			t.Fatalf("knotd exited:\n%s", k.out)
		case <-deadline:
			t.Fatalf("knotd does not serve %s serial %d (last: %s)", zone, serial, last)
		}
	}
}

// axfr transfers zone from the secondary, as a checker would.
func (k *knotd) axfr(t *testing.T, zone string) []dns.RR {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr(zone)
	env, err := (&dns.Transfer{DialTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second}).In(m, k.addr)
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for e := range env {
		if e.Error != nil {
			t.Fatalf("AXFR %s from knot: %v", zone, e.Error)
		}
		rrs = append(rrs, e.RR...)
	}
	return rrs
}

// TestKnotSecondary (acceptance 4): Knot, as a secondary on loopback, transfers the zones,
// serves them, lists each steered name as its transfer view says (fixed edges, all edges,
// excluded), picks up a reload's serial bump through NOTIFY, and serves the signed zone with
// DNSSEC intact: RRSIGs that verify with the zone's keys, an NSEC chain proving NXDOMAIN, and
// delv fully validating with the KSK as trust anchor, and the zone as Knot holds it passing
// BIND's dnssec-verify; the unsigned zone stays unsigned.
func TestKnotSecondary(t *testing.T) {
	bin := clienttest.Need(t, "knotd", "knot")
	delv := clienttest.Need(t, "delv", "bind9-dnsutils")
	kaddr := freePort(t)
	dir := t.TempDir()
	text := knotZones(kaddr)
	ts := startServerCfg(t, loadDNS(t, text), dir)
	serial := ts.st.Load().zones["cdn.test."].soa.Serial
	k := startKnot(t, bin, kaddr, ts.addr, "cdn.test", "example.test")
	k.waitSerial(t, "cdn.test.", serial)
	k.waitSerial(t, "example.test.", 7)

	var keyset []dns.RR
	for _, key := range zoneKeys(t, dir, "cdn.test.") {
		keyset = append(keyset, key.pub)
	}
	checkServed := func(t *testing.T, origin string) {
		tests := []struct {
			name  string
			qtype uint16
			rcode int
			want  []string
		}{
			{"www.cdn.test.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.13"}}, // transfer_edges = ["edge3"]
			{"all.cdn.test.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}},
			{"all.cdn.test.", dns.TypeAAAA, dns.RcodeSuccess, []string{"::11"}},
			{"hidden.cdn.test.", dns.TypeA, dns.RcodeNameError, nil}, // excluded
			{"origin.cdn.test.", dns.TypeA, dns.RcodeSuccess, []string{origin}},
			{"origin.cdn.test.", dns.TypeTXT, dns.RcodeSuccess, nil},
			{"go.cdn.test.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.13"}},
		}
		for _, tc := range tests {
			r, err := k.ask(tc.name, tc.qtype, true)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.name, dns.TypeToString[tc.qtype], err)
			}
			got := addrs(r.Answer)
			slices.Sort(got)
			if r.Rcode != tc.rcode || !slices.Equal(got, tc.want) {
				t.Errorf("knot %s %s: %s %v, want %s %v", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[r.Rcode], got, dns.RcodeToString[tc.rcode], tc.want)
			}
			if !hasType(append(r.Answer, r.Ns...), dns.TypeRRSIG) {
				t.Errorf("knot %s %s: no RRSIG in a signed zone: %v", tc.name, dns.TypeToString[tc.qtype], r)
			}
			if err := verifyMsg(r, keyset, time.Now()); err != nil {
				t.Errorf("knot %s %s: %v", tc.name, dns.TypeToString[tc.qtype], err)
			}
		}
	}
	checkServed(t, "127.0.0.1")

	if r, _ := k.ask("www.example.test.", dns.TypeA, true); r == nil || hasType(r.Answer, dns.TypeRRSIG) || !slices.Equal(addrs(r.Answer), []string{"192.0.2.80"}) {
		t.Errorf("knot www.example.test (unsigned zone): %v", r)
	}
	anchor := anchorFile(t, dir, "cdn.test.")
	_, kport, _ := net.SplitHostPort(kaddr)
	for _, q := range [][2]string{{"www.cdn.test", "; fully validated"}, {"all.cdn.test", "; fully validated"}, {"hidden.cdn.test", "; negative response, fully validated"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, delv, "@127.0.0.1", "-p", kport, "-a", anchor, "+root=cdn.test", q[0], "A").CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), q[1]) {
			t.Errorf("delv against knot, %s: %v\n%s", q[0], err, out)
		}
	}

	verifyKnotZone(t, k, "cdn.test.")

	cfg := loadDNS(t, strings.Replace(text, "origin IN A 127.0.0.1", "origin IN A 127.0.0.9", 1))
	cfg.Listen = ts.cfg.Listen
	if err := ts.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	bumped := ts.st.Load().zones["cdn.test."].soa.Serial
	if bumped != serial+1 {
		t.Fatalf("serial after the change %d, want %d", bumped, serial+1)
	}
	k.waitSerial(t, "cdn.test.", bumped) // the secondary only refreshes this soon when notified
	if strings.Contains(k.out.String(), "FORMERR") {
		t.Errorf("knot's IXFR got FORMERR:\n%s", k.out)
	}
	checkServed(t, "127.0.0.9")
}

// verifyKnotZone transfers zone back from Knot and has dnssec-verify check it whole: the NSEC
// chain over the transferred names and a valid RRSIG on every RRset (skipped without
// bind9-utils); the excluded name is not in it.
func verifyKnotZone(t *testing.T, k *knotd, zone string) {
	t.Helper()
	rrs := k.axfr(t, zone)
	var b strings.Builder
	for _, rr := range rrs[:len(rrs)-1] { // the closing SOA repeats the first
		if strings.HasPrefix(strings.ToLower(rr.Header().Name), "hidden.") {
			t.Errorf("excluded name in Knot's copy: %v", rr)
		}
		b.WriteString(rr.String() + "\n")
	}
	verify, err := exec.LookPath("dnssec-verify")
	if err != nil {
		t.Log("dnssec-verify (Debian bind9-utils) not installed: Knot's copy not verified whole")
		return
	}
	file := filepath.Join(t.TempDir(), "knot-copy.zone")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := clienttest.Run(t, 30*time.Second, verify, "-o", zone, file)
	if !strings.Contains(string(out), "fully signed") {
		t.Errorf("dnssec-verify on Knot's copy of %s:\n%s", zone, out)
	}
}
