package config

import (
	"strings"
	"time"
)

// FTPGatewayConfig is the [proxy.ftp] section: the proxy's ftp:// gateway.
type FTPGatewayConfig struct {
	// Enabled lets forward-proxy clients fetch ftp:// URLs.
	Enabled bool `mapstructure:"enabled"`
	// ConnectTimeout bounds dialling the FTP server's control connection.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// Timeout bounds each FTP exchange (a reply, or a pause in a data transfer).
	Timeout time.Duration `mapstructure:"timeout"`
	// FileTTL is the Cache-Control max-age given to files (0 = no-cache).
	FileTTL time.Duration `mapstructure:"file_ttl"`
	// ListingTTL is the Cache-Control max-age given to directory listings (0 = no-cache).
	ListingTTL time.Duration `mapstructure:"listing_ttl"`
	// MaxSize refuses (502) files larger than this; 0 = unlimited.
	MaxSize ByteSize `mapstructure:"max_size"`
	// MaxListing caps the entries rendered for one directory.
	MaxListing int `mapstructure:"max_listing"`
	// AnonymousPassword is sent as PASS for anonymous logins (by convention an e-mail address).
	AnonymousPassword string `mapstructure:"anonymous_password"`
	// MaxIdleConns bounds the logged-in control connections kept idle for reuse by later
	// fetches from the same server with the same login (0 = log in for every fetch).
	MaxIdleConns int `mapstructure:"max_idle_conns"`
	// IdleConnTimeout closes a pooled connection unused this long (keep it below the FTP
	// servers' own idle timeouts; each reuse is checked with NOOP anyway).
	IdleConnTimeout time.Duration `mapstructure:"idle_conn_timeout"`
}

func defaultFTPGateway() FTPGatewayConfig {
	return FTPGatewayConfig{
		Enabled:           true,
		ConnectTimeout:    10 * time.Second,
		Timeout:           30 * time.Second,
		FileTTL:           time.Hour,
		ListingTTL:        5 * time.Minute,
		MaxSize:           1 << 30,
		MaxListing:        10000,
		AnonymousPassword: "outpost@",
		MaxIdleConns:      8,
		IdleConnTimeout:   30 * time.Second,
	}
}

func (c *FTPGatewayConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	if err := CheckPositive("proxy.ftp.connect_timeout", c.ConnectTimeout); err != nil {
		return err
	}
	if err := CheckPositive("proxy.ftp.timeout", c.Timeout); err != nil {
		return err
	}
	for key, v := range map[string]int64{
		"proxy.ftp.file_ttl": int64(c.FileTTL), "proxy.ftp.listing_ttl": int64(c.ListingTTL),
		"proxy.ftp.max_size": int64(c.MaxSize),
	} {
		if err := CheckNonNegative(key, v); err != nil {
			return err
		}
	}
	if err := CheckPositive("proxy.ftp.max_listing", c.MaxListing); err != nil {
		return err
	}
	if err := CheckNonNegative("proxy.ftp.max_idle_conns", int64(c.MaxIdleConns)); err != nil {
		return err
	}
	if err := CheckPositive("proxy.ftp.idle_conn_timeout", c.IdleConnTimeout); err != nil {
		return err
	}
	if strings.ContainsAny(c.AnonymousPassword, "\r\n\x00") {
		return errorf("proxy.ftp.anonymous_password", "must be a single line")
	}
	return nil
}
