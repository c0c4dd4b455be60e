package config

import (
	"net"
	"net/netip"
	"strings"
	"time"
)

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

// AdminConfig is the [admin] section: health, readiness, metrics, pprof, component endpoints
// and the live dashboard.
type AdminConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// Listen is the admin listener's address.
	Listen string `mapstructure:"listen"`
	// Dashboard serves the live dashboard at / (and samples the metrics for it).
	Dashboard bool `mapstructure:"dashboard"`
	// DashboardInterval is the dashboard's sampling interval (100ms to 1m).
	DashboardInterval time.Duration `mapstructure:"dashboard_interval"`
	// DashboardWindow is how much history the dashboard keeps, at most maxDashboardSamples
	// intervals.
	DashboardWindow time.Duration `mapstructure:"dashboard_window"`
	// TLS serves the admin listener over TLS with the proxy's certificates ([proxy.tls]).
	TLS bool `mapstructure:"tls"`
	// TokenFile holds the bearer token the admin listener requires for changes (POST /reload,
	// POST /cache/purge, any method but GET/HEAD) and /debug/pprof/. Required when Listen is not
	// a loopback address; optional (but then enforced) on loopback.
	TokenFile string `mapstructure:"token_file"`
}

// maxDashboardSamples bounds the dashboard's history (its memory): window / interval.
const maxDashboardSamples = 3600

func defaultAdmin() AdminConfig {
	return AdminConfig{Enabled: true, Listen: "127.0.0.1:9090", Dashboard: true,
		DashboardInterval: time.Second, DashboardWindow: 10 * time.Minute}
}

func (c *AdminConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	if err := CheckHostPort("admin.listen", c.Listen); err != nil {
		return err
	}
	if c.TokenFile == "" && !IsLoopbackHostPort(c.Listen) {
		return errorf("admin.token_file", "is required when admin.listen (%s) is not a loopback address: the admin listener can reload, purge and profile", c.Listen)
	}
	if !c.Dashboard {
		return nil
	}
	if c.DashboardInterval < 100*time.Millisecond || c.DashboardInterval > time.Minute {
		return errorf("admin.dashboard_interval", "%s is outside 100ms to 1m", c.DashboardInterval)
	}
	if c.DashboardWindow < 2*c.DashboardInterval {
		return errorf("admin.dashboard_window", "%s is shorter than two sampling intervals (admin.dashboard_interval = %s)", c.DashboardWindow, c.DashboardInterval)
	}
	if n := c.DashboardWindow / c.DashboardInterval; n > maxDashboardSamples {
		return errorf("admin.dashboard_window", "%s holds %d samples of %s; at most %d", c.DashboardWindow, n, c.DashboardInterval, maxDashboardSamples)
	}
	return nil
}

// IsLoopbackHostPort reports whether a host:port listens on loopback only: "localhost" or a
// loopback address (an empty host or 0.0.0.0 means every interface).
func IsLoopbackHostPort(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
