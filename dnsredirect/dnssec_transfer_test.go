package dnsredirect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outpost-proxy/outpost/internal/clienttest"
)

// TestSignTransfer: the records a transfer of a signed zone carries form a complete signed
// zone: BIND's dnssec-verify accepts it (NSEC chain, every RRset signed by an active key,
// DNSKEY by the KSK), delegations and glue included.
func TestSignTransfer(t *testing.T) {
	verify := clienttest.Need(t, "dnssec-verify", "bind9-utils")
	st, _ := testSignedState(t, time.Now())
	for origin, flags := range map[string][]string{"cdn.test.": nil, "example.test.": {"-z"}} { // -z: a CSK
		z := st.zones[origin]
		rrs := st.signTransfer(z, z.soa, st.zoneRecords(z))
		var b strings.Builder
		b.WriteString(z.soa.String() + "\n")
		nsec := 0
		for _, rr := range rrs {
			b.WriteString(rr.String() + "\n")
			if rr.Header().Rrtype == dns.TypeNSEC {
				nsec++
			}
		}
		if nsec == 0 {
			t.Fatalf("%s: no NSEC chain", origin)
		}
		file := filepath.Join(t.TempDir(), "zone")
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		out := clienttest.Run(t, 30*time.Second, verify, append(flags, "-o", origin, file)...)
		if !strings.Contains(string(out), "fully signed") {
			t.Errorf("%s: dnssec-verify says\n%s", origin, out)
		}
	}
}

func TestCanonicalCompare(t *testing.T) {
	// RFC 4034 §6.1's example order.
	names := []string{"example.", "a.example.", "yljkjljk.a.example.", `z.a.example.`, `zabc.a.example.`, "z.example.", `\001.z.example.`, `*.z.example.`, `\200.z.example.`}
	for i := 1; i < len(names); i++ {
		if canonicalCompare(names[i-1], names[i]) >= 0 {
			t.Errorf("%s sorts after %s", names[i-1], names[i])
		}
	}
}
