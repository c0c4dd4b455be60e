package config

// DNSConfig is the [dns] section.
type DNSConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the listen address.
	Listen string `mapstructure:"listen"`
}

func defaultDNS() DNSConfig {
	return DNSConfig{Enabled: true, Listen: "127.0.0.1:5353"}
}

func (c *DNSConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	return CheckHostPort("dns.listen", c.Listen)
}
