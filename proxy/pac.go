package proxy

import (
	"cmp"
	"net/http"
	"strconv"
	"strings"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// pacPath is where the proxy serves its proxy auto-config file.
const pacPath = "/proxy.pac"

// servePAC answers /proxy.pac: a FindProxyForURL that sends browsers to this proxy (the
// configured address, or the one the PAC file was fetched from), direct for the configured
// patterns.
func (srv *Server) servePAC(s *slot) {
	r := s.request()
	pc := s.lv.cfg.PAC // the request's configuration (reloadable)
	proxy, https := pc.Proxy, pc.HTTPSProxy
	if proxy == "" {
		proxy = r.Host
		if r.URL.Host != "" {
			proxy = r.URL.Host
		}
		if s.c.tls { // fetched from a TLS listener: name it as the HTTPS proxy it is
			proxy, https = "", cmp.Or(https, proxy)
		}
	}
	script := pacScript(pacTarget{https: https, plain: proxy}, pc.Direct, pc.FallbackDirect)
	head := wire.StatusLine(http.StatusOK) + "Content-Type: application/x-ns-proxy-autoconfig\r\nCache-Control: max-age=300\r\nContent-Length: " +
		strconv.Itoa(len(script)) + "\r\n"
	_ = s.WriteStored([]byte(head), nil, []byte(script))
}

// pacTarget is the proxies a PAC file names, in order: an HTTPS proxy (a TLS listener) and a
// plain one; either may be empty.
type pacTarget struct{ https, plain string }

// String renders the PAC result: "HTTPS host:port; PROXY host:port".
func (t pacTarget) String() string {
	var parts []string
	if t.https != "" {
		parts = append(parts, "HTTPS "+t.https)
	}
	if t.plain != "" {
		parts = append(parts, "PROXY "+t.plain)
	}
	return strings.Join(parts, "; ")
}

// pacScript renders the PAC file.
func pacScript(proxy pacTarget, direct []string, fallback bool) string {
	var b strings.Builder
	b.WriteString("// Proxy auto-config served by Outpost.\nfunction FindProxyForURL(url, host) {\n")
	for _, d := range direct {
		d = strings.ToLower(strings.TrimSpace(d))
		if strings.HasPrefix(d, ".") {
			b.WriteString("  if (host == " + strconv.Quote(d[1:]) + " || dnsDomainIs(host, " + strconv.Quote(d) + ")) return \"DIRECT\";\n")
		} else {
			b.WriteString("  if (shExpMatch(host, " + strconv.Quote(d) + ")) return \"DIRECT\";\n")
		}
	}
	target := proxy.String()
	if fallback {
		target += "; DIRECT"
	}
	b.WriteString("  return " + strconv.Quote(target) + ";\n}\n")
	return b.String()
}
