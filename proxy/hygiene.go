package proxy

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// Header hygiene, RFC 9110 §7.6: hop-by-hop fields and those named in Connection stay on their
// hop; Via records every proxy and lets us detect loops; Max-Forwards counts down for OPTIONS
// and TRACE; X-Forwarded-For / Forwarded tell the origin who asked.

// viaLoop reports whether a Via field already lists our pseudonym as a received-by entry: the
// request went round and came back.
func viaLoop(values []string, pseudonym string) bool {
	for _, v := range values {
		for len(v) > 0 {
			var entry string
			entry, v, _ = strings.Cut(v, ",")
			fields := strings.Fields(entry)
			if len(fields) >= 2 {
				by, _, _ := strings.Cut(fields[1], ":")
				if strings.EqualFold(by, pseudonym) {
					return true
				}
			}
		}
	}
	return false
}

// maxForwards returns the Max-Forwards value (-1 when absent or invalid).
func maxForwards(h http.Header) int {
	v := h["Max-Forwards"]
	if len(v) != 1 {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(v[0]))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// forwarding is what this hop adds to an upstream request (RFC 9110 §7.6): Via with the
// client's protocol version, Max-Forwards decremented (OPTIONS, TRACE), X-Forwarded-For and
// Forwarded as configured. Expect is dropped: the proxy answered it itself.
type forwarding struct {
	via10, via11   string // "1.0 <pseudonym>", "1.1 <pseudonym>"
	via2           string // "2 <pseudonym>" (HTTP/2 clients, RFC 9110 §7.6.3)
	xff, forwarded bool
}

// newForwarding builds the forwarding settings from configuration.
func newForwarding(cfg config.ProxyConfig) forwarding {
	return forwarding{via10: "1.0 " + cfg.ViaPseudonym, via11: "1.1 " + cfg.ViaPseudonym, via2: "2 " + cfg.ViaPseudonym,
		xff: cfg.XForwardedFor, forwarded: cfg.Forwarded}
}

// appendHeader appends r's end-to-end fields (hop-by-hop ones were stripped by policy; those an
// upgrade re-added stay) and this hop's forwarding fields. Host and the framing fields are the
// caller's.
func (f *forwarding) appendHeader(b []byte, r *http.Request) []byte {
	countdown := r.Method == http.MethodOptions || r.Method == http.MethodTrace
	for name, values := range r.Header {
		switch name {
		case "Host", "Content-Length", "Transfer-Encoding", "Expect", "Via", "X-Forwarded-For":
			continue
		case "Max-Forwards":
			if countdown {
				continue
			}
		case "User-Agent":
			if len(values) == 1 && values[0] == "" {
				continue
			}
		}
		for _, v := range values {
			b = wire.AppendField(b, name, v)
		}
	}
	return f.appendOwn(b, r, countdown)
}

// appendOwn appends Via, Max-Forwards, X-Forwarded-For and Forwarded.
func (f *forwarding) appendOwn(b []byte, r *http.Request, countdown bool) []byte {
	h := r.Header
	for _, v := range h["Via"] {
		b = wire.AppendField(b, "Via", v)
	}
	via := f.via11
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		via = f.via10
	case r.ProtoMajor == 2:
		via = f.via2
	}
	b = wire.AppendField(b, "Via", via)
	if countdown {
		if n := maxForwards(h); n > 0 {
			b = append(b, "Max-Forwards: "...)
			b = strconv.AppendInt(b, int64(n-1), 10)
			b = append(b, "\r\n"...)
		} else if v := h["Max-Forwards"]; len(v) > 0 {
			b = wire.AppendField(b, "Max-Forwards", v[0])
		}
	}
	if !f.xff && !f.forwarded {
		return b
	}
	ip := clientIP(r.RemoteAddr)
	if f.xff {
		b = append(b, "X-Forwarded-For: "...)
		for _, v := range h["X-Forwarded-For"] {
			b = append(b, wire.SanitizeValue(v)...)
			b = append(b, ", "...)
		}
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	if f.forwarded {
		b = wire.AppendField(b, "Forwarded", forwardedElement(ip, r.Host, r.TLS != nil))
	}
	return b
}

// clientIP returns the address of an "ip:port" (IPv4-mapped addresses unmapped), without
// allocating in the common case.
func clientIP(remote string) string {
	host := remote
	if i := strings.LastIndexByte(remote, ':'); i >= 0 {
		host = remote[:i]
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap().String()
		}
	}
	return host
}

// forwardedElement renders one RFC 7239 element; secure: the client came over TLS.
func forwardedElement(ip, host string, secure bool) string {
	forIP := ip
	if strings.Contains(ip, ":") {
		forIP = `"[` + ip + `]"`
	}
	proto := "http"
	if secure {
		proto = "https"
	}
	return "for=" + forIP + ";proto=" + proto + ";host=" + strconv.Quote(host)
}
