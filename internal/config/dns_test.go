package config

import (
	"errors"
	"strings"
	"testing"
)

// dnsBase is a valid [dns] section the cases below break one key at a time.
const dnsBase = `
[dns]
listen = "127.0.0.1:0"
[[dns.zones]]
name = "cdn.test"
records = ["@ IN SOA ns1 h 1 2 3 4 5", "@ IN NS ns1"]
[[dns.edges]]
name = "edge1"
addrs = ["127.0.0.11"]
check = "tcp://127.0.0.11:8080"
[[dns.pools]]
name = "p"
edges = ["edge1"]
[[dns.dynamic]]
name = "www.cdn.test"
pool = "p"
[[dns.nets]]
prefixes = ["192.0.2.0/24"]
edges = ["edge1"]
[[dns.asn]]
asns = [64500]
edges = ["edge1"]
`

func TestDNSValidation(t *testing.T) {
	if _, err := load(t, dnsBase); err != nil {
		t.Fatalf("base config: %v", err)
	}
	tests := []struct {
		name, from, to, key string
	}{
		{"bad order step", `[dns]`, "[dns]\norder = [\"nets\", \"magic\"]", "dns.order[1]"},
		{"repeated order step", `[dns]`, "[dns]\norder = [\"geo\", \"geo\"]", "dns.order[1]"},
		{"answers too many", `[dns]`, "[dns]\nanswers = 9", "dns.answers"},
		{"tiny EDNS size", `[dns]`, "[dns]\nedns_udp_size = 100", "dns.edns_udp_size"},
		{"dynamic TTL zero", `[dns]`, "[dns]\ndynamic_ttl = \"0s\"", "dns.dynamic_ttl"},
		{"ECS prefix too long", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.ecs]\nmax_source_v4 = 33", "dns.ecs.max_source_v4"},
		{"health start", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.health]\nstart = \"maybe\"", "dns.health.start"},
		{"RRL prefix", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.rrl]\nipv4_prefix = 4", "dns.rrl.ipv4_prefix"},
		{"edge without address", `addrs = ["127.0.0.11"]`, `addrs = []`, "dns.edges[0].addrs"},
		{"edge bad address", `addrs = ["127.0.0.11"]`, `addrs = ["127.0.0.0/8"]`, "dns.edges[0].addrs[0]"},
		{"edge bad check", `check = "tcp://127.0.0.11:8080"`, `check = "ftp://x"`, "dns.edges[0].check"},
		{"pool unknown edge", `edges = ["edge1"]
[[dns.dynamic]]`, `edges = ["edge9"]
[[dns.dynamic]]`, "dns.pools[0].edges[0]"},
		{"dynamic unknown pool", `pool = "p"`, `pool = "q"`, "dns.dynamic[0].pool"},
		{"nets bad prefix", `prefixes = ["192.0.2.0/24"]`, `prefixes = ["192.0.2.0/33"]`, "dns.nets[0].prefixes[0]"},
		{"asn zero", `asns = [64500]`, `asns = [0]`, "dns.asn[0].asns[0]"},
		{"zone without data", `records = ["@ IN SOA ns1 h 1 2 3 4 5", "@ IN NS ns1"]`, `records = []`, "dns.zones[0]"},
		{"static fallback without addresses", `name = "p"`, "name = \"p\"\nfallback = \"static\"", "dns.pools[0].fallback_addrs"},
		{"bad notify target", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.transfer]\nnotify = [\"nowhere\"]", "dns.transfer.notify[0]"},
		{"dnstap empty destination", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.dnstap]\nenabled = true\ndestination = \"unix:\"", "dns.dnstap.destination"},
		{"dnstap unknown message", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.dnstap]\nenabled = true\nmessages = [\"auth_query\", \"client_query\"]", "dns.dnstap.messages[1]"},
		{"dnstap no messages", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.dnstap]\nenabled = true\nmessages = []", "dns.dnstap.messages"},
		{"dnstap queue size", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.dnstap]\nenabled = true\nqueue_size = 0", "dns.dnstap.queue_size"},
		{"dnstap long socket path", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.dnstap]\nenabled = true\ndestination = \"unix:/" + strings.Repeat("s", 120) + "\"", "dns.dnstap.destination"},
		{"dynamic bad transfer", `pool = "p"`, "pool = \"p\"\ntransfer = \"some\"", "dns.dynamic[0].transfer"},
		{"dynamic transfer edges unknown", `pool = "p"`, "pool = \"p\"\ntransfer = \"edges\"\ntransfer_edges = [\"edge9\"]", "dns.dynamic[0].transfer_edges[0]"},
		{"dynamic transfer edges missing", `pool = "p"`, "pool = \"p\"\ntransfer = \"edges\"", "dns.dynamic[0].transfer_edges"},
		{"dynamic transfer edges without edges", `pool = "p"`, "pool = \"p\"\ntransfer_edges = [\"edge1\"]", "dns.dynamic[0].transfer_edges"},
		{"bad transfer allow", `listen = "127.0.0.1:0"`, "listen = \"127.0.0.1:0\"\n[dns.transfer]\nallow = [\"everyone\"]", "dns.transfer.allow[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(dnsBase, tc.from, tc.to, 1)
			_, err := load(t, text)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want a config error", err)
			}
			if ce.Key != tc.key {
				t.Errorf("key %q (%v), want %q", ce.Key, err, tc.key)
			}
		})
	}
}
