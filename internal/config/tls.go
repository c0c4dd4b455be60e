package config

import (
	"fmt"
	"strings"
	"time"
)

// ProxyTLSConfig is [proxy.tls]: the proxy's TLS listeners (HTTPS reverse proxy and HTTPS
// forward proxy), TLS 1.2 and 1.3 only, ALPN h2 and http/1.1.
type ProxyTLSConfig struct {
	// Listen holds the TLS listen addresses (empty: no TLS listener).
	Listen []string `mapstructure:"listen"`
	// Certificates are the certificate/key pairs, chosen by the client's SNI; the first is the
	// default (clients without SNI, names no certificate covers).
	Certificates []ProxyTLSCertificate `mapstructure:"certificates"`
	// Demo makes, on first start, a demo CA and a certificate for *.cdn.test, localhost and
	// 127.0.0.1 in <data_dir>/tls/ (reused afterwards), used when Certificates is empty.
	Demo bool `mapstructure:"demo"`
	// HandshakeTimeout bounds the TLS handshake of a new client connection.
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"`
}

// ProxyTLSCertificate is one [[proxy.tls.certificates]] entry: PEM files, the certificate
// chain (leaf first) and its private key.
type ProxyTLSCertificate struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// ProxyHTTP2Config is [proxy.http2]: HTTP/2 on the TLS listeners (ALPN h2) and its limits.
type ProxyHTTP2Config struct {
	// Enabled offers h2 in ALPN; off, TLS clients speak HTTP/1.1.
	Enabled bool `mapstructure:"enabled"`
	// MaxConcurrentStreams caps the streams a client may have open at once
	// (SETTINGS_MAX_CONCURRENT_STREAMS).
	MaxConcurrentStreams int `mapstructure:"max_concurrent_streams"`
	// MaxHeaderListSize caps a request's header list, HPACK-decoded, across HEADERS and
	// CONTINUATION frames (SETTINGS_MAX_HEADER_LIST_SIZE); beyond it the connection ends.
	MaxHeaderListSize ByteSize `mapstructure:"max_header_list_size"`
	// StreamWindow is the flow-control window of one stream: request body bytes a client may
	// send ahead of the proxy reading them.
	StreamWindow ByteSize `mapstructure:"stream_window"`
	// ConnectionWindow is the flow-control window of a whole connection.
	ConnectionWindow ByteSize `mapstructure:"connection_window"`
	// MaxReadFrameSize is the largest frame the proxy accepts (SETTINGS_MAX_FRAME_SIZE).
	MaxReadFrameSize ByteSize `mapstructure:"max_read_frame_size"`
	// H2C serves HTTP/2 with prior knowledge (RFC 9113 §3.3) on the plain listeners too: a
	// connection that opens with the client preface is HTTP/2, routed as reverse requests.
	H2C bool `mapstructure:"h2c"`
}

func defaultProxyTLS() ProxyTLSConfig {
	return ProxyTLSConfig{HandshakeTimeout: 10 * time.Second}
}

func defaultProxyHTTP2() ProxyHTTP2Config {
	return ProxyHTTP2Config{Enabled: true, MaxConcurrentStreams: 128, MaxHeaderListSize: 64 << 10,
		StreamWindow: 1 << 20, ConnectionWindow: 4 << 20, MaxReadFrameSize: 16 << 10}
}

// validate checks [proxy.tls]. Whether the files exist and hold a key pair is checked when the
// proxy loads them (proxy.New), with the same key names.
func (c *ProxyTLSConfig) validate() error {
	for i, a := range c.Listen {
		if err := CheckHostPort(fmt.Sprintf("proxy.tls.listen[%d]", i), a); err != nil {
			return err
		}
	}
	for i, cert := range c.Certificates {
		key := fmt.Sprintf("proxy.tls.certificates[%d]", i)
		if strings.TrimSpace(cert.CertFile) == "" {
			return errorf(key+".cert_file", "must name a PEM certificate file")
		}
		if strings.TrimSpace(cert.KeyFile) == "" {
			return errorf(key+".key_file", "must name a PEM private key file")
		}
	}
	if len(c.Listen) > 0 && len(c.Certificates) == 0 && !c.Demo {
		return errorf("proxy.tls.certificates", "a TLS listener needs at least one certificate (or proxy.tls.demo = true)")
	}
	return CheckPositive("proxy.tls.handshake_timeout", c.HandshakeTimeout)
}

// validate checks [proxy.http2].
func (c *ProxyHTTP2Config) validate() error {
	if c.MaxConcurrentStreams < 1 || c.MaxConcurrentStreams > 10000 {
		return errorf("proxy.http2.max_concurrent_streams", "must be between 1 and 10000, got %d", c.MaxConcurrentStreams)
	}
	if c.MaxHeaderListSize < 1024 || c.MaxHeaderListSize > 16<<20 {
		return errorf("proxy.http2.max_header_list_size", "must be between 1KiB and 16MiB, got %v", c.MaxHeaderListSize)
	}
	// RFC 9113 §6.9.2: a window above 2^31-1 is a flow-control error; below 64KiB slows bodies.
	for key, w := range map[string]ByteSize{"proxy.http2.stream_window": c.StreamWindow, "proxy.http2.connection_window": c.ConnectionWindow} {
		if w < 64<<10 || w > 1<<31-1 {
			return errorf(key, "must be between 64KiB and 2GiB-1, got %v", w)
		}
	}
	// RFC 9113 §6.5.2: SETTINGS_MAX_FRAME_SIZE is between 2^14 and 2^24-1.
	if c.MaxReadFrameSize < 16<<10 || c.MaxReadFrameSize > 1<<24-1 {
		return errorf("proxy.http2.max_read_frame_size", "must be between 16KiB and 16MiB-1, got %v", c.MaxReadFrameSize)
	}
	return nil
}
