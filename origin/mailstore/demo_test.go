package mailstore_test

import (
	"testing"

	outpost "github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/origin/mailstore"
)

// TestDemoUsers: the bcrypt hashes in config.example.toml match the demo passwords the README
// documents, and each user's domain is served by one of the demo's two SMTP hosts.
func TestDemoUsers(t *testing.T) {
	cfg, err := config.Load(config.Source{Default: outpost.ExampleConfig, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	var specs []mailstore.UserSpec
	for _, u := range cfg.Mail.Users {
		specs = append(specs, mailstore.UserSpec{Address: u.Address, PasswordHash: u.PasswordHash})
	}
	dir, err := mailstore.NewDirectory(specs)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{}
	for _, h := range cfg.Mail.SMTP.Hosts {
		for _, d := range h.Domains {
			hosts[d] = h.Listen
		}
	}
	for _, tc := range []struct{ login, password, addr, listen string }{
		{"alice", "wonderland", "alice@outpost.test", "127.0.0.1:2525"},
		{"bob@outpost.test", "builder", "bob@outpost.test", "127.0.0.1:2525"},
		{"carol", "pirates", "carol@remote.test", "127.0.0.2:2525"},
	} {
		t.Run(tc.login, func(t *testing.T) {
			u, err := dir.Authenticate(tc.login, tc.password)
			if err != nil || u.Address != tc.addr {
				t.Fatalf("Authenticate(%s) = %v, %v", tc.login, u, err)
			}
			if got := hosts[u.Domain]; got != tc.listen {
				t.Fatalf("%s is served by %q, want %q", u.Domain, got, tc.listen)
			}
		})
	}
}
