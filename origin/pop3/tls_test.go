package pop3

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSTLS: without TLS, USER is refused and not advertised; after STLS it works.
func TestSTLS(t *testing.T) {
	s, _ := testServerWith(t, func(o *Options) { o.TLS, o.AllowInsecureAuth = testTLS(t), false }, msg1)
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

// testTLS returns a server TLS config with a fresh self-signed certificate for 127.0.0.1.
func testTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "outpost.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"outpost.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}
