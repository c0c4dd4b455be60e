package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// This file makes the throwaway certificates bench's TLS servers use: a CA and a server
// certificate signed by it (ECDSA P-256, the key every TLS peer of the comparison is given),
// made at run time and never stored beyond the run.

// testCerts are a CA and a server certificate it signed, PEM-encoded.
type testCerts struct {
	caPEM, certPEM, keyPEM []byte
}

// certNames are the names the server certificate is valid for.
var certNames = []string{"localhost", "*.cdn.test"}

// newTestCerts makes a CA and a server certificate for localhost, *.cdn.test, 127.0.0.1 and
// ::1, valid from an hour ago for a day.
func newTestCerts() (*testCerts, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "outpost bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("make the CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: certNames, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("make the server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &testCerts{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// keyPair is the server certificate for a Go TLS server.
func (c *testCerts) keyPair() (tls.Certificate, error) {
	return tls.X509KeyPair(c.certPEM, c.keyPEM)
}

// certFiles are where a run wrote its certificates.
type certFiles struct {
	ca, cert, key string
}

// write stores the certificates in dir as ca.pem, cert.pem and key.pem (the key readable by
// its owner only).
func (c *testCerts) write(dir string) (certFiles, error) {
	f := certFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	for file, b := range map[string][]byte{f.ca: c.caPEM, f.cert: c.certPEM} {
		if err := os.WriteFile(file, b, 0o644); err != nil {
			return f, err
		}
	}
	return f, os.WriteFile(f.key, c.keyPEM, 0o600)
}
