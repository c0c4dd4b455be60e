package config

import (
	"strings"
	"time"
)

// CacheConfig is the [cache] section: the RFC 9111 shared cache in the proxy's request path.
type CacheConfig struct {
	// Enabled puts the cache in the proxy's request path.
	Enabled bool `mapstructure:"enabled"`
	// MemorySize is the memory tier's budget (headers + bodies + bookkeeping).
	MemorySize ByteSize `mapstructure:"memory_size"`
	// MaxObjectSize is the largest object the memory tier keeps; larger objects go to the disk
	// tier only (streamed to the client and to disk at once).
	MaxObjectSize ByteSize `mapstructure:"max_object_size"`

	// DiskEnabled turns the disk tier on (large objects and a warm restart).
	DiskEnabled bool `mapstructure:"disk_enabled"`
	// DiskDir is the disk tier's directory; empty means <data_dir>/cache.
	DiskDir string `mapstructure:"disk_dir"`
	// DiskSize is the disk tier's budget; the least recently used objects are evicted beyond it.
	DiskSize ByteSize `mapstructure:"disk_size"`
	// DiskMaxObjectSize is the largest object the disk tier keeps.
	DiskMaxObjectSize ByteSize `mapstructure:"disk_max_object_size"`

	// HeuristicFraction is the share of the time since Last-Modified used as the freshness
	// lifetime of responses without explicit expiry (RFC 9111 §4.2.2; 0.1 is the usual 10%).
	HeuristicFraction float64 `mapstructure:"heuristic_fraction"`
	// HeuristicMax caps heuristic freshness.
	HeuristicMax time.Duration `mapstructure:"heuristic_max"`

	// StaleOnError serves a stale object when the origin cannot be reached (refused, reset,
	// timed out, closed before answering), unless the object forbids it (must-revalidate,
	// proxy-revalidate, s-maxage, no-cache). RFC 9111 §4.2.4 allows this when disconnected.
	StaleOnError bool `mapstructure:"stale_on_error"`
	// StaleOn5xx also serves stale objects when the origin answers 500, 502, 503 or 504.
	StaleOn5xx bool `mapstructure:"stale_on_5xx"`
	// StaleMax is how stale an object may be when served under StaleOnError/StaleOn5xx.
	StaleMax time.Duration `mapstructure:"stale_max"`

	// Collapse makes concurrent misses for one object share one origin request.
	Collapse bool `mapstructure:"collapse"`
	// CollapseTimeout is how long a collapsed request waits for the shared response's header
	// before it goes to the origin itself.
	CollapseTimeout time.Duration `mapstructure:"collapse_timeout"`

	// MaxVariants bounds the Vary variants kept per URL (a hostile Vary cannot fill the cache
	// with one URL).
	MaxVariants int `mapstructure:"max_variants"`

	// PurgeAllow lists the client networks (CIDR or address) allowed to send PURGE requests.
	PurgeAllow []string `mapstructure:"purge_allow"`

	// StripCDNCacheControl removes CDN-Cache-Control (RFC 9213) from responses before they are
	// forwarded to clients. Off by default: RFC 9213 §3 has CDN caches forward it for the CDN
	// caches downstream, and remove it only when configured to. Outpost-Cache-Control is
	// always removed.
	StripCDNCacheControl bool `mapstructure:"strip_cdn_cache_control"`

	// DebugKey adds the request's cache key to Cache-Status as a key= parameter (a debug
	// switch: the key shows the URL and any include_headers values to the client).
	DebugKey bool `mapstructure:"debug_key"`

	// Tag purge (cache/tags.go).

	// TagHeader is the response field whose tags label a stored object for purging by tag:
	// "Surrogate-Key" (Fastly's convention, space-separated), "Cache-Tag" (Cloudflare's,
	// comma-separated) or another field name; empty turns tagging off.
	TagHeader string `mapstructure:"tag_header"`
	// TagSeparator is how TagHeader's value is split: "space", "comma", or empty for the
	// header's own convention (comma for Cache-Tag and Edge-Cache-Tag, space otherwise).
	TagSeparator string `mapstructure:"tag_separator"`
	// StripTagHeader removes TagHeader from responses before they go to clients.
	StripTagHeader bool `mapstructure:"strip_tag_header"`
	// MaxTags is the most tags kept per stored object; further tags are ignored.
	MaxTags int `mapstructure:"max_tags"`
	// MaxTagLength is the longest tag kept, in bytes; longer tags are ignored.
	MaxTagLength int `mapstructure:"max_tag_length"`
}

func defaultCache() CacheConfig {
	return CacheConfig{
		Enabled:              true,
		MemorySize:           256 << 20,
		MaxObjectSize:        8 << 20,
		DiskEnabled:          true,
		DiskSize:             1 << 30,
		DiskMaxObjectSize:    512 << 20,
		HeuristicFraction:    0.1,
		HeuristicMax:         24 * time.Hour,
		StaleOnError:         true,
		StaleMax:             24 * time.Hour,
		Collapse:             true,
		CollapseTimeout:      10 * time.Second,
		MaxVariants:          64,
		PurgeAllow:           []string{"127.0.0.0/8", "::1/128"},
		StripCDNCacheControl: false,
		TagHeader:            "Surrogate-Key",
		StripTagHeader:       true,
		MaxTags:              128,
		MaxTagLength:         256,
	}
}

func (c *CacheConfig) validate() error {
	if err := CheckNonNegative("cache.memory_size", c.MemorySize); err != nil {
		return err
	}
	if err := CheckNonNegative("cache.max_object_size", c.MaxObjectSize); err != nil {
		return err
	}
	if c.DiskEnabled {
		if err := CheckPositive("cache.disk_size", c.DiskSize); err != nil {
			return err
		}
		if err := CheckPositive("cache.disk_max_object_size", c.DiskMaxObjectSize); err != nil {
			return err
		}
	}
	if c.HeuristicFraction < 0 || c.HeuristicFraction > 1 {
		return errorf("cache.heuristic_fraction", "must be between 0 and 1, got %v", c.HeuristicFraction)
	}
	for key, d := range map[string]time.Duration{
		"cache.heuristic_max": c.HeuristicMax, "cache.stale_max": c.StaleMax,
		"cache.collapse_timeout": c.CollapseTimeout,
	} {
		if err := CheckNonNegative(key, d); err != nil {
			return err
		}
	}
	if err := CheckPositive("cache.max_variants", c.MaxVariants); err != nil {
		return err
	}
	if _, err := ParsePrefixes("cache.purge_allow", c.PurgeAllow); err != nil {
		return err
	}
	return c.validateTags()
}

// validateTags checks the tag purge keys.
func (c *CacheConfig) validateTags() error {
	if c.TagHeader != "" && !validFieldName(c.TagHeader) {
		return errorf("cache.tag_header", "must be a header field name (a token) or empty, got %q", c.TagHeader)
	}
	switch c.TagSeparator {
	case "", "space", "comma":
	default:
		return errorf("cache.tag_separator", `must be "space", "comma" or empty, got %q`, c.TagSeparator)
	}
	if c.MaxTags <= 0 || c.MaxTags > 4096 {
		return errorf("cache.max_tags", "must be between 1 and 4096, got %d", c.MaxTags)
	}
	if c.MaxTagLength <= 0 || c.MaxTagLength > 4096 {
		return errorf("cache.max_tag_length", "must be between 1 and 4096, got %d", c.MaxTagLength)
	}
	return nil
}

// validFieldName reports whether s is an HTTP field name (RFC 9110 §5.1: a token).
func validFieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return s != ""
}
