package bench

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The lab writes one configuration file per server process: plain Outpost TOML, the same an
// operator would write for that machine in a real deployment (see the README's operator
// section). Every server has its own data directory and its admin listener on the loopback of
// its own namespace, where the lab reads /readyz and /metrics.

// labCommon is the head of every lab server's configuration.
func labCommon(dataDir string) string {
	return fmt.Sprintf(`data_dir = %q
grace_period = "2s"

[log]
level = "info"
format = "json"

[admin]
enabled = true
listen = "127.0.0.1:%d"
`, dataDir, labAdminPort)
}

// tomlList formats strings as a TOML array.
func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// listenAddrs are a server's HTTP listen addresses: its service address and its end of every
// link that relays to it. (Not 0.0.0.0: the delay lines in the same namespace listen on other
// addresses of the same port, which a wildcard listener would conflict with.)
func (t *labTopology) listenAddrs(n *labNode, port int) []string {
	out := []string{netip.AddrPortFrom(n.svc, uint16(port)).String()}
	for _, l := range t.links {
		if l.b == n && slices.Contains(l.ports, port) {
			out = append(out, netip.AddrPortFrom(l.bAddr, uint16(port)).String())
		}
	}
	return out
}

// proxyConfig is an edge's or the parent's configuration: a reverse proxy for www.cdn.test with
// a memory cache, routing every miss to the origin, or to parents when it has any; purges it
// accepts go up to its parents and down to its peers (the parent's are the edges).
func (t *labTopology) proxyConfig(n *labNode, dataDir string, parents, peers []string) string {
	var b strings.Builder
	b.WriteString(labCommon(dataDir))
	fmt.Fprintf(&b, `
[proxy]
enabled = true
listen = %s
via_pseudonym = %q
forward = false

[proxy.access_log]
format = "squid"
destination = %q

[proxy.pac]
enabled = false

[proxy.ftp]
enabled = false

[[proxy.routes]]
host = "*"
origins = ["http://%s"]
`, tomlList(t.listenAddrs(n, labHTTPPort)), n.name, filepath.Join(dataDir, "access.log"),
		netip.AddrPortFrom(t.origin.svc, labHTTPPort))
	if len(parents) > 0 {
		fmt.Fprintf(&b, "\n[proxy.parents]\nservers = %s\n", tomlList(parents))
	}
	if len(peers) > 0 {
		fmt.Fprintf(&b, "\n[proxy.purge]\npeers = %s\n", tomlList(peers))
	}
	b.WriteString(`
[cache]
enabled = true
memory_size = "64MiB"
disk_enabled = false
purge_allow = ["127.0.0.0/8", "198.18.0.0/15"]
`)
	return b.String()
}

// originConfig runs the HTTP origin and the FTP server (`outpost up` with the others off).
func (t *labTopology) originConfig(dataDir string) string {
	return labCommon(dataDir) + fmt.Sprintf(`
[proxy]
enabled = false

[dns]
enabled = false

[mail]
enabled = false

[web]
enabled = true
listen = "0.0.0.0:%d"
access_log = true

[ftp]
enabled = true
listen = "0.0.0.0:%d"
public_host = %q
passive_port_min = %d
passive_port_max = %d
`, labHTTPPort, labFTPPort, t.origin.svc, labFTPPassive, labFTPPassive+labFTPPassiveN-1)
}

// dnsConfig is the authoritative DNS: www.cdn.test steered by the explicit networks map (each
// region's resolver network → its edges nearest first), the edges health-checked over the lab's
// links.
func (t *labTopology) dnsConfig(dataDir string, d LabDelays, h LabHealth) string {
	var b strings.Builder
	b.WriteString(labCommon(dataDir))
	fmt.Fprintf(&b, `
[dns]
enabled = true
listen = "%s"
dynamic_ttl = "1s"
answers = 1
order = ["nets", "default"]
watch_interval = "0s"

[dns.ecs]
enabled = true

[dns.geoip]
city_db = ""
asn_db = ""
generate_demo = false

[dns.health]
interval = %q
timeout = %q
rise = %d
fall = %d
start = "up"

[dns.rrl]
enabled = false

[[dns.zones]]
name = "cdn.test"
ttl = "1h"
records = [
  "@      IN SOA ns1.cdn.test. hostmaster.cdn.test. 2026120301 7200 3600 1209600 300",
  "@      IN NS  ns1.cdn.test.",
  "ns1    IN A   %s",
  "parent IN A   %s",
  "origin IN A   %s",
]
`, netip.AddrPortFrom(t.dns.svc, labDNSPort), h.Interval.String(), h.Timeout.String(), h.Rise, h.Fall,
		t.dns.svc, t.parent.svc, t.origin.svc)
	var names []string
	for _, e := range t.edges {
		names = append(names, e.name)
		fmt.Fprintf(&b, "\n[[dns.edges]]\nname = %q\naddrs = [%q]\ncheck = \"tcp://%s\"\n",
			e.name, e.svc, netip.AddrPortFrom(e.svc, labHTTPPort))
	}
	fmt.Fprintf(&b, "\n[[dns.pools]]\nname = \"edges\"\nedges = %s\nfallback = \"all\"\n", tomlList(names))
	b.WriteString("\n[[dns.dynamic]]\nname = \"www.cdn.test\"\npool = \"edges\"\n")
	for r, rn := range t.regions {
		l := t.link(rn, t.dns)
		fmt.Fprintf(&b, "\n# %s's resolver network\n[[dns.nets]]\nprefixes = [\"%s\"]\nedges = %s\n",
			rn.name, netip.PrefixFrom(l.aAddr, 24).Masked(), tomlList(t.edgesByRTT(r, d)))
	}
	return b.String()
}

// edgesByRTT lists the edges in the order region r prefers them: nearest first.
func (t *labTopology) edgesByRTT(r int, d LabDelays) []string {
	idx := []int{0, 1, 2}
	slices.SortStableFunc(idx, func(a, b int) int { return int(d.regionEdge(r, a) - d.regionEdge(r, b)) })
	out := make([]string, len(idx))
	for i, e := range idx {
		out[i] = t.edges[e].name
	}
	return out
}

// failBound is the health check's worst case to mark an edge down: fall failed probes, each
// up to one interval apart, plus the interval in which the stop happened.
func (h LabHealth) failBound() time.Duration { return time.Duration(h.Fall+1)*h.Interval + h.Timeout }
