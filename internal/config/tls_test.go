package config

import (
	"errors"
	"strings"
	"testing"
)

// TestTLSKeysRejected: bad [proxy.tls], [proxy.http2] and [admin] tls values name their key.
func TestTLSKeysRejected(t *testing.T) {
	tests := []struct{ name, text, key, reason string }{
		{"tls listen without port", "[proxy.tls]\nlisten = [\"127.0.0.1\"]\ndemo = true\n", "proxy.tls.listen[0]", "host:port"},
		{"tls listener without certificates", "[proxy.tls]\nlisten = [\"127.0.0.1:8443\"]\n", "proxy.tls.certificates", "at least one certificate"},
		{"certificate without cert_file", "[proxy.tls]\nlisten = [\"127.0.0.1:8443\"]\n[[proxy.tls.certificates]]\nkey_file = \"k.pem\"\n", "proxy.tls.certificates[0].cert_file", "PEM certificate"},
		{"certificate without key_file", "[proxy.tls]\nlisten = [\"127.0.0.1:8443\"]\n[[proxy.tls.certificates]]\ncert_file = \"c.pem\"\n", "proxy.tls.certificates[0].key_file", "private key"},
		{"certificate with unknown key", "[[proxy.tls.certificates]]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nchain = \"x\"\n", "proxy.tls.certificates[0].chain", "unknown key"},
		{"zero handshake timeout", "[proxy.tls]\nhandshake_timeout = \"0s\"\n", "proxy.tls.handshake_timeout", "greater than zero"},
		{"no streams", "[proxy.http2]\nmax_concurrent_streams = 0\n", "proxy.http2.max_concurrent_streams", "between 1 and 10000"},
		{"tiny header list", "[proxy.http2]\nmax_header_list_size = 100\n", "proxy.http2.max_header_list_size", "between 1KiB"},
		{"window above 2^31-1", "[proxy.http2]\nstream_window = \"4GiB\"\n", "proxy.http2.stream_window", "2GiB-1"},
		{"small connection window", "[proxy.http2]\nconnection_window = \"1KiB\"\n", "proxy.http2.connection_window", "64KiB"},
		{"frame size below 16KiB", "[proxy.http2]\nmax_read_frame_size = 1000\n", "proxy.http2.max_read_frame_size", "16KiB"},
		{"pac https_proxy without port", "[proxy.pac]\nhttps_proxy = \"proxy.example\"\n", "proxy.pac.https_proxy", "host:port"},
		{"admin tls without certificates", "[admin]\ntls = true\n", "admin.tls", "certificates"},
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

// TestTLSDefaults: no TLS listener by default; HTTP/2 on with its limits; the demo accepted.
func TestTLSDefaults(t *testing.T) {
	c, err := load(t, "[proxy.tls]\nlisten = [\"127.0.0.1:8443\"]\ndemo = true\n[admin]\ntls = true\n")
	if err != nil {
		t.Fatal(err)
	}
	h := c.Proxy.HTTP2
	if !h.Enabled || h.MaxConcurrentStreams != 128 || h.MaxHeaderListSize != 64<<10 || h.StreamWindow != 1<<20 || !c.Admin.TLS {
		t.Errorf("defaults: %+v", h)
	}
	c, err = load(t, "")
	if err != nil || len(c.Proxy.TLS.Listen) != 0 || c.Proxy.TLS.Demo {
		t.Errorf("built-in defaults must have no TLS listener: %+v %v", c.Proxy.TLS, err)
	}
}
