package ftpgw

import (
	"errors"
	"testing"

	"github.com/outpost-proxy/outpost/internal/config"
)

// TestConfigErrors checks that bad [proxy.ftp] settings are refused with the key named.
func TestConfigErrors(t *testing.T) {
	cases := []struct{ name, text, key string }{
		{"zero timeout", `timeout = "0s"`, "proxy.ftp.timeout"},
		{"zero connect timeout", `connect_timeout = "0s"`, "proxy.ftp.connect_timeout"},
		{"negative ttl", `file_ttl = "-1s"`, "proxy.ftp.file_ttl"},
		{"zero listing cap", "max_listing = 0", "proxy.ftp.max_listing"},
		{"multi-line password", "anonymous_password = \"a\\r\\nPASS x\"", "proxy.ftp.anonymous_password"},
		{"unknown key", "passive = false", "proxy.ftp.passive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(config.Source{Default: []byte("[proxy.ftp]\n" + tc.text), Env: []string{}})
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
}
