package config

// FTPConfig is the [ftp] section.
type FTPConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the listen address.
	Listen string `mapstructure:"listen"`
}

func defaultFTP() FTPConfig {
	return FTPConfig{Enabled: true, Listen: "127.0.0.1:2121"}
}

func (c *FTPConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	return CheckHostPort("ftp.listen", c.Listen)
}
