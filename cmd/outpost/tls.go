package main

import (
	"crypto/tls"

	"github.com/outpost-proxy/outpost/internal/admin"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy"
)

// tlsConfigOf returns the TLS configuration of a built proxy component (nil without
// certificates), which the admin listener shares with [admin] tls = true.
func tlsConfigOf(c component.Component) *tls.Config {
	if ca, ok := c.(closeAfter); ok {
		c = ca.Component
	}
	if p, ok := c.(*proxy.Server); ok {
		return p.TLSConfig()
	}
	return nil
}

// adminTLS makes the admin listener serve TLS with the proxy's certificates when [admin] tls is
// set; the proxy must run in this process with certificates.
func adminTLS(cfg *config.Config, adm *admin.Server, proxyTLS *tls.Config) error {
	if !cfg.Admin.TLS {
		return nil
	}
	if proxyTLS == nil {
		return config.Errorf("admin.tls", "needs the proxy's certificates ([proxy.tls]) and the proxy running in this process")
	}
	adm.UseTLS(proxyTLS)
	return nil
}
