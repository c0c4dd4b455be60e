package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/internal/democa"
)

// expiredPair writes a self-signed certificate that expired yesterday, and its key.
func expiredPair(t *testing.T, dir string) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "old.test"}, DNSNames: []string{"old.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, k := filepath.Join(dir, "old.pem"), filepath.Join(dir, "old-key.pem")
	if err := democa.WritePair(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, c, k); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// TestTLSCertificateErrors: a missing, unreadable, mismatched or expired certificate is a
// configuration error naming the key (New fails; `outpost` exits 2).
func TestTLSCertificateErrors(t *testing.T) {
	dir := t.TempDir()
	ca, _ := democa.New("CA")
	a, _ := ca.Issue("a.test")
	b, _ := ca.Issue("b.test")
	ac, ak := filepath.Join(dir, "a.pem"), filepath.Join(dir, "a-key.pem")
	bc, bk := filepath.Join(dir, "b.pem"), filepath.Join(dir, "b-key.pem")
	if err := democa.WritePair(a, ac, ak); err != nil {
		t.Fatal(err)
	}
	if err := democa.WritePair(b, bc, bk); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, "not a certificate\n")
	oc, ok := expiredPair(t, dir)
	tests := []struct {
		name       string
		cert, key  string
		wantKey    string
		wantReason string
	}{
		{"missing cert file", filepath.Join(dir, "none.pem"), ak, "proxy.tls.certificates[1].cert_file", "no such file"},
		{"missing key file", ac, filepath.Join(dir, "none.pem"), "proxy.tls.certificates[1].key_file", "no such file"},
		{"not PEM", garbage, ak, "proxy.tls.certificates[1].cert_file", "certificate"},
		{"key of another certificate", ac, bk, "proxy.tls.certificates[1].key_file", "does not match"},
		{"expired", oc, ok, "proxy.tls.certificates[1].cert_file", "not now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadProxyConfig(t, fmt.Sprintf("[proxy.tls]\nlisten = [\"127.0.0.1:0\"]\n"+
				"[[proxy.tls.certificates]]\ncert_file = %q\nkey_file = %q\n[[proxy.tls.certificates]]\ncert_file = %q\nkey_file = %q\n",
				bc, bk, tt.cert, tt.key))
			_, err := New(cfg, component.Test(t.TempDir()), Options{})
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Key != tt.wantKey || !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("New: %v; want a config error naming %s saying %q", err, tt.wantKey, tt.wantReason)
			}
		})
	}
}

// TestSetCertificates swaps the certificates of a running TLS listener: new handshakes get
// the new one, a failed swap keeps the old one serving.
func TestSetCertificates(t *testing.T) {
	o := cacheableOrigin(t)
	p := startTLSProxy(t, reverseRoute(o), "", Options{})
	leafCN := func() string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.tlsAddr, &tls.Config{InsecureSkipVerify: true, ServerName: "www.cdn.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := leafCN(); cn != "*.cdn.test" {
		t.Fatalf("before: %s", cn)
	}
	dir := t.TempDir()
	n, _ := p.ca.Issue("www.cdn.test")
	nc, nk := filepath.Join(dir, "n.pem"), filepath.Join(dir, "n-key.pem")
	if err := democa.WritePair(n, nc, nk); err != nil {
		t.Fatal(err)
	}
	if err := p.srv.SetCertificates(config.ProxyTLSConfig{Certificates: []config.ProxyTLSCertificate{{CertFile: nc, KeyFile: nk}}}); err != nil {
		t.Fatal(err)
	}
	if cn := leafCN(); cn != "www.cdn.test" {
		t.Errorf("after SetCertificates: %s", cn)
	}
	_ = os.Remove(nk)
	if err := p.srv.SetCertificates(config.ProxyTLSConfig{Certificates: []config.ProxyTLSCertificate{{CertFile: nc, KeyFile: nk}}}); err == nil {
		t.Error("SetCertificates with a missing key succeeded")
	}
	if cn := leafCN(); cn != "www.cdn.test" {
		t.Errorf("after a failed SetCertificates: %s", cn)
	}
}

// TestTLSPAC: the PAC file names the HTTPS proxy: pac.https_proxy first, and a PAC file fetched
// from the TLS listener names that listener as HTTPS.
func TestTLSPAC(t *testing.T) {
	p := startTLSProxy(t, "[proxy.pac]\nhttps_proxy = \"proxy.example:8443\"\n", "", Options{})
	c := dialRaw(t, p.addr)
	c.send("GET /proxy.pac HTTP/1.1\r\nHost: " + p.addr + "\r\n\r\n")
	_, body := c.response("GET")
	if want := `"HTTPS proxy.example:8443; PROXY ` + p.addr + `; DIRECT"`; !strings.Contains(body, want) {
		t.Errorf("plain listener's PAC lacks %s:\n%s", want, body)
	}
	q := startTLSProxy(t, "", "", Options{})
	_, body = fetchURL(t, q.h1Client(), "https://"+q.tlsAddr+"/proxy.pac")
	if want := `"HTTPS ` + q.tlsAddr + `; DIRECT"`; !strings.Contains(body, want) {
		t.Errorf("TLS listener's PAC lacks %s:\n%s", want, body)
	}
	_, body = fetchURL(t, q.h2Client(), "https://"+q.tlsAddr+"/proxy.pac")
	if want := `"HTTPS ` + q.tlsAddr + `; DIRECT"`; !strings.Contains(body, want) {
		t.Errorf("TLS listener's PAC over h2 lacks %s:\n%s", want, body)
	}
}
