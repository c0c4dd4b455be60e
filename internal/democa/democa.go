// Package democa makes a small certificate authority and the certificates it signs: the demo
// CA that `outpost up` creates in <data_dir>/tls/ for its TLS listener, and fresh CAs for tests
// that need a client to verify a server (curl --cacert, Python's ssl, Chromium by SPKI hash).
// Keys are ECDSA P-256. Nothing here is meant for production certificates.
package democa

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-proxy/outpost/internal/atomicfile"
)

// DemoNames are the names the demo certificate covers: the demo CDN's sites, the proxy host
// itself by name and by loopback address.
var DemoNames = []string{"*.cdn.test", "cdn.test", "localhost", "127.0.0.1", "::1"}

// File names inside the demo directory.
const (
	CAFile   = "demo-ca.pem"     // the CA certificate clients trust (curl --cacert)
	caKey    = "demo-ca-key.pem" // the CA's key, kept so the leaf can be re-issued
	CertFile = "demo-cert.pem"   // the server certificate, then the CA certificate
	KeyFile  = "demo-key.pem"    // the server certificate's key
)

// CA is a certificate authority: its certificate and key.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New makes a CA named name, valid from an hour ago for ten years.
func New(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("democa: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name, Organization: []string{"Outpost demo"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("democa: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("democa: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// serial returns a random 128-bit serial number.
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n
}

// Issue signs a server certificate for names (DNS names, wildcards, IP addresses), valid from
// an hour ago for 397 days (what browsers accept). Its chain carries the CA certificate.
func (ca *CA) Issue(names ...string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("democa: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(0, 0, 397),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("democa: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("democa: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// SPKIHash is the base64 SHA-256 of a certificate's public key, as Chromium's
// --ignore-certificate-errors-spki-list takes it.
func SPKIHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// WritePair writes a certificate's chain and its key as PEM files (the key 0600).
func WritePair(cert tls.Certificate, certFile, keyFile string) error {
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("democa: %w", err)
	}
	if err := atomicfile.WriteBytes(certFile, 0o644, chain); err != nil {
		return err
	}
	return atomicfile.WriteBytes(keyFile, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// Demo is the demo CA's files in a directory.
type Demo struct {
	Dir                       string
	CAFile, CertFile, KeyFile string // paths
	Created                   bool   // made on this call (else reused)
}

// Ensure returns the demo CA and certificate in dir, making them on first use: a CA and a
// certificate for DemoNames signed by it. Files already there are reused while the certificate
// still verifies against the CA, covers every demo name and is valid for another day;
// otherwise the certificate (and, if unreadable, the CA) is made anew.
func Ensure(dir string) (Demo, error) {
	d := Demo{Dir: dir, CAFile: filepath.Join(dir, CAFile), CertFile: filepath.Join(dir, CertFile), KeyFile: filepath.Join(dir, KeyFile)}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return d, fmt.Errorf("democa: %w", err)
	}
	if usable(d) == nil {
		return d, nil
	}
	ca, err := loadCA(d.CAFile, filepath.Join(dir, caKey))
	if err != nil {
		if ca, err = New("Outpost demo CA"); err != nil {
			return d, err
		}
		if err := writeCA(ca, d.CAFile, filepath.Join(dir, caKey)); err != nil {
			return d, err
		}
	}
	leaf, err := ca.Issue(DemoNames...)
	if err != nil {
		return d, err
	}
	d.Created = true
	return d, WritePair(leaf, d.CertFile, d.KeyFile)
}

// usable checks the demo files in place: a key pair, verified by the CA file, for every demo
// name, valid for at least another day.
func usable(d Demo) error {
	pair, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(d.CAFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return errors.New("democa: no CA certificate")
	}
	leaf := pair.Leaf
	for _, n := range DemoNames {
		if n[0] == '*' {
			n = "www" + n[1:]
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, CurrentTime: time.Now().Add(24 * time.Hour)}); err != nil {
			return err
		}
	}
	return nil
}

// loadCA reads the CA's certificate and key.
func loadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !pair.Leaf.IsCA {
		return nil, errors.New("democa: not a CA")
	}
	return &CA{Cert: pair.Leaf, key: key}, nil
}

// writeCA writes the CA's certificate and key.
func writeCA(ca *CA, certFile, keyFile string) error {
	return WritePair(tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}, PrivateKey: ca.key}, certFile, keyFile)
}
