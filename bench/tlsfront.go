package bench

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// tlsFront makes a plain HTTP origin a TLS + HTTP/2 one for the scorecard's multiplexed
// strategy: it terminates TLS (1.2 and 1.3, ALPN h2 and http/1.1) with a throwaway
// certificate and passes every request to the origin over loopback HTTP/1.1 keep-alive
// connections. It sits on the origin's side of the delay line, so the emulated link's round
// trips are the client's to the TLS server, as they would be to a real one.
type tlsFront struct {
	ln    net.Listener
	srv   *http.Server
	roots *x509.CertPool // trusts the front's certificate
	done  chan struct{}
}

// newTLSFront starts a front for the origin at base URL origin on 127.0.0.1:0.
func newTLSFront(origin string) (*tlsFront, error) {
	u, err := url.Parse(origin)
	if err != nil {
		return nil, fmt.Errorf("tls front: origin %q: %w", origin, err)
	}
	certs, err := newTestCerts()
	if err != nil {
		return nil, fmt.Errorf("tls front: %w", err)
	}
	pair, err := certs.keyPair()
	if err != nil {
		return nil, fmt.Errorf("tls front: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certs.caPEM)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true, IdleConnTimeout: time.Minute}
	rp.ErrorLog = log.New(io.Discard, "", 0)
	srv := &http.Server{
		Handler:           rp,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tls front: %w", err)
	}
	f := &tlsFront{ln: ln, srv: srv, roots: roots, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("bench: tls front: %v", err)
		}
	}()
	return f, nil
}

// Addr is the front's host:port.
func (f *tlsFront) Addr() string { return f.ln.Addr().String() }

// Close stops the front and its connections.
func (f *tlsFront) Close() error {
	err := f.srv.Close()
	<-f.done
	return err
}
