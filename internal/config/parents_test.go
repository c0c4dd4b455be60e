package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParentsAndPurgeSections(t *testing.T) {
	tests := []struct {
		name, text string
		key        string // the key the error must name; "" = loads
		reason     string
		servers    []string
		peers      []string
	}{
		{name: "defaults"},
		{name: "servers", text: "[proxy.parents]\nservers = [\"198.19.0.20:80\", \"parent2.example:3128\"]\n",
			servers: []string{"198.19.0.20:80", "parent2.example:3128"}},
		{name: "tcp check", text: "[proxy.parents]\nservers = [\"127.0.0.1:80\"]\ncheck = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\nfall = 3\nrise = 1\n",
			servers: []string{"127.0.0.1:80"}},
		{name: "peers", text: "[proxy.purge]\npeers = [\"198.19.0.1:80\", \"198.19.0.2:80\"]\ntimeout = \"1s\"\n",
			peers: []string{"198.19.0.1:80", "198.19.0.2:80"}},
		{name: "server without port", text: "[proxy.parents]\nservers = [\"parent.example\"]\n", key: "proxy.parents.servers[0]"},
		{name: "second server bad", text: "[proxy.parents]\nservers = [\"127.0.0.1:80\", \"127.0.0.1:http\"]\n", key: "proxy.parents.servers[1]"},
		{name: "unknown check", text: "[proxy.parents]\ncheck = \"icmp\"\n", key: "proxy.parents.check", reason: `"http" or "tcp"`},
		{name: "zero interval", text: "[proxy.parents]\ninterval = \"0s\"\n", key: "proxy.parents.interval"},
		{name: "negative timeout", text: "[proxy.parents]\ntimeout = \"-1s\"\n", key: "proxy.parents.timeout"},
		{name: "timeout over interval", text: "[proxy.parents]\ninterval = \"1s\"\ntimeout = \"2s\"\n", key: "proxy.parents.timeout", reason: "longer than"},
		{name: "zero fall", text: "[proxy.parents]\nfall = 0\n", key: "proxy.parents.fall", reason: "between 1 and 100"},
		{name: "huge rise", text: "[proxy.parents]\nrise = 1000\n", key: "proxy.parents.rise", reason: "between 1 and 100"},
		{name: "unknown parents key", text: "[proxy.parents]\nserver = [\"127.0.0.1:80\"]\n", key: "proxy.parents.server"},
		{name: "too many servers", text: "[proxy.parents]\nservers = [" + strings.Repeat("\"127.0.0.1:80\", ", 16) + "\"127.0.0.1:81\"]\n", key: "proxy.parents.servers", reason: "at most 16"},
		{name: "bad peer", text: "[proxy.purge]\npeers = [\"edge1\"]\n", key: "proxy.purge.peers[0]"},
		{name: "zero purge timeout", text: "[proxy.purge]\ntimeout = \"0s\"\n", key: "proxy.purge.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.text)
			if tt.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(c.Proxy.Parents.Servers, tt.servers) || !slices.Equal(c.Proxy.Purge.Peers, tt.peers) {
					t.Fatalf("got parents %v peers %v, want %v %v", c.Proxy.Parents.Servers, c.Proxy.Purge.Peers, tt.servers, tt.peers)
				}
				if tt.name == "defaults" && (c.Proxy.Parents.Check != "http" || c.Proxy.Parents.Interval != 2*time.Second ||
					c.Proxy.Parents.Fall != 2 || c.Proxy.Parents.Rise != 2 || c.Proxy.Purge.Timeout != 2*time.Second) {
					t.Fatalf("defaults: %+v %+v", c.Proxy.Parents, c.Proxy.Purge)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key {
				t.Fatalf("error %v, want one naming %s", err, tt.key)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}
