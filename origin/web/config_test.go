package web

import (
	"errors"
	"testing"

	"github.com/outpost-proxy/outpost/internal/config"
)

// TestConfigErrors checks that bad [web] settings are refused with the key named.
func TestConfigErrors(t *testing.T) {
	cases := []struct{ name, text, key string }{
		{"bad listen", `listen = "localhost"`, "web.listen"},
		{"write timeout below max delay", "write_timeout = \"5s\"\nmax_delay = \"10s\"", "web.write_timeout"},
		{"negative max bytes", "max_bytes = -1", "web.max_bytes"},
		{"tiny header limit", "max_header_bytes = 100", "web.max_header_bytes"},
		{"object size over its cap", "page_object_size = \"2MiB\"\nmax_page_object_size = \"1MiB\"", "web.page_object_size"},
		{"empty glob", "[[web.cache_policy]]\nglob = \"\"", "web.cache_policy[0].glob"},
		{"bad glob", "[[web.cache_policy]]\nglob = \"[\"", "web.cache_policy[0].glob"},
		{"multi-line header", "[[web.cache_policy]]\nglob = \"*\"\ncache_control = \"a\\nb\"", "web.cache_policy[0].cache_control"},
		{"unknown rule key", "[[web.cache_policy]]\nglob = \"*\"\nmaxage = 1", "web.cache_policy[0].maxage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(config.Source{Default: []byte("[web]\n" + tc.text), Env: []string{}})
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
}
