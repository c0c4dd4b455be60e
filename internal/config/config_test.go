package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// load writes text to a temp file and loads it with the given environment.
func load(t *testing.T, text string, env ...string) (*Config, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "outpost.toml")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if env == nil {
		env = []string{}
	}
	return Load(Source{File: f, Env: env})
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, text string
		env        []string
		key        string // the key the error must name
		reason     string // a fragment of the reason
	}{
		{name: "unknown key in section", text: "[proxy]\nlistn = \"127.0.0.1:8080\"\n", key: "proxy.listn", reason: "unknown key"},
		{name: "unknown top-level key", text: "datadir = \"x\"\n", key: "datadir", reason: "unknown key"},
		{name: "unknown section", text: "[proxxy]\nlisten = \"x\"\n", key: "proxxy", reason: "unknown key"},
		{name: "address without port", text: "[proxy]\nlisten = [\"127.0.0.1\"]\n", key: "proxy.listen[0]", reason: "not a host:port"},
		{name: "address with bad port", text: "[dns]\nlisten = \"127.0.0.1:99999\"\n", key: "dns.listen", reason: "invalid port"},
		{name: "admin address garbage", text: "[admin]\nlisten = \"nonsense\"\n", key: "admin.listen", reason: "not a host:port"},
		{name: "negative size as number", text: "[cache]\nmemory_size = -1\n", key: "cache.memory_size", reason: "negative"},
		{name: "negative size as string", text: "[cache]\nmax_object_size = \"-8MiB\"\n", key: "cache.max_object_size", reason: "negative"},
		{name: "size with unknown unit", text: "[cache]\nmemory_size = \"8 parsecs\"\n", key: "cache.memory_size", reason: "unknown unit"},
		{name: "bad duration", text: "grace_period = \"soon\"\n", key: "grace_period", reason: "not a duration"},
		{name: "negative duration", text: "grace_period = \"-1s\"\n", key: "grace_period", reason: "negative"},
		{name: "bad bool", text: "[admin]\nenabled = \"maybe\"\n", key: "admin.enabled", reason: "bool"},
		{name: "dashboard not a bool", text: "[admin]\ndashboard = \"on\"\n", key: "admin.dashboard", reason: "bool"},
		{name: "dashboard interval too short", text: "[admin]\ndashboard_interval = \"10ms\"\n", key: "admin.dashboard_interval", reason: "outside"},
		{name: "dashboard interval too long", text: "[admin]\ndashboard_interval = \"5m\"\n", key: "admin.dashboard_interval", reason: "outside"},
		{name: "dashboard interval not a duration", text: "[admin]\ndashboard_interval = \"often\"\n", key: "admin.dashboard_interval", reason: "not a duration"},
		{name: "dashboard window below two samples", text: "[admin]\ndashboard_window = \"1s\"\n", key: "admin.dashboard_window", reason: "two sampling intervals"},
		{name: "dashboard window too many samples", text: "[admin]\ndashboard_interval = \"100ms\"\ndashboard_window = \"1h\"\n", key: "admin.dashboard_window", reason: "at most 3600"},
		{name: "bad log level", text: "[log]\nlevel = \"loud\"\n", key: "log.level", reason: "not one of"},
		{name: "env names no key", text: "", env: []string{"OUTPOST_PROXY_LISTN=x"}, key: "OUTPOST_PROXY_LISTN", reason: "no configuration key"},
		{name: "env bad address", text: "", env: []string{"OUTPOST_WEB_LISTEN=localhost"}, key: "web.listen", reason: "not a host:port"},
		{name: "toml syntax", text: "[proxy\n", key: "", reason: "toml"},
		// Tag purge (issue 14).
		{name: "tag header not a field name", text: "[cache]\ntag_header = \"Surrogate Key\"\n", key: "cache.tag_header", reason: "field name"},
		{name: "tag header with a colon", text: "[cache]\ntag_header = \"Cache-Tag:\"\n", key: "cache.tag_header", reason: "field name"},
		{name: "tag separator unknown", text: "[cache]\ntag_separator = \"semicolon\"\n", key: "cache.tag_separator", reason: "space"},
		{name: "max tags zero", text: "[cache]\nmax_tags = 0\n", key: "cache.max_tags", reason: "between 1 and 4096"},
		{name: "max tags too many", text: "[cache]\nmax_tags = 100000\n", key: "cache.max_tags", reason: "between 1 and 4096"},
		{name: "max tag length negative", text: "[cache]\nmax_tag_length = -1\n", key: "cache.max_tag_length", reason: "between 1 and 4096"},
		{name: "strip tag header not a bool", text: "[cache]\nstrip_tag_header = \"sometimes\"\n", key: "cache.strip_tag_header", reason: "bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.text, tt.env...)
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			var ce *Error
			if tt.key != "" {
				if !errors.As(err, &ce) {
					t.Fatalf("error %q is not a *config.Error", err)
				}
				if ce.Key != tt.key {
					t.Errorf("error names key %q, want %q (%v)", ce.Key, tt.key, err)
				}
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.reason)) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}

func TestLoadOverrides(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		env   []string
		check func(*Config) bool
	}{
		{"defaults fill unset keys", "[proxy]\nlisten = [\"127.0.0.1:1\"]\n", nil, func(c *Config) bool {
			return c.Admin.Listen == "127.0.0.1:9090" && c.GracePeriod == 10*time.Second
		}},
		{"env overrides file", "[proxy]\nlisten = [\"127.0.0.1:1\"]\n", []string{"OUTPOST_PROXY_LISTEN=127.0.0.1:18080"}, func(c *Config) bool {
			return len(c.Proxy.Listen) == 1 && c.Proxy.Listen[0] == "127.0.0.1:18080"
		}},
		{"env list with commas", "", []string{"OUTPOST_PROXY_LISTEN=127.0.0.1:1,127.0.0.1:2"}, func(c *Config) bool {
			return len(c.Proxy.Listen) == 2 && c.Proxy.Listen[1] == "127.0.0.1:2"
		}},
		{"env top-level key", "", []string{"OUTPOST_DATA_DIR=/tmp/x"}, func(c *Config) bool { return c.DataDir == "/tmp/x" }},
		{"env bool and size", "", []string{"OUTPOST_CACHE_ENABLED=false", "OUTPOST_CACHE_MEMORY_SIZE=64MiB"}, func(c *Config) bool {
			return !c.Cache.Enabled && c.Cache.MemorySize == 64<<20
		}},
		{"sizes with units", "[cache]\nmemory_size = \"1GiB\"\nmax_object_size = 4096\n", nil, func(c *Config) bool {
			return c.Cache.MemorySize == 1<<30 && c.Cache.MaxObjectSize == 4096
		}},
		{"dashboard off skips its checks", "[admin]\ndashboard = false\ndashboard_interval = \"1h\"\n", nil, func(c *Config) bool { return !c.Admin.Dashboard }},
		{"dashboard defaults", "", nil, func(c *Config) bool {
			return c.Admin.Dashboard && c.Admin.DashboardInterval == time.Second && c.Admin.DashboardWindow == 10*time.Minute
		}},
		{"disabled component skips its checks", "[dns]\nenabled = false\nlisten = \"junk\"\n", nil, func(c *Config) bool { return !c.DNS.Enabled }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.text, tt.env...)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config: %+v", c)
			}
		})
	}
}

func TestPrintMasksSecretsAndRoundTrips(t *testing.T) {
	c := Default()
	out, err := c.TOML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "grace_period = '10s'") || !strings.Contains(string(out), "memory_size = '256MiB'") {
		t.Errorf("printed config lacks human-readable values:\n%s", out)
	}
	if _, err := load(t, string(out)); err != nil {
		t.Errorf("printed config does not load back: %v\n%s", err, out)
	}
	if got := maskIfSecret("password_hash", "$2a$10$abc"); got != "********" {
		t.Errorf("secret not masked: %v", got)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0}, {in: "512", want: 512}, {in: "1k", want: 1024}, {in: "64KiB", want: 64 << 10},
		{in: "8MiB", want: 8 << 20}, {in: "10MB", want: 10_000_000}, {in: "2 GiB", want: 2 << 30},
		{in: "-1", bad: true}, {in: "", bad: true}, {in: "MiB", bad: true}, {in: "1 furlong", bad: true},
		{in: "99999999999TiB", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}
