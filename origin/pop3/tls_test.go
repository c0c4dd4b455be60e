package pop3

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/testtls"
)

// TestSTLS: without TLS, USER is refused and not advertised; after STLS it works.
func TestSTLS(t *testing.T) {
	s, _ := testServerWith(t, func(o *Options) { o.TLS, o.AllowInsecureAuth = testtls.ServerConfig(t), false }, msg1)
	cl := dial(t, s.Addr())
	if !strings.HasPrefix(cl.cmd("CAPA"), "+OK") {
		t.Fatal("CAPA failed")
	}
	caps := strings.Join(cl.multi(), " ")
	if !strings.Contains(caps, "STLS") || strings.Contains(caps, "USER") {
		t.Fatalf("CAPA before TLS = %q", caps)
	}
	if got := cl.cmd("USER alice"); !strings.HasPrefix(got, "-ERR [AUTH]") {
		t.Fatalf("USER before STLS = %q", got)
	}
	if got := cl.cmd("STLS"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("STLS = %q", got)
	}
	tc := tls.Client(cl.c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl.c, cl.br = tc, bufio.NewReader(tc)
	cl.login()
	if got := cl.cmd("STAT"); !strings.HasPrefix(got, "+OK 1 ") {
		t.Fatalf("STAT over TLS = %q", got)
	}
}
