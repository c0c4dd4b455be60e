package imap

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

// TestStartTLS: LOGIN is disabled until STARTTLS; afterwards it works.
func TestStartTLS(t *testing.T) {
	s, _, _ := testServerWith(t, func(o *Options) { o.TLS, o.AllowInsecureAuth = testTLS(t), false }, plain)
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
