package config

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// WebConfig is the [web] section: the HTTP origin and its synthetic endpoints.
type WebConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the listen address.
	Listen string `mapstructure:"listen"`
	// Root is the directory served as static files; empty means <data_dir>/www. It is created
	// and seeded with the demo site when it does not exist.
	Root string `mapstructure:"root"`
	// MaxConnections caps simultaneous client connections (0 = unlimited).
	MaxConnections int `mapstructure:"max_connections"`
	// ReadHeaderTimeout bounds reading a request's header.
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// WriteTimeout bounds writing a response (it must exceed max_delay).
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// MaxHeaderBytes caps a request's header size.
	MaxHeaderBytes ByteSize `mapstructure:"max_header_bytes"`
	// AccessLog logs one line per request.
	AccessLog bool `mapstructure:"access_log"`
	// MaxBytes caps N in /bytes/N.
	MaxBytes ByteSize `mapstructure:"max_bytes"`
	// MaxDelay caps MS in /delay/MS/...
	MaxDelay time.Duration `mapstructure:"max_delay"`
	// MaxPageObjects caps N in /page/N.
	MaxPageObjects int `mapstructure:"max_page_objects"`
	// PageObjectSize is the size of each /page/N/obj/I object unless ?size= says otherwise.
	PageObjectSize ByteSize `mapstructure:"page_object_size"`
	// MaxPageObjectSize caps ?size= on /page/N.
	MaxPageObjectSize ByteSize `mapstructure:"max_page_object_size"`
	// SyntheticMaxAge is the Cache-Control max-age of /bytes and /page responses.
	SyntheticMaxAge time.Duration `mapstructure:"synthetic_max_age"`
	// MaxMutableSize caps a PUT body on /mutable/NAME.
	MaxMutableSize ByteSize `mapstructure:"max_mutable_size"`
	// MaxMutableNames caps how many /mutable/NAME resources exist at once.
	MaxMutableNames int `mapstructure:"max_mutable_names"`
	// CachePolicy sets Cache-Control / Expires by path glob; the first matching rule wins.
	CachePolicy []WebCacheRule `mapstructure:"cache_policy"`
}

// WebCacheRule is one [[web.cache_policy]] entry.
type WebCacheRule struct {
	// Glob matches the request path with path.Match syntax ("/static/*.css"); a glob without a
	// slash matches the last path element ("*.png").
	Glob string `mapstructure:"glob"`
	// CacheControl is the Cache-Control value to send; empty sends none.
	CacheControl string `mapstructure:"cache_control"`
	// Expires, when non-zero, sends Expires: now + Expires.
	Expires time.Duration `mapstructure:"expires"`
}

func defaultWeb() WebConfig {
	return WebConfig{
		Enabled:           true,
		Listen:            "127.0.0.1:8081",
		MaxConnections:    10000,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		AccessLog:         true,
		MaxBytes:          64 << 20,
		MaxDelay:          30 * time.Second,
		MaxPageObjects:    1000,
		PageObjectSize:    1 << 10,
		MaxPageObjectSize: 1 << 20,
		SyntheticMaxAge:   time.Hour,
		MaxMutableSize:    1 << 20,
		MaxMutableNames:   1000,
	}
}

func (c *WebConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	if err := CheckHostPort("web.listen", c.Listen); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if c.WriteTimeout > 0 && c.WriteTimeout <= c.MaxDelay {
		return errorf("web.write_timeout", "must exceed web.max_delay (%v), got %v", c.MaxDelay, c.WriteTimeout)
	}
	for i := range c.CachePolicy {
		if err := c.CachePolicy[i].validate(fmt.Sprintf("web.cache_policy[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

// validateLimits checks the numeric limits of the section.
func (c *WebConfig) validateLimits() error {
	for key, v := range map[string]int64{
		"web.max_connections":      int64(c.MaxConnections),
		"web.read_header_timeout":  int64(c.ReadHeaderTimeout),
		"web.read_timeout":         int64(c.ReadTimeout),
		"web.write_timeout":        int64(c.WriteTimeout),
		"web.idle_timeout":         int64(c.IdleTimeout),
		"web.max_bytes":            int64(c.MaxBytes),
		"web.max_delay":            int64(c.MaxDelay),
		"web.max_page_objects":     int64(c.MaxPageObjects),
		"web.page_object_size":     int64(c.PageObjectSize),
		"web.max_page_object_size": int64(c.MaxPageObjectSize),
		"web.synthetic_max_age":    int64(c.SyntheticMaxAge),
		"web.max_mutable_size":     int64(c.MaxMutableSize),
		"web.max_mutable_names":    int64(c.MaxMutableNames),
	} {
		if err := CheckNonNegative(key, v); err != nil {
			return err
		}
	}
	if err := CheckPositive("web.read_header_timeout", c.ReadHeaderTimeout); err != nil {
		return err
	}
	if c.MaxHeaderBytes < 1024 {
		return errorf("web.max_header_bytes", "must be at least 1KiB, got %v", c.MaxHeaderBytes)
	}
	if c.PageObjectSize > c.MaxPageObjectSize {
		return errorf("web.page_object_size", "must not exceed web.max_page_object_size (%v)", c.MaxPageObjectSize)
	}
	return nil
}

// validate checks one cache policy rule.
func (r *WebCacheRule) validate(key string) error {
	if r.Glob == "" {
		return errorf(key+".glob", "must not be empty")
	}
	if _, err := path.Match(r.Glob, "/"); err != nil {
		return errorf(key+".glob", "%q is not a valid glob: %v", r.Glob, err)
	}
	if strings.ContainsAny(r.CacheControl, "\r\n") {
		return errorf(key+".cache_control", "must be a single line")
	}
	return CheckNonNegative(key+".expires", r.Expires)
}
