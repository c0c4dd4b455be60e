package config

import (
	"fmt"
	"path"
	"strings"
)

// CacheKeyConfig is [proxy.routes.cache_key]: how a route's requests are turned into cache
// keys beyond the normalised URL (scheme and host lowercased, default port dropped). The proxy
// hands the rules to the cache with each request of the route; purge by URL and
// /cache/explain apply the rules of the route the URL falls under.
type CacheKeyConfig struct {
	// IgnoreQuery lists query parameters left out of the key, as path.Match patterns over the
	// parameter's name as sent (before percent-decoding): "utm_*", "fbclid", "gclid".
	IgnoreQuery []string `mapstructure:"ignore_query"`
	// SortQuery orders the remaining query parameters by name (then value), so "b=2&a=1" and
	// "a=1&b=2" share a key.
	SortQuery bool `mapstructure:"sort_query"`
	// IncludeHeaders adds the named request fields' values to the key (for origins that vary
	// on a field without sending Vary). Names are case-insensitive.
	IncludeHeaders []string `mapstructure:"include_headers"`
	// LowercasePath lowercases the path in the key (for case-insensitive origins).
	LowercasePath bool `mapstructure:"lowercase_path"`
}

// Empty reports rules that leave the key as the normalised URL.
func (c CacheKeyConfig) Empty() bool {
	return len(c.IgnoreQuery) == 0 && !c.SortQuery && len(c.IncludeHeaders) == 0 && !c.LowercasePath
}

// validate checks the patterns and field names; key is "proxy.routes[i].cache_key".
func (c CacheKeyConfig) validate(key string) error {
	for i, p := range c.IgnoreQuery {
		k := fmt.Sprintf("%s.ignore_query[%d]", key, i)
		if p == "" {
			return errorf(k, "an empty pattern matches nothing")
		}
		if _, err := path.Match(p, ""); err != nil {
			return errorf(k, "%q is not a glob pattern (path.Match syntax: *, ?, [a-z], \\ escapes): %v", p, err)
		}
		if strings.ContainsAny(p, "&=# ") {
			return errorf(k, "%q: a parameter name pattern cannot contain &, =, # or a space", p)
		}
	}
	for i, h := range c.IncludeHeaders {
		if !IsFieldName(h) {
			return errorf(fmt.Sprintf("%s.include_headers[%d]", key, i), "%q is not a header field name", h)
		}
	}
	return nil
}

// IsFieldName reports an RFC 9110 §5.1 field name (a token).
func IsFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
