package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/internal/democa"
)

// The TLS front end. A [proxy.tls] listener accepts TCP connections like the plain one and
// wraps each in a *tls.Conn before newConn: the connection loop, the pipeline and the slots
// (frontend.go, pipeline.go) read and write the tls.Conn exactly as they do a TCP socket.
// The handshake runs in the connection's goroutine (handshake, within
// proxy.tls.handshake_timeout); ALPN then decides the protocol: "h2" goes to the HTTP/2
// front end (h2.go), anything else (http/1.1, or no ALPN) to readLoop. TLS 1.2 and 1.3 only,
// AEAD suites with forward secrecy, session tickets for resumption (crypto/tls rotates their
// keys). Certificates are chosen by SNI from the store below, which SetCertificates swaps at
// run time.

// certStore holds the certificates the TLS listeners offer; a handshake reads the set in
// force when it starts, and SetCertificates replaces it atomically.
type certStore struct{ cur atomic.Pointer[certSet] }

// certSet is one loaded set of certificates, indexed by the names they cover.
type certSet struct {
	def   *tls.Certificate            // the first configured: no SNI, or no certificate for the name
	exact map[string]*tls.Certificate // lowercased DNS name or IP address → certificate
	wild  map[string]*tls.Certificate // "cdn.test" for a certificate of "*.cdn.test"
}

// get chooses the certificate for a handshake (tls.Config.GetCertificate): an exact name, then
// a wildcard for the name's parent, then the default.
func (st *certStore) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := st.cur.Load()
	if set == nil {
		return nil, errors.New("proxy: no TLS certificate loaded")
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return set.def, nil
	}
	if c := set.exact[name]; c != nil {
		return c, nil
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if c := set.wild[parent]; c != nil {
			return c, nil
		}
	}
	return set.def, nil
}

// add indexes a certificate under the names of its leaf; names taken by an earlier
// certificate stay with it.
func (set *certSet) add(c *tls.Certificate) {
	if set.def == nil {
		set.def = c
	}
	names := append([]string(nil), c.Leaf.DNSNames...)
	for _, ip := range c.Leaf.IPAddresses {
		names = append(names, ip.String())
	}
	for _, n := range names {
		n = strings.ToLower(n)
		m, key := set.exact, n
		if strings.HasPrefix(n, "*.") {
			m, key = set.wild, n[2:]
		}
		if _, taken := m[key]; !taken {
			m[key] = c
		}
	}
}

// tlsCiphers are the TLS 1.2 suites offered: ECDHE key exchange and AEAD ciphers only (TLS 1.3
// suites are not configurable and all are modern).
var tlsCiphers = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// newTLSConfig is the listeners' TLS configuration over the store: TLS 1.2 and 1.3, ALPN h2
// (when enabled) and http/1.1, session tickets on.
func newTLSConfig(st *certStore, h2 bool) *tls.Config {
	protos := []string{"http/1.1"}
	if h2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13, CipherSuites: tlsCiphers,
		NextProtos: protos, GetCertificate: st.get}
}

// loadCertificates loads the configured certificates, or the demo CA's certificate (made in
// <dataDir>/tls/ on first use) when none is configured and demo is on. Errors name the key.
func loadCertificates(cfg config.ProxyTLSConfig, dataDir string) (*certSet, *democa.Demo, error) {
	set := &certSet{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	entries := cfg.Certificates
	var demo *democa.Demo
	if len(entries) == 0 && cfg.Demo {
		d, err := democa.Ensure(filepath.Join(dataDir, "tls"))
		if err != nil {
			return nil, nil, config.Errorf("proxy.tls.demo", "making the demo CA in %s: %v", filepath.Join(dataDir, "tls"), err)
		}
		demo = &d
		entries = []config.ProxyTLSCertificate{{CertFile: d.CertFile, KeyFile: d.KeyFile}}
	}
	for i, e := range entries {
		c, err := loadPair(fmt.Sprintf("proxy.tls.certificates[%d]", i), e)
		if err != nil {
			return nil, nil, err
		}
		set.add(c)
	}
	if set.def == nil {
		return nil, nil, config.Errorf("proxy.tls.certificates", "no certificate configured")
	}
	return set, demo, nil
}

// loadPair reads one certificate and key, and refuses files that are missing, hold no PEM
// certificate or key, do not match, or a certificate that is not valid now.
func loadPair(key string, e config.ProxyTLSCertificate) (*tls.Certificate, error) {
	for _, kf := range [...][2]string{{key + ".cert_file", e.CertFile}, {key + ".key_file", e.KeyFile}} {
		k, f := kf[0], kf[1]
		if _, err := os.Stat(f); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, config.Errorf(k, "%s: no such file", f)
			}
			return nil, config.Errorf(k, "%v", err)
		}
	}
	c, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
	if err != nil {
		k := key + ".key_file"
		if strings.Contains(err.Error(), "certificate") && !strings.Contains(err.Error(), "private key does not match") {
			k = key + ".cert_file"
		}
		return nil, config.Errorf(k, "%s, %s: %v", e.CertFile, e.KeyFile, err)
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, config.Errorf(key+".cert_file", "%s: %v", e.CertFile, err)
		}
		c.Leaf = leaf
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, config.Errorf(key+".cert_file", "%s: the certificate is valid from %s to %s, not now",
			e.CertFile, leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	}
	return &c, nil
}

// SetCertificates loads the certificates of cfg (or the demo certificate) and makes them the
// ones new TLS handshakes get, on the proxy's listeners and the admin listener's (TLSConfig);
// connections already established keep theirs. On error nothing changes. Live reload calls
// it with the new [proxy.tls]; listen addresses need a restart.
func (s *Server) SetCertificates(cfg config.ProxyTLSConfig) error {
	set, demo, err := loadCertificates(cfg, s.env.DataDir)
	if err != nil {
		return err
	}
	s.certs.cur.Store(set)
	s.mu.Lock()
	s.demo = demo
	s.mu.Unlock()
	return nil
}

// logTLSListener says a TLS listener is up, and with the demo certificate where its CA is and
// how to use it.
func (s *Server) logTLSListener(addr string) {
	s.mu.Lock()
	d := s.demo
	s.mu.Unlock()
	if d == nil {
		s.log.Info("proxy: TLS listener", "addr", addr, "alpn", s.tlsConf.NextProtos)
		return
	}
	s.log.Info("proxy: TLS listener with the demo CA", "addr", addr, "alpn", s.tlsConf.NextProtos, "ca_file", d.CAFile,
		"created", d.Created, "try", "curl --cacert "+d.CAFile+" https://"+addr+"/ -H 'Host: www.cdn.test'")
}

// TLSConfig returns a TLS server configuration with the proxy's certificates (the same store,
// so SetCertificates applies to it too) for other listeners of the process: the admin
// listener with [admin] tls = true. Nil when the proxy has no certificates.
func (s *Server) TLSConfig() *tls.Config {
	if s.certs.cur.Load() == nil {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tlsCiphers, GetCertificate: s.certs.get}
}

// TLSAddrs lists the bound TLS listener addresses ("127.0.0.1:8443").
func (s *Server) TLSAddrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ln := range s.tlsLns {
		out = append(out, ln.Addr().String())
	}
	return out
}

// handshake completes the TLS handshake of a new client connection within
// proxy.tls.handshake_timeout and returns the protocol ALPN chose ("" when none).
func (c *conn) handshake(tc *tls.Conn) (string, error) {
	d := c.srv.cfg.TLS.HandshakeTimeout
	_ = tc.SetDeadline(time.Now().Add(d))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.srv.m.tlsHandshakeErrors.Inc()
		return "", err
	}
	_ = tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tlsState = &st
	return st.NegotiatedProtocol, nil
}

// readFirstTLS is readFirst for a TLS connection, whose records only crypto/tls can read: the
// connection's buffers go back to the pool, then the reader waits in a one-byte read of the
// tls.Conn (which keeps the rest of the record, and any records after it, in its own buffer);
// that byte goes to the read buffer, taken again, first. An idle TLS keep-alive connection then
// holds crypto/tls's state but none of the proxy's buffers. false when the read failed.
func (c *conn) readFirstTLS() bool {
	c.idleBuffers()
	n, err := c.nc.Read(c.src.tlsFirst[:])
	if n == 1 {
		c.src.pend = c.src.tlsFirst[:]
	}
	return err == nil || n == 1
}

// closeWrite ends the proxy's side of the connection after its last response: close_notify
// and a FIN for TLS, a FIN for TCP.
func closeWrite(nc net.Conn) {
	switch c := nc.(type) {
	case *net.TCPConn:
		_ = c.CloseWrite()
	case *tls.Conn:
		_ = c.SetWriteDeadline(time.Now().Add(lingerTime))
		_ = c.CloseWrite()
		if tc, ok := c.NetConn().(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
}
