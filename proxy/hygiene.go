package proxy

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Header hygiene, RFC 9110 §7.6: hop-by-hop fields and those named in Connection stay on their
// hop; Via records every proxy and lets us detect loops; Max-Forwards counts down for OPTIONS
// and TRACE; X-Forwarded-For / Forwarded tell the origin who asked.

// hasToken reports whether a comma-separated field contains token (case-insensitive).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for len(v) > 0 {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

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

// addForwarding adds the fields an upstream request carries from this hop (taken from r, the
// client's request or a clone of it): Via with the client's protocol version, Max-Forwards
// decremented (OPTIONS, TRACE), X-Forwarded-For and Forwarded as configured. Expect is dropped:
// the proxy answered it itself.
func (srv *Server) addForwarding(r, out *http.Request) {
	h := out.Header
	via := srv.viaValue
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		via = "1.0 " + srv.cfg.ViaPseudonym
	}
	clientIP := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		clientIP = ap.Addr().Unmap().String()
	}
	h["Via"] = append(h["Via"], via)
	if out.Method == http.MethodOptions || out.Method == http.MethodTrace {
		if n := maxForwards(h); n > 0 {
			h.Set("Max-Forwards", strconv.Itoa(n-1))
		}
	}
	if srv.cfg.XForwardedFor {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+clientIP)
		} else {
			h.Set("X-Forwarded-For", clientIP)
		}
	}
	if srv.cfg.Forwarded {
		h.Add("Forwarded", forwardedElement(clientIP, r.Host))
	}
	h.Del("Expect")
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // keep net/http from adding its own
	}
}

// forwardedElement renders one RFC 7239 element.
func forwardedElement(ip, host string) string {
	forIP := ip
	if strings.Contains(ip, ":") {
		forIP = `"[` + ip + `]"`
	}
	return "for=" + forIP + ";proto=http;host=" + strconv.Quote(host)
}
