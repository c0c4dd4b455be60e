package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// dnssecBase signs the zone of dnsBase with defaults.
var dnssecBase = strings.Replace(dnsBase, `records = ["@ IN SOA ns1 h 1 2 3 4 5", "@ IN NS ns1"]`,
	"records = [\"@ IN SOA ns1 h 1 2 3 4 5\", \"@ IN NS ns1\"]\n[dns.zones.dnssec]\nenabled = true", 1)

func TestDNSSECConfig(t *testing.T) {
	c, err := load(t, dnssecBase)
	if err != nil {
		t.Fatalf("base config: %v", err)
	}
	d := c.DNS.Zones[0].DNSSEC
	if !d.Enabled || d.AlgorithmNumber() != 13 {
		t.Fatalf("dnssec = %+v, want enabled with algorithm 13", d)
	}
	if w := d.WithDefaults(); w.Keys != "ksk+zsk" || w.KeyDir != "dnssec" || w.SignatureValidity != 14*24*time.Hour || w.Refresh != 96*time.Hour {
		t.Errorf("defaults = %+v", w)
	}
	tests := []struct {
		name, add, key string
	}{
		{"unknown algorithm", `algorithm = "RSASHA1"`, "dns.zones[0].dnssec.algorithm"},
		{"unknown layout", `keys = "three"`, "dns.zones[0].dnssec.keys"},
		{"validity too short", `signature_validity = "10m"`, "dns.zones[0].dnssec.signature_validity"},
		{"refresh beyond validity", "signature_validity = \"48h\"\nrefresh = \"72h\"", "dns.zones[0].dnssec.refresh"},
		{"negative offset", `inception_offset = "-1h"`, "dns.zones[0].dnssec.inception_offset"},
		{"dnskey TTL beyond refresh", "refresh = \"1h\"\ndnskey_ttl = \"2h\"", "dns.zones[0].dnssec.dnskey_ttl"},
		{"unknown key", `salt = "x"`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, strings.Replace(dnssecBase, "enabled = true", "enabled = true\n"+tc.add, 1))
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *Error
			if tc.key == "" {
				return // viper's own unknown-key error
			}
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Errorf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
	for _, ok := range []string{`algorithm = "ED25519"`, `algorithm = "15"`, `keys = "csk"`} {
		if _, err := load(t, strings.Replace(dnssecBase, "enabled = true", "enabled = true\n"+ok, 1)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
