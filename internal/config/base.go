package config

// LogConfig is the [log] section.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level"`
	// Format is text or json.
	Format string `mapstructure:"format"`
}

func defaultLog() LogConfig { return LogConfig{Level: "info", Format: "text"} }

func (c *LogConfig) validate() error {
	switch c.Level {
	case "debug", "info", "warn", "error":
	default:
		return errorf("log.level", "%q is not one of debug, info, warn, error", c.Level)
	}
	switch c.Format {
	case "text", "json":
	default:
		return errorf("log.format", "%q is not one of text, json", c.Format)
	}
	return nil
}

// AdminConfig is the [admin] section: health, readiness, metrics, pprof and component endpoints.
type AdminConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// Listen is the admin listener's address.
	Listen string `mapstructure:"listen"`
}

func defaultAdmin() AdminConfig { return AdminConfig{Enabled: true, Listen: "127.0.0.1:9090"} }

func (c *AdminConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	return CheckHostPort("admin.listen", c.Listen)
}
