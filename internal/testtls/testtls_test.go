package testtls

import (
	"crypto/x509"
	"testing"
)

// TestServerConfigCertificate: the certificate is self-signed, currently valid and names both
// 127.0.0.1 and outpost.test.
func TestServerConfigCertificate(t *testing.T) {
	cfg := ServerConfig(t)
	if len(cfg.Certificates) != 1 {
		t.Fatalf("got %d certificates, want 1", len(cfg.Certificates))
	}
	cert, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	for _, name := range []string{"127.0.0.1", "outpost.test"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
}
