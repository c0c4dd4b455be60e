package bench

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpost-proxy/outpost/internal/democa"
)

// This file gives bench's TLS servers their throwaway certificates: a CA and a server
// certificate signed by it (ECDSA P-256, the key every TLS peer of the comparison is given),
// made at run time by internal/democa and never stored beyond the run.

// testCerts are a CA and a server certificate it signed.
type testCerts struct {
	caPEM []byte
	pair  tls.Certificate
}

// newTestCerts makes a CA and a server certificate for localhost, *.cdn.test, 127.0.0.1 and
// ::1.
func newTestCerts() (*testCerts, error) {
	ca, err := democa.New("outpost bench CA")
	if err != nil {
		return nil, err
	}
	pair, err := ca.Issue("localhost", "*.cdn.test", "127.0.0.1", "::1")
	if err != nil {
		return nil, fmt.Errorf("make the server certificate: %w", err)
	}
	return &testCerts{caPEM: ca.CertPEM(), pair: pair}, nil
}

// keyPair is the server certificate for a Go TLS server.
func (c *testCerts) keyPair() (tls.Certificate, error) { return c.pair, nil }

// certFiles are where a run wrote its certificates.
type certFiles struct {
	ca, cert, key string
}

// write stores the certificates in dir as ca.pem, cert.pem (the chain) and key.pem (readable
// by its owner only).
func (c *testCerts) write(dir string) (certFiles, error) {
	f := certFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(f.ca, c.caPEM, 0o644); err != nil {
		return f, err
	}
	return f, democa.WritePair(c.pair, f.cert, f.key)
}
