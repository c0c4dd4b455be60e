package imap

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/testtls"
)

// TestStartTLS: LOGIN is disabled until STARTTLS; afterwards it works.
func TestStartTLS(t *testing.T) {
	s, _, _ := testServerWith(t, func(o *Options) { o.TLS, o.AllowInsecureAuth = testtls.ServerConfig(t), false }, plain)
	cl := dial(t, s.Addr())
	if caps := cl.ok("CAPABILITY"); !strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, "LOGINDISABLED") {
		t.Fatalf("CAPABILITY before TLS = %q", caps)
	}
	if _, st := cl.do("LOGIN alice wonderland"); !strings.HasPrefix(st, "NO") {
		t.Fatalf("LOGIN before TLS = %q", st)
	}
	cl.ok("STARTTLS")
	tc := tls.Client(cl.c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl.c, cl.br = tc, bufio.NewReader(tc)
	cl.ok("LOGIN alice wonderland")
	if got := cl.ok("SELECT INBOX"); !strings.Contains(got, "* 1 EXISTS") {
		t.Fatalf("SELECT over TLS = %q", got)
	}
}
