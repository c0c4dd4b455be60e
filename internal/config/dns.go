package config

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"
)

// DNSConfig is the [dns] section: the authoritative GeoDNS server (dnsredirect).
type DNSConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the UDP and TCP listen address.
	Listen string `mapstructure:"listen"`
	// UDPSockets is how many UDP sockets share the address with SO_REUSEPORT (0: one per CPU).
	UDPSockets int `mapstructure:"udp_sockets"`
	// EDNSUDPSize is the largest UDP response sent to EDNS clients (RFC 6891; 1232 avoids
	// fragmentation). Clients without EDNS get 512 bytes.
	EDNSUDPSize int `mapstructure:"edns_udp_size"`
	// TCPIdleTimeout closes a TCP connection that sends no query for this long (RFC 7766).
	TCPIdleTimeout time.Duration `mapstructure:"tcp_idle_timeout"`
	// MaxTCPConnections bounds concurrent TCP connections; more wait in the accept queue.
	MaxTCPConnections int `mapstructure:"max_tcp_connections"`
	// MaxTCPQueries closes a TCP connection after this many queries (0: no limit).
	MaxTCPQueries int `mapstructure:"max_tcp_queries"`
	// VersionBind answers CHAOS TXT version.bind / version.server; empty refuses them.
	VersionBind string `mapstructure:"version_bind"`
	// DynamicTTL is the TTL of dynamic (steered) answers.
	DynamicTTL time.Duration `mapstructure:"dynamic_ttl"`
	// Answers is how many edges a dynamic answer carries by default (best N healthy).
	Answers int `mapstructure:"answers"`
	// Order is the steering order: any of "nets", "asn", "geo", "default", each at most once.
	Order []string `mapstructure:"order"`
	// WatchInterval polls zone files and GeoIP databases for changes and reloads (0: off).
	WatchInterval time.Duration `mapstructure:"watch_interval"`
	// MaxCachedAnswers bounds the precomputed packed answers kept per loaded configuration.
	MaxCachedAnswers int `mapstructure:"max_cached_answers"`

	// ECS is the EDNS Client Subnet policy ([dns.ecs]).
	ECS DNSECSConfig `mapstructure:"ecs"`
	// GeoIP names the MaxMind databases ([dns.geoip]).
	GeoIP DNSGeoIPConfig `mapstructure:"geoip"`
	// Health is the active health checking of edges ([dns.health]).
	Health DNSHealthConfig `mapstructure:"health"`
	// RRL is response rate limiting ([dns.rrl]).
	RRL DNSRRLConfig `mapstructure:"rrl"`
	// Transfer is AXFR and NOTIFY ([dns.transfer]).
	Transfer DNSTransferConfig `mapstructure:"transfer"`
	// Dnstap is query logging in dnstap format ([dns.dnstap]).
	Dnstap DNSDnstapConfig `mapstructure:"dnstap"`

	// Zones are the authoritative zones ([[dns.zones]]).
	Zones []DNSZoneConfig `mapstructure:"zones"`
	// Edges are the places dynamic names can send clients ([[dns.edges]]).
	Edges []DNSEdgeConfig `mapstructure:"edges"`
	// Pools group edges ([[dns.pools]]).
	Pools []DNSPoolConfig `mapstructure:"pools"`
	// Dynamic are the steered names ([[dns.dynamic]]).
	Dynamic []DNSDynamicConfig `mapstructure:"dynamic"`
	// Nets is the explicit networks map ([[dns.nets]]): CIDRs to ordered edges.
	Nets []DNSNetsConfig `mapstructure:"nets"`
	// ASN is the AS-number map ([[dns.asn]]): AS numbers to ordered edges.
	ASN []DNSASNConfig `mapstructure:"asn"`
}

// DNSECSConfig is the EDNS Client Subnet (RFC 7871) policy.
type DNSECSConfig struct {
	// Enabled uses the ECS subnet for steering and echoes the option with its scope.
	Enabled bool `mapstructure:"enabled"`
	// IgnorePrivate ignores ECS subnets in RFC 1918 / RFC 4193 / loopback space and steers by
	// the resolver's address instead (the documentation ranges are not private).
	IgnorePrivate bool `mapstructure:"ignore_private"`
	// MaxSourceV4 caps the IPv4 source prefix used (longer ones are truncated).
	MaxSourceV4 int `mapstructure:"max_source_v4"`
	// MaxSourceV6 caps the IPv6 source prefix used.
	MaxSourceV6 int `mapstructure:"max_source_v6"`
}

// DNSGeoIPConfig names the MaxMind-format databases. Relative paths are under data_dir.
type DNSGeoIPConfig struct {
	// CityDB is a GeoIP2/GeoLite2-City-shaped database ("" disables the geo step).
	CityDB string `mapstructure:"city_db"`
	// ASNDB is a GeoLite2-ASN-shaped database ("" disables the asn step).
	ASNDB string `mapstructure:"asn_db"`
	// GenerateDemo writes city_db and asn_db from demo_csv when they are absent.
	GenerateDemo bool `mapstructure:"generate_demo"`
	// DemoCSV is the CSV the demo databases are built from ("" = the embedded demo regions).
	DemoCSV string `mapstructure:"demo_csv"`
}

// DNSHealthConfig is the health-check schedule shared by all edges.
type DNSHealthConfig struct {
	// Interval between checks of one edge.
	Interval time.Duration `mapstructure:"interval"`
	// Timeout of one check.
	Timeout time.Duration `mapstructure:"timeout"`
	// Rise is how many consecutive passes bring a down edge up.
	Rise int `mapstructure:"rise"`
	// Fall is how many consecutive failures take an up edge down.
	Fall int `mapstructure:"fall"`
	// Start is the state before the first check: "up" or "down".
	Start string `mapstructure:"start"`
}

// DNSRRLConfig is response rate limiting per client network (as in BIND and Knot).
type DNSRRLConfig struct {
	// Enabled turns rate limiting of UDP responses on.
	Enabled bool `mapstructure:"enabled"`
	// ResponsesPerSecond each client network may receive.
	ResponsesPerSecond int `mapstructure:"responses_per_second"`
	// Burst is how many responses may be sent at once above the rate.
	Burst int `mapstructure:"burst"`
	// Slip sends every Nth limited response truncated (TC) instead of dropping it (0: drop all).
	Slip int `mapstructure:"slip"`
	// IPv4Prefix and IPv6Prefix define a client network.
	IPv4Prefix int `mapstructure:"ipv4_prefix"`
	IPv6Prefix int `mapstructure:"ipv6_prefix"`
	// TableSize bounds the tracked client networks.
	TableSize int `mapstructure:"table_size"`
	// Exempt networks are never limited.
	Exempt []string `mapstructure:"exempt"`
}

// DNSTransferConfig is zone transfer and change notification.
type DNSTransferConfig struct {
	// Allow lists the secondaries (CIDRs or addresses) that may AXFR over TCP (empty: none).
	Allow []string `mapstructure:"allow"`
	// Notify lists host:port targets sent a NOTIFY (RFC 1996) when a zone changes.
	Notify []string `mapstructure:"notify"`
}

// DNSZoneConfig is one zone: records in master-file syntax, and/or a zone file.
type DNSZoneConfig struct {
	// Name is the apex, e.g. "cdn.test".
	Name string `mapstructure:"name"`
	// File is an RFC 1035 master file (relative to data_dir), merged with Records.
	File string `mapstructure:"file"`
	// TTL is the default TTL of records that give none.
	TTL time.Duration `mapstructure:"ttl"`
	// Records are master-file lines relative to the apex, e.g. "www 300 IN A 192.0.2.1".
	Records []string `mapstructure:"records"`
	// DNSSEC is online signing of the zone ([dns.zones.dnssec]; see dnssec.go).
	DNSSEC DNSSECConfig `mapstructure:"dnssec"`
}

// DNSEdgeConfig is one edge: a place a dynamic name can send clients.
type DNSEdgeConfig struct {
	// Name identifies the edge in pools, maps, logs and the admin API.
	Name string `mapstructure:"name"`
	// Addrs are its IPv4 and IPv6 addresses.
	Addrs []string `mapstructure:"addrs"`
	// Latitude and Longitude locate it for the geo step (both 0: no coordinates).
	Latitude  float64 `mapstructure:"latitude"`
	Longitude float64 `mapstructure:"longitude"`
	// Country (ISO 3166 alpha-2) and Continent (two-letter code) locate it without coordinates.
	Country   string `mapstructure:"country"`
	Continent string `mapstructure:"continent"`
	// Weight shares traffic among equally good edges.
	Weight int `mapstructure:"weight"`
	// Full is the capacity flag: a full edge is used only after every other healthy candidate.
	Full bool `mapstructure:"full"`
	// Check is the health check: "http://host:port/path" (GET through the edge, 2xx/3xx
	// passes), "tcp://host:port" (connect), or "" (no checks: always up).
	Check string `mapstructure:"check"`
}

// DNSPoolConfig groups edges and says what to answer when all of them are down.
type DNSPoolConfig struct {
	// Name identifies the pool.
	Name string `mapstructure:"name"`
	// Edges are the member edges; the default step uses them all, weighted.
	Edges []string `mapstructure:"edges"`
	// Fallback when every edge is down: "all" (every edge anyway), "static" (FallbackAddrs) or
	// "empty" (NOERROR, no records).
	Fallback string `mapstructure:"fallback"`
	// FallbackAddrs are the addresses for fallback = "static".
	FallbackAddrs []string `mapstructure:"fallback_addrs"`
}

// DNSDynamicConfig is one steered name.
type DNSDynamicConfig struct {
	// Name is the fully qualified name inside one of the zones.
	Name string `mapstructure:"name"`
	// Pool is the edge pool it answers from.
	Pool string `mapstructure:"pool"`
	// TTL overrides dynamic_ttl (0: use it).
	TTL time.Duration `mapstructure:"ttl"`
	// Answers overrides answers (0: use it).
	Answers int `mapstructure:"answers"`
	// Transfer is what a zone transfer (and so a secondary) carries for the name: "all" edges
	// of the pool (default), the fixed "edges" in TransferEdges, or "exclude" (no addresses).
	Transfer string `mapstructure:"transfer"`
	// TransferEdges are the edges transferred with transfer = "edges".
	TransferEdges []string `mapstructure:"transfer_edges"`
}

// DNSNetsConfig maps client networks to an ordered list of edges.
type DNSNetsConfig struct {
	// Prefixes are CIDRs.
	Prefixes []string `mapstructure:"prefixes"`
	// Edges are tried in order.
	Edges []string `mapstructure:"edges"`
}

// DNSASNConfig maps AS numbers to an ordered list of edges.
type DNSASNConfig struct {
	// ASNs are autonomous system numbers.
	ASNs []int `mapstructure:"asns"`
	// Edges are tried in order.
	Edges []string `mapstructure:"edges"`
}

// MaxDNSEdges is the most edges one configuration may define.
const MaxDNSEdges = 64

func defaultDNS() DNSConfig {
	return DNSConfig{
		Enabled: true, Listen: "127.0.0.1:5353", EDNSUDPSize: 1232,
		TCPIdleTimeout: 10 * time.Second, MaxTCPConnections: 256, MaxTCPQueries: 0,
		VersionBind: "outpost", DynamicTTL: 30 * time.Second, Answers: 1,
		Order: []string{"nets", "asn", "geo", "default"}, WatchInterval: 2 * time.Second,
		MaxCachedAnswers: 100000,
		ECS:              DNSECSConfig{Enabled: true, IgnorePrivate: true, MaxSourceV4: 24, MaxSourceV6: 56},
		Health:           DNSHealthConfig{Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3, Start: "up"},
		RRL: DNSRRLConfig{Enabled: true, ResponsesPerSecond: 200, Burst: 100, Slip: 2,
			IPv4Prefix: 24, IPv6Prefix: 56, TableSize: 65536, Exempt: []string{"127.0.0.0/8", "::1/128"}},
		Dnstap: defaultDNSTap(),
	}
}

func (c *DNSConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	return c.Validate()
}

// Validate checks the whole section, also when it is disabled (dnsredirect calls it on reload).
func (c *DNSConfig) Validate() error {
	for _, f := range []func() error{c.validateServer, c.validateSubsections, c.validateZones, c.validateSteering} {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func (c *DNSConfig) validateServer() error {
	if err := CheckHostPort("dns.listen", c.Listen); err != nil {
		return err
	}
	if c.UDPSockets < 0 || c.UDPSockets > 64 {
		return errorf("dns.udp_sockets", "must be 0..64, got %d", c.UDPSockets)
	}
	if c.EDNSUDPSize < 512 || c.EDNSUDPSize > 4096 {
		return errorf("dns.edns_udp_size", "must be 512..4096, got %d", c.EDNSUDPSize)
	}
	if err := CheckPositive("dns.tcp_idle_timeout", c.TCPIdleTimeout); err != nil {
		return err
	}
	if err := CheckPositive("dns.max_tcp_connections", c.MaxTCPConnections); err != nil {
		return err
	}
	if err := CheckNonNegative("dns.max_tcp_queries", c.MaxTCPQueries); err != nil {
		return err
	}
	if c.DynamicTTL < time.Second || c.DynamicTTL > 24*time.Hour {
		return errorf("dns.dynamic_ttl", "must be 1s..24h, got %s", c.DynamicTTL)
	}
	if c.Answers < 1 || c.Answers > 8 {
		return errorf("dns.answers", "must be 1..8, got %d", c.Answers)
	}
	if err := CheckNonNegative("dns.watch_interval", c.WatchInterval); err != nil {
		return err
	}
	if err := CheckNonNegative("dns.max_cached_answers", c.MaxCachedAnswers); err != nil {
		return err
	}
	return checkOrder(c.Order)
}

func checkOrder(order []string) error {
	seen := map[string]bool{}
	for i, s := range order {
		key := fmt.Sprintf("dns.order[%d]", i)
		switch s {
		case "nets", "asn", "geo", "default":
		default:
			return errorf(key, "%q is not a step (nets, asn, geo, default)", s)
		}
		if seen[s] {
			return errorf(key, "%q appears twice", s)
		}
		seen[s] = true
	}
	return nil
}

func (c *DNSConfig) validateSubsections() error {
	e := c.ECS
	if e.MaxSourceV4 < 0 || e.MaxSourceV4 > 32 {
		return errorf("dns.ecs.max_source_v4", "must be 0..32, got %d", e.MaxSourceV4)
	}
	if e.MaxSourceV6 < 0 || e.MaxSourceV6 > 128 {
		return errorf("dns.ecs.max_source_v6", "must be 0..128, got %d", e.MaxSourceV6)
	}
	h := c.Health
	if err := CheckPositive("dns.health.interval", h.Interval); err != nil {
		return err
	}
	if err := CheckPositive("dns.health.timeout", h.Timeout); err != nil {
		return err
	}
	if h.Rise < 1 || h.Fall < 1 {
		return errorf("dns.health.rise", "rise and fall must be at least 1, got %d and %d", h.Rise, h.Fall)
	}
	if h.Start != "up" && h.Start != "down" {
		return errorf("dns.health.start", "must be \"up\" or \"down\", got %q", h.Start)
	}
	if err := c.RRL.validate(); err != nil {
		return err
	}
	if err := c.Dnstap.validate(); err != nil {
		return err
	}
	if _, err := ParsePrefixes("dns.transfer.allow", c.Transfer.Allow); err != nil {
		return err
	}
	for i, n := range c.Transfer.Notify {
		if err := CheckHostPort(fmt.Sprintf("dns.transfer.notify[%d]", i), n); err != nil {
			return err
		}
	}
	return nil
}

func (r *DNSRRLConfig) validate() error {
	if !r.Enabled {
		return nil
	}
	if err := CheckPositive("dns.rrl.responses_per_second", r.ResponsesPerSecond); err != nil {
		return err
	}
	if err := CheckNonNegative("dns.rrl.burst", r.Burst); err != nil {
		return err
	}
	if err := CheckNonNegative("dns.rrl.slip", r.Slip); err != nil {
		return err
	}
	if r.IPv4Prefix < 8 || r.IPv4Prefix > 32 {
		return errorf("dns.rrl.ipv4_prefix", "must be 8..32, got %d", r.IPv4Prefix)
	}
	if r.IPv6Prefix < 16 || r.IPv6Prefix > 64 {
		return errorf("dns.rrl.ipv6_prefix", "must be 16..64, got %d", r.IPv6Prefix)
	}
	if err := CheckPositive("dns.rrl.table_size", r.TableSize); err != nil {
		return err
	}
	_, err := ParsePrefixes("dns.rrl.exempt", r.Exempt)
	return err
}

func (c *DNSConfig) validateZones() error {
	seen := map[string]bool{}
	for i, z := range c.Zones {
		key := fmt.Sprintf("dns.zones[%d]", i)
		name := CanonicalDNSName(z.Name)
		if name == "." || strings.Contains(name, "..") || strings.TrimSpace(z.Name) == "" {
			return errorf(key+".name", "%q is not a zone name", z.Name)
		}
		if seen[name] {
			return errorf(key+".name", "zone %q appears twice", z.Name)
		}
		seen[name] = true
		if z.File == "" && len(z.Records) == 0 {
			return errorf(key, "zone %q needs records or a file", z.Name)
		}
		if err := CheckNonNegative(key+".ttl", z.TTL); err != nil {
			return err
		}
		if err := z.DNSSEC.validate(key + ".dnssec"); err != nil {
			return err
		}
	}
	return nil
}

func (c *DNSConfig) validateSteering() error {
	edges := map[string]bool{}
	if len(c.Edges) > MaxDNSEdges {
		return errorf("dns.edges", "at most %d edges, got %d", MaxDNSEdges, len(c.Edges))
	}
	for i, e := range c.Edges {
		if err := e.validate(fmt.Sprintf("dns.edges[%d]", i), edges); err != nil {
			return err
		}
		edges[strings.ToLower(e.Name)] = true
	}
	pools := map[string]bool{}
	for i, p := range c.Pools {
		if err := p.validate(fmt.Sprintf("dns.pools[%d]", i), edges, pools); err != nil {
			return err
		}
		pools[strings.ToLower(p.Name)] = true
	}
	for i, d := range c.Dynamic {
		if err := d.validate(fmt.Sprintf("dns.dynamic[%d]", i), pools); err != nil {
			return err
		}
		if err := d.validateTransfer(fmt.Sprintf("dns.dynamic[%d]", i), edges); err != nil {
			return err
		}
	}
	for i, n := range c.Nets {
		key := fmt.Sprintf("dns.nets[%d]", i)
		if _, err := ParsePrefixes(key+".prefixes", n.Prefixes); err != nil {
			return err
		}
		if err := checkEdgeList(key+".edges", n.Edges, edges); err != nil {
			return err
		}
	}
	for i, a := range c.ASN {
		key := fmt.Sprintf("dns.asn[%d]", i)
		for j, n := range a.ASNs {
			if n <= 0 || n > math.MaxUint32 {
				return errorf(fmt.Sprintf("%s.asns[%d]", key, j), "%d is not an AS number", n)
			}
		}
		if err := checkEdgeList(key+".edges", a.Edges, edges); err != nil {
			return err
		}
	}
	return nil
}

func (e *DNSEdgeConfig) validate(key string, seen map[string]bool) error {
	if strings.TrimSpace(e.Name) == "" {
		return errorf(key+".name", "must not be empty")
	}
	if seen[strings.ToLower(e.Name)] {
		return errorf(key+".name", "edge %q appears twice", e.Name)
	}
	if len(e.Addrs) == 0 {
		return errorf(key+".addrs", "edge %q needs at least one address", e.Name)
	}
	for j, a := range e.Addrs {
		if _, err := ParsePrefixes(fmt.Sprintf("%s.addrs[%d]", key, j), []string{a}); err != nil || strings.Contains(a, "/") {
			return errorf(fmt.Sprintf("%s.addrs[%d]", key, j), "%q is not an IP address", a)
		}
	}
	if e.Latitude < -90 || e.Latitude > 90 || e.Longitude < -180 || e.Longitude > 180 {
		return errorf(key+".latitude", "coordinates %v,%v are out of range", e.Latitude, e.Longitude)
	}
	if e.Weight < 0 || e.Weight > 1000 {
		return errorf(key+".weight", "must be 0..1000 (0 means 1), got %d", e.Weight)
	}
	return checkHealthURL(key+".check", e.Check)
}

func checkHealthURL(key, check string) error {
	if check == "" {
		return nil
	}
	u, err := url.Parse(check)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "tcp") {
		return errorf(key, "%q is not http://host:port/path or tcp://host:port", check)
	}
	if u.Scheme == "tcp" && u.Port() == "" {
		return errorf(key, "%q needs a port", check)
	}
	return nil
}

func (p *DNSPoolConfig) validate(key string, edges, seen map[string]bool) error {
	if strings.TrimSpace(p.Name) == "" {
		return errorf(key+".name", "must not be empty")
	}
	if seen[strings.ToLower(p.Name)] {
		return errorf(key+".name", "pool %q appears twice", p.Name)
	}
	if len(p.Edges) == 0 {
		return errorf(key+".edges", "pool %q needs at least one edge", p.Name)
	}
	if err := checkEdgeList(key+".edges", p.Edges, edges); err != nil {
		return err
	}
	switch p.Fallback {
	case "", "all", "empty":
	case "static":
		if len(p.FallbackAddrs) == 0 {
			return errorf(key+".fallback_addrs", "fallback \"static\" needs addresses")
		}
	default:
		return errorf(key+".fallback", "must be all, static or empty, got %q", p.Fallback)
	}
	for j, a := range p.FallbackAddrs {
		if _, err := ParsePrefixes(fmt.Sprintf("%s.fallback_addrs[%d]", key, j), []string{a}); err != nil || strings.Contains(a, "/") {
			return errorf(fmt.Sprintf("%s.fallback_addrs[%d]", key, j), "%q is not an IP address", a)
		}
	}
	return nil
}

func (d *DNSDynamicConfig) validate(key string, pools map[string]bool) error {
	if strings.TrimSpace(d.Name) == "" || CanonicalDNSName(d.Name) == "." {
		return errorf(key+".name", "must be a domain name")
	}
	if !pools[strings.ToLower(d.Pool)] {
		return errorf(key+".pool", "no pool named %q", d.Pool)
	}
	if d.TTL != 0 && (d.TTL < time.Second || d.TTL > 24*time.Hour) {
		return errorf(key+".ttl", "must be 0 or 1s..24h, got %s", d.TTL)
	}
	if d.Answers < 0 || d.Answers > 8 {
		return errorf(key+".answers", "must be 0..8, got %d", d.Answers)
	}
	return nil
}

func checkEdgeList(key string, list []string, edges map[string]bool) error {
	if len(list) == 0 {
		return errorf(key, "needs at least one edge")
	}
	for j, e := range list {
		if !edges[strings.ToLower(e)] {
			return errorf(fmt.Sprintf("%s[%d]", key, j), "no edge named %q", e)
		}
	}
	return nil
}

// CanonicalDNSName lowercases a domain name and makes it fully qualified ("Cdn.Test" →
// "cdn.test.").
func CanonicalDNSName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}
