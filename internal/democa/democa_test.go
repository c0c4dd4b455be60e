package democa

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

// TestEnsure makes the demo files once, reuses them, and re-issues the certificate (keeping the
// CA) when its key is lost, and everything when the CA is unreadable.
func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	d, err := Ensure(dir)
	if err != nil || !d.Created {
		t.Fatalf("first Ensure: %+v %v", d, err)
	}
	pair, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(d.CAFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, name := range []string{"www.cdn.test", "cdn.test", "localhost", "127.0.0.1", "::1"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, caKey)); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v", st.Mode().Perm())
	}
	certPEM, _ := os.ReadFile(d.CertFile)
	if d, err = Ensure(dir); err != nil || d.Created {
		t.Fatalf("second Ensure: %+v %v", d, err)
	}
	if again, _ := os.ReadFile(d.CertFile); !bytes.Equal(again, certPEM) {
		t.Error("the certificate was re-issued although it was usable")
	}
	_ = os.Remove(d.KeyFile)
	if d, err = Ensure(dir); err != nil || !d.Created {
		t.Fatalf("Ensure without the key: %+v %v", d, err)
	}
	if ca, _ := os.ReadFile(d.CAFile); !bytes.Equal(ca, caPEM) {
		t.Error("the CA changed although it was readable")
	}
	_ = os.WriteFile(filepath.Join(dir, caKey), []byte("garbage"), 0o600)
	_ = os.Remove(d.KeyFile)
	if d, err = Ensure(dir); err != nil || !d.Created {
		t.Fatalf("Ensure with a broken CA: %+v %v", d, err)
	}
	if ca, _ := os.ReadFile(d.CAFile); bytes.Equal(ca, caPEM) {
		t.Error("a broken CA was kept")
	}
}

// TestSPKIHash is the base64 SHA-256 of the public key: 44 characters.
func TestSPKIHash(t *testing.T) {
	ca, err := New("x")
	if err != nil {
		t.Fatal(err)
	}
	if h := SPKIHash(ca.Cert); len(h) != 44 {
		t.Errorf("SPKIHash %q", h)
	}
}
