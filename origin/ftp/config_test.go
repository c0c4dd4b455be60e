package ftp

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/config"
)

// loadFTP parses an [ftp] section given as TOML text.
func loadFTP(text string) (config.FTPConfig, error) {
	cfg, err := config.Load(config.Source{Default: []byte("[ftp]\n" + text), Env: []string{}})
	if err != nil {
		return config.FTPConfig{}, err
	}
	return cfg.FTP, nil
}

// TestConfigErrors checks that bad [ftp] settings are refused with the key named.
func TestConfigErrors(t *testing.T) {
	cases := []struct{ name, text, key string }{
		{"bad listen", `listen = "nowhere"`, "ftp.listen"},
		{"port range reversed", "passive_port_min = 50010\npassive_port_max = 50000", "ftp.passive_port_min"},
		{"port range half", "passive_port_max = 50000", "ftp.passive_port_min"},
		{"public host v6", `public_host = "::1"`, "ftp.public_host"},
		{"idle too short", `idle_timeout = "10ms"`, "ftp.idle_timeout"},
		{"zero per-ip", "max_connections_per_ip = 0", "ftp.max_connections_per_ip"},
		{"negative upload", "max_upload_size = -1", "ftp.max_upload_size"},
		{"plain password", "[[ftp.users]]\nname = \"eve\"\npassword_hash = \"secret\"", "ftp.users[0].password_hash"},
		{"reserved name", "[[ftp.users]]\nname = \"anonymous\"\npassword_hash = \"$2a$10$CnA7JUNiR5d.pC3Ngd5k/.Vbl7wFDmVEP4aSahXacD1mh2ytSy856\"", "ftp.users[0].name"},
		{"home escapes", "[[ftp.users]]\nname = \"eve\"\nhome = \"../x\"\npassword_hash = \"$2a$10$CnA7JUNiR5d.pC3Ngd5k/.Vbl7wFDmVEP4aSahXacD1mh2ytSy856\"", "ftp.users[0].home"},
		{"unknown key", `passive_ports = "1-2"`, "ftp.passive_ports"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadFTP(tc.text)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
}

// TestPassivePortRange checks that PASV and EPSV answer within a configured range.
func TestPassivePortRange(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := testConfig(t)
	cfg.PassivePortMin, cfg.PassivePortMax = port, port
	ts := startFTP(t, cfg)
	c := ts.login(t, "alice", "wonderland")
	msg := expect(t, c, 229, "EPSV")
	if !strings.Contains(msg, "|||"+itoa(port)+"|") {
		t.Errorf("EPSV reply %q does not name port %d", msg, port)
	}
	expect(t, c, 226, "ABOR") // frees the port: the library opens a new listener before closing the old
	msg = expect(t, c, 227, "PASV")
	if !strings.Contains(msg, ","+itoa(port>>8)+","+itoa(port&255)+")") {
		t.Errorf("PASV reply %q does not name port %d", msg, port)
	}
}

// itoa formats an int.
func itoa(n int) string { return strconv.Itoa(n) }
