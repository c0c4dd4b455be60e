package cache

import (
	"strings"
	"testing"
)

// TestCodeString: every result code has its Squid name, distinct from the others, and an
// unknown value still prints.
func TestCodeString(t *testing.T) {
	seen := map[string]Code{}
	for c := CodeUnset; c <= CodeTunnel; c++ {
		name := c.String()
		if name == "" || strings.HasPrefix(name, "Code(") {
			t.Errorf("code %d has no name", c)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("codes %d and %d are both %q", other, c, name)
		}
		seen[name] = c
	}
	for _, tc := range []struct {
		code Code
		want string
	}{
		{CodeUnset, "-"}, {CodeNone, "NONE"}, {CodeMiss, "TCP_MISS"}, {CodeMemHit, "TCP_MEM_HIT"},
		{CodeClientRefreshMiss, "TCP_CLIENT_REFRESH_MISS"}, {CodeTunnel, "TCP_TUNNEL"}, {CodeTunnel + 1, "Code(14)"},
	} {
		if got := tc.code.String(); got != tc.want {
			t.Errorf("Code(%d).String() = %q, want %q", tc.code, got, tc.want)
		}
	}
}

// TestNormalizeKey: the primary key of absolute URLs as a Request's AppendURL gives them.
func TestNormalizeKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://Example.COM/a?b=C", "http://example.com/a?b=C"},
		{"HTTP://example.com:80/x", "http://example.com/x"},
		{"https://example.com:443/x", "https://example.com/x"},
		{"https://example.com:80/x", "https://example.com:80/x"},
		{"http://example.com:/x", "http://example.com/x"},
		{"http://example.com", "http://example.com/"},
		{"http://example.com?q", "http://example.com/?q"},
		{"http://example.com/?", "http://example.com/?"},
		{"http://[::1]:8080/p", "http://[::1]:8080/p"},
		{"ftp://Host/Path", "ftp://host/Path"},
	} {
		b := append([]byte("prefix "), tc.in...)
		if got := string(normalizeKey(b, len("prefix "))); got != "prefix "+tc.want {
			t.Errorf("normalizeKey(%q) = %q, want %q", tc.in, got, "prefix "+tc.want)
		}
	}
}
