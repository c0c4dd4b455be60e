package config

// FTPGatewayConfig is the [proxy.ftp] section: the proxy's ftp:// gateway.
type FTPGatewayConfig struct {
	// Enabled lets forward-proxy clients fetch ftp:// URLs.
	Enabled bool `mapstructure:"enabled"`
}

func defaultFTPGateway() FTPGatewayConfig { return FTPGatewayConfig{Enabled: true} }

func (c *FTPGatewayConfig) validate() error { return nil }
