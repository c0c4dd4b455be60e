package config

import (
	"strings"
	"time"
)

// DNSSECConfig is a zone's online DNSSEC signing ([dns.zones.dnssec] after its [[dns.zones]]).
// Zero values mean the defaults below (TOML arrays of tables take no viper defaults).
type DNSSECConfig struct {
	// Enabled signs the zone: answers to queries with the DO bit carry RRSIGs, negative answers
	// a compact-denial NSEC (RFC 9824), and the apex publishes the DNSKEY RRset.
	Enabled bool `mapstructure:"enabled"`
	// Algorithm of generated keys: "ECDSAP256SHA256" (13, default) or "ED25519" (15).
	Algorithm string `mapstructure:"algorithm"`
	// Keys is the key layout generated on first start: "ksk+zsk" (default) or "csk".
	Keys string `mapstructure:"keys"`
	// KeyDir holds the zone's BIND-format key files K<zone>.+<alg>+<tag>.key/.private
	// (relative to data_dir; default "dnssec").
	KeyDir string `mapstructure:"key_dir"`
	// SignatureValidity is how long a signature is valid from its inception (default 14 days).
	SignatureValidity time.Duration `mapstructure:"signature_validity"`
	// Refresh re-signs when less than this much validity remains (default 4 days).
	Refresh time.Duration `mapstructure:"refresh"`
	// InceptionOffset backdates inception for validators with slow clocks (default 1h).
	InceptionOffset time.Duration `mapstructure:"inception_offset"`
	// DNSKEYTTL is the TTL of the DNSKEY RRset (default 1h).
	DNSKEYTTL time.Duration `mapstructure:"dnskey_ttl"`
	// PropagationDelay is how long a change takes to reach every secondary, added to each
	// waiting step of a key rollover (default 5m).
	PropagationDelay time.Duration `mapstructure:"propagation_delay"`
}

// DNSSEC algorithm names accepted in dns.zones[].dnssec.algorithm, with their numbers.
var dnssecAlgorithms = map[string]uint8{"ECDSAP256SHA256": 13, "13": 13, "ED25519": 15, "15": 15}

// AlgorithmNumber is the DNSSEC algorithm number (RFC 8624) of Algorithm.
func (c *DNSSECConfig) AlgorithmNumber() uint8 {
	if c.Algorithm == "" {
		return 13
	}
	return dnssecAlgorithms[strings.ToUpper(c.Algorithm)]
}

// WithDefaults returns c with every zero value replaced by its default.
func (c DNSSECConfig) WithDefaults() DNSSECConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Keys == "" {
		c.Keys = "ksk+zsk"
	}
	if c.KeyDir == "" {
		c.KeyDir = "dnssec"
	}
	def(&c.SignatureValidity, 14*24*time.Hour)
	def(&c.Refresh, 4*24*time.Hour)
	def(&c.InceptionOffset, time.Hour)
	def(&c.DNSKEYTTL, time.Hour)
	def(&c.PropagationDelay, 5*time.Minute)
	return c
}

// validate checks one zone's signing settings; key is "dns.zones[N].dnssec".
func (c *DNSSECConfig) validate(key string) error {
	if c.AlgorithmNumber() == 0 {
		return errorf(key+".algorithm", "must be ECDSAP256SHA256 (13) or ED25519 (15), got %q", c.Algorithm)
	}
	if c.Keys != "" && c.Keys != "ksk+zsk" && c.Keys != "csk" {
		return errorf(key+".keys", "must be \"ksk+zsk\" or \"csk\", got %q", c.Keys)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"signature_validity", c.SignatureValidity}, {"refresh", c.Refresh}, {"inception_offset", c.InceptionOffset},
		{"dnskey_ttl", c.DNSKEYTTL}, {"propagation_delay", c.PropagationDelay}} {
		if err := CheckNonNegative(key+"."+d.name, d.v); err != nil {
			return err
		}
	}
	d := c.WithDefaults()
	if d.SignatureValidity < time.Hour || d.SignatureValidity > 366*24*time.Hour {
		return errorf(key+".signature_validity", "must be 1h..366 days, got %s", d.SignatureValidity)
	}
	if d.Refresh >= d.SignatureValidity {
		return errorf(key+".refresh", "must be shorter than signature_validity (%s), got %s", d.SignatureValidity, d.Refresh)
	}
	if d.DNSKEYTTL < time.Second || d.DNSKEYTTL > 7*24*time.Hour {
		return errorf(key+".dnskey_ttl", "must be 1s..7 days, got %s", d.DNSKEYTTL)
	}
	if d.DNSKEYTTL >= d.Refresh {
		return errorf(key+".dnskey_ttl", "must be shorter than refresh (%s): signatures must outlive cached keys", d.Refresh)
	}
	return nil
}
