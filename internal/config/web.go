package config

// WebConfig is the [web] section.
type WebConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the listen address.
	Listen string `mapstructure:"listen"`
}

func defaultWeb() WebConfig {
	return WebConfig{Enabled: true, Listen: "127.0.0.1:8081"}
}

func (c *WebConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	return CheckHostPort("web.listen", c.Listen)
}
