package ftp

import (
	"testing"

	"github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/internal/config"
)

// TestExampleConfig starts the server from config.example.toml's [ftp] section (the demo
// `outpost up` runs) and logs in with the documented demo credentials.
func TestExampleConfig(t *testing.T) {
	cfg, err := config.Load(config.Source{Default: outpost.ExampleConfig, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	fc := cfg.FTP
	fc.Listen = "127.0.0.1:0"
	fc.LoginFailureDelay = 0
	ts := startFTP(t, fc)
	for _, u := range [][2]string{{"alice", "wonderland"}, {"bob", "builder"}, {"anonymous", "guest@"}} {
		c := ts.login(t, u[0], u[1])
		expect(t, c, 221, "QUIT")
	}
}
