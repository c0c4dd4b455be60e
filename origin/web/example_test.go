package web

import (
	"testing"

	"github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/internal/config"
)

// TestExampleConfig serves the demo site with config.example.toml's [web] section and checks
// its cache policy.
func TestExampleConfig(t *testing.T) {
	cfg, err := config.Load(config.Source{Default: outpost.ExampleConfig, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	wc := cfg.Web
	wc.Listen = "127.0.0.1:0"
	wc.AccessLog = false
	base := startServer(t, wc, t.TempDir())
	for path, cc := range map[string]string{
		"/": "", "/index.html": "no-cache", "/css/site.css": "public, max-age=3600",
		"/js/site.js": "public, max-age=3600", "/img/logo.png": "public, max-age=86400",
		"/bytes/1k": "public, max-age=3600", "/page/10": "public, max-age=3600",
	} {
		resp, _ := get(t, "GET", base+path, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != cc {
			t.Errorf("%s: %d, Cache-Control %q, want %q", path, resp.StatusCode, resp.Header.Get("Cache-Control"), cc)
		}
	}
}
