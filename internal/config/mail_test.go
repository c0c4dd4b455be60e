package config

import (
	"errors"
	"strings"
	"testing"
)

// TestMailRejects: each bad [mail] setting is an error naming its key.
func TestMailRejects(t *testing.T) {
	const hash = "$2a$10$xTcQmgLYpGFMc.hFToQ.dOQvU7oUHB2otdLnHcqa8BMMKpvhz/D1u"
	user := func(addr, h string) string {
		return "[[mail.users]]\naddress = \"" + addr + "\"\npassword_hash = \"" + h + "\"\n"
	}
	tests := []struct{ name, text, key, reason string }{
		{"user not an address", user("alice", hash), "mail.users[0].address", "not a plain mail address"},
		{"user domain not served", user("eve@elsewhere.test", hash), "mail.users[0].address", "not served"},
		{"user twice", user("alice@outpost.test", hash) + user("Alice@outpost.test", hash), "mail.users[1].address", "twice"},
		{"plaintext password", user("alice@outpost.test", "wonderland"), "mail.users[0].password_hash", "bcrypt"},
		{"no hosts", "[mail.smtp]\nhosts = []\n", "mail.smtp.hosts", "at least one"},
		{"domain on two hosts", "[[mail.smtp.hosts]]\nlisten = \"127.0.0.1:1\"\nhostname = \"a\"\ndomains = [\"x.test\"]\n[[mail.smtp.hosts]]\nlisten = \"127.0.0.1:2\"\nhostname = \"b\"\ndomains = [\"X.test\"]\n", "mail.smtp.hosts[1].domains", "already served"},
		{"host without port", "[[mail.smtp.hosts]]\nlisten = \"127.0.0.1\"\nhostname = \"a\"\n", "mail.smtp.hosts[0].listen", "host:port"},
		{"bad relay network", "[mail.smtp]\nrelay_networks = [\"10.0.0.0/99\"]\n", "mail.smtp.relay_networks[0]", "CIDR"},
		{"retry max below initial", "[mail.smtp]\nretry_initial = \"1h\"\nretry_max = \"1m\"\n", "mail.smtp.retry_max", "retry_initial"},
		{"negative queue min free", "[mail.smtp]\nqueue_min_free = -1\n", "mail.smtp.queue_min_free", "negative"},
		{"short line limit", "[mail.smtp]\nmax_line_length = 100\n", "mail.smtp.max_line_length", "512"},
		{"bad resolver", "[mail.smtp]\nresolver = \"dns.example\"\n", "mail.smtp.resolver", "host:port"},
		{"bad relay port", "[mail.smtp]\nrelay_port = 0\n", "mail.smtp.relay_port", "not a port"},
		{"cert without key", "[mail]\ntls_cert = \"a.pem\"\n", "mail.tls_cert", "together"},
		{"bad pop3 listen", "[mail.pop3]\nlisten = \"x\"\n", "mail.pop3.listen", "host:port"},
		{"unknown imap key", "[mail.imap]\nidle_timeout = \"1m\"\n", "mail.imap.idle_timeout", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.text)
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key || !strings.Contains(ce.Reason, tt.reason) {
				t.Fatalf("error %v, want key %q with %q", err, tt.key, tt.reason)
			}
		})
	}
}

// TestMailDisabledSkipsValidation: a disabled mail section is not checked.
func TestMailDisabledSkipsValidation(t *testing.T) {
	if _, err := load(t, "[mail]\nenabled = false\n[mail.smtp]\nhosts = []\n"); err != nil {
		t.Fatal(err)
	}
}
