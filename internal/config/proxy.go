package config

import "fmt"

// ProxyConfig is the [proxy] section.
type ProxyConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen holds the listen addresses.
	Listen []string `mapstructure:"listen"`
	// FTP is the ftp:// gateway ([proxy.ftp], owned by the origin/FTP work).
	FTP FTPGatewayConfig `mapstructure:"ftp"`
}

func defaultProxy() ProxyConfig {
	return ProxyConfig{Enabled: true, Listen: []string{"127.0.0.1:8080"}, FTP: defaultFTPGateway()}
}

func (c *ProxyConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	if err := c.FTP.validate(); err != nil {
		return err
	}
	if len(c.Listen) == 0 {
		return errorf("proxy.listen", "needs at least one address")
	}
	for i, a := range c.Listen {
		if err := CheckHostPort(fmt.Sprintf("proxy.listen[%d]", i), a); err != nil {
			return err
		}
	}
	return nil
}
