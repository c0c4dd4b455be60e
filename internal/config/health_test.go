package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const healthRoute = "[[proxy.routes]]\nhost = \"*\"\norigins = [\"http://127.0.0.1:1\"]\n[proxy.routes.health]\n"

// TestHealthAndTokenRejects: bad [proxy.routes.health] values and a non-loopback admin
// without a token name their key.
func TestHealthAndTokenRejects(t *testing.T) {
	tests := []struct{ name, text, key, reason string }{
		{"path without slash", healthRoute + "path = \"hc\"\n", "proxy.routes[0].health.path", "start with /"},
		{"keys without path", healthRoute + "interval = \"1s\"\n", "proxy.routes[0].health.path", "must be set"},
		{"interval too short", healthRoute + "path = \"/hc\"\ninterval = \"1ms\"\n", "proxy.routes[0].health.interval", "shorter than 10ms"},
		{"negative timeout", healthRoute + "path = \"/hc\"\ntimeout = \"-1s\"\n", "proxy.routes[0].health.timeout", "negative"},
		{"timeout over interval", healthRoute + "path = \"/hc\"\ninterval = \"1s\"\ntimeout = \"2s\"\n", "proxy.routes[0].health.timeout", "longer than the interval"},
		{"negative fall", healthRoute + "path = \"/hc\"\nfall = -1\n", "proxy.routes[0].health.fall", "between 1 and 100"},
		{"rise too large", healthRoute + "path = \"/hc\"\nrise = 1000\n", "proxy.routes[0].health.rise", "between 1 and 100"},
		{"bad expect_status", healthRoute + "path = \"/hc\"\nexpect_status = [200, 99]\n", "proxy.routes[0].health.expect_status[1]", "not an HTTP status"},
		{"unknown health key", healthRoute + "path = \"/hc\"\nevery = \"1s\"\n", "proxy.routes[0].health.every", "unknown key"},
		{"admin on all interfaces", "[admin]\nlisten = \"0.0.0.0:9090\"\n", "admin.token_file", "not a loopback"},
		{"admin on a public address", "[admin]\nlisten = \"[2001:db8::1]:9090\"\n", "admin.token_file", "not a loopback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.text)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			if ce.Key != tt.key || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q, want key %s saying %q", err, tt.key, tt.reason)
			}
		})
	}
}

func TestHealthDefaultsAndPasses(t *testing.T) {
	c, err := load(t, healthRoute+"path = \"/hc\"\n[admin]\nlisten = \"localhost:0\"\n")
	if err != nil {
		t.Fatal(err)
	}
	h := c.Proxy.Routes[0].Health.Effective()
	if h.Interval != 5*time.Second || h.Timeout != 2*time.Second || h.Fall != 3 || h.Rise != 2 {
		t.Errorf("defaults: %+v", h)
	}
	for status, want := range map[int]bool{200: true, 301: true, 404: false, 503: false} {
		if h.Passes(status) != want {
			t.Errorf("Passes(%d) = %v with no expect_status", status, !want)
		}
	}
	h.ExpectStatus = []int{204}
	if h.Passes(200) || !h.Passes(204) {
		t.Error("expect_status not honoured")
	}
}

func TestChangedKeys(t *testing.T) {
	a := Default()
	b := a
	b.Proxy.MaxConnections++
	b.Proxy.PAC.Direct = []string{"x"}
	b.Cache.StaleMax = time.Minute
	got := strings.Join(ChangedKeys("", a, b), " ")
	if got != "proxy.max_connections proxy.pac.direct cache.stale_max" {
		t.Errorf("ChangedKeys = %q", got)
	}
}

// TestEveryBadRouteReported: each bad route and each section's problem is its own error, so a
// reload can log every one by key.
func TestEveryBadRouteReported(t *testing.T) {
	_, err := load(t, "[cache]\nheuristic_fraction = 3\n[[proxy.routes]]\nhost = \"a\"\norigins = [\"ftp://x\"]\n[[proxy.routes]]\nhost = \"b\"\norigins = []\n")
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) {
		t.Fatalf("error %v holds one problem", err)
	}
	for _, key := range []string{"proxy.routes[0].origins[0]", "proxy.routes[1].origins", "cache.heuristic_fraction"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}
