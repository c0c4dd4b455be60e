package bench

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
)

// This file is the client side of TLS for the load generator and the scorecard: how the
// server's certificate is trusted (--insecure, --cacert), which key exchanges are offered,
// and a connection wrapper that counts the bytes read off the wire.

// TLSOptions say how a bench client speaks TLS.
type TLSOptions struct {
	// Insecure skips the verification of the server's certificate (self-signed test servers).
	Insecure bool
	// CACert is a PEM file of the CA certificates to trust instead of the system's.
	CACert string
	// Curves are the key exchanges offered, by name (x25519, p256, p384, x25519mlkem768);
	// empty: Go's default. Comparing servers, offer only what both implement (x25519), so
	// each does the same work per handshake.
	Curves []string
	// TLS13 refuses anything older than TLS 1.3.
	TLS13 bool
}

// curveIDs are the names --curves accepts.
var curveIDs = map[string]tls.CurveID{
	"x25519": tls.X25519, "p256": tls.CurveP256, "p384": tls.CurveP384, "p521": tls.CurveP521,
	"x25519mlkem768": tls.X25519MLKEM768,
}

// Validate checks the options; errors are *UsageError naming the flag.
func (o *TLSOptions) Validate() error {
	for _, c := range o.Curves {
		if _, ok := curveIDs[strings.ToLower(c)]; !ok {
			return usagef("--curves: unknown key exchange %q (want x25519, p256, p384, p521 or x25519mlkem768)", c)
		}
	}
	if o.CACert != "" && o.Insecure {
		return usagef("--cacert and --insecure exclude each other")
	}
	if o.CACert != "" {
		if _, err := o.rootCAs(); err != nil {
			return &UsageError{Err: err}
		}
	}
	return nil
}

// rootCAs reads CACert into a pool (nil without one: the system's roots).
func (o *TLSOptions) rootCAs() (*x509.CertPool, error) {
	if o.CACert == "" {
		return nil, nil
	}
	b, err := os.ReadFile(o.CACert)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", o.CACert)
	}
	return pool, nil
}

// config returns the client configuration for a server named host (a name or an IP address,
// without port), offering the ALPN protocols given. Without a session cache, every new
// connection makes a full handshake: the load generator never resumes a session.
func (o *TLSOptions) config(host string, alpn ...string) (*tls.Config, error) {
	roots, err := o.rootCAs()
	if err != nil {
		return nil, err
	}
	c := &tls.Config{ServerName: host, RootCAs: roots, InsecureSkipVerify: o.Insecure, NextProtos: alpn,
		MinVersion: tls.VersionTLS12}
	if o.TLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	for _, name := range o.Curves {
		c.CurvePreferences = append(c.CurvePreferences, curveIDs[strings.ToLower(name)])
	}
	return c, nil
}

// hostName is the host part of host:port, for SNI and certificate checks.
func hostName(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// countingConn counts the bytes read from a connection (the wire bytes, TLS records
// included).
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// tlsVersionName names a negotiated TLS version.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS 1.3"
	case tls.VersionTLS12:
		return "TLS 1.2"
	}
	return fmt.Sprintf("TLS %#04x", v)
}
