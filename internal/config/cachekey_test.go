package config

import (
	"errors"
	"strings"
	"testing"
)

// TestCacheKeyRejects: bad [proxy.routes.cache_key] values name the key.
func TestCacheKeyRejects(t *testing.T) {
	route := "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n[proxy.routes.cache_key]\n"
	tests := []struct{ name, text, key, reason string }{
		{"bad glob", "ignore_query = [\"utm_*\", \"utm_[\"]\n", "proxy.routes[0].cache_key.ignore_query[1]", "not a glob"},
		{"empty pattern", "ignore_query = [\"\"]\n", "proxy.routes[0].cache_key.ignore_query[0]", "empty"},
		{"pattern with =", "ignore_query = [\"a=b\"]\n", "proxy.routes[0].cache_key.ignore_query[0]", "cannot contain"},
		{"bad header name", "include_headers = [\"X Device\"]\n", "proxy.routes[0].cache_key.include_headers[0]", "not a header field name"},
		{"sort_query not a bool", "sort_query = \"yes please\"\n", "proxy.routes[0].cache_key.sort_query", ""},
		{"unknown key", "ignore_querry = [\"x\"]\n", "proxy.routes[0].cache_key.ignore_querry", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, route+tt.text)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			if ce.Key != tt.key || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q (key %q), want key %q saying %q", err, ce.Key, tt.key, tt.reason)
			}
		})
	}
	cfg, err := load(t, route+"ignore_query = [\"utm_*\", \"[fg]clid\"]\nsort_query = true\ninclude_headers = [\"X-Device\"]\nlowercase_path = true\n[cache]\ndebug_key = true\n")
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Proxy.Routes[0].CacheKey; len(k.IgnoreQuery) != 2 || !k.SortQuery || !k.LowercasePath || k.IncludeHeaders[0] != "X-Device" || !cfg.Cache.DebugKey {
		t.Errorf("loaded %+v", k)
	}
}
