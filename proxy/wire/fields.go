package wire

import (
	"net/http"
	"strings"
)

// hopByHop are the fields RFC 9110 §7.6.1 keeps on one hop (canonical form): a proxy never
// forwards, stores or serves them. With the fields Connection names, they are what StripHopByHop
// removes.
var hopByHop = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authentication-Info", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding",
	"Upgrade",
}

// HopByHop returns the hop-by-hop field names in canonical form (a fresh slice).
func HopByHop() []string { return append([]string(nil), hopByHop[:]...) }

// IsHopByHop reports whether the canonical field name is hop-by-hop.
func IsHopByHop(name string) bool {
	for _, h := range hopByHop {
		if h == name {
			return true
		}
	}
	return false
}

// StripHopByHop removes the hop-by-hop fields and the fields Connection names from h, in place.
// It does not allocate when Connection is absent.
func StripHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	if len(h) == 0 {
		return
	}
	for _, name := range hopByHop {
		if _, ok := h[name]; ok {
			delete(h, name)
		}
	}
}

// ConnectionTokens returns the canonical names listed in Connection (nil when absent).
func ConnectionTokens(h http.Header) map[string]bool {
	var m map[string]bool
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				if m == nil {
					m = map[string]bool{}
				}
				m[http.CanonicalHeaderKey(tok)] = true
			}
		}
	}
	return m
}

// tokenChars marks the tchar bytes of RFC 9110 §5.6.2.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// IsToken reports whether b is a non-empty token (a method or a field name).
func IsToken(b []byte) bool {
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return len(b) > 0
}

// invalidByte returns the index of the first byte not allowed in a head line (a control
// character other than HTAB, or DEL), -1 when there is none.
func invalidByte(b []byte) int {
	for i, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return i
		}
	}
	return -1
}

// ValidFieldValue reports whether v may be sent as a field value: no CR, LF, NUL or other
// control character but HTAB.
func ValidFieldValue(v string) bool {
	for i := range len(v) {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// SanitizeValue returns v with CR, LF and NUL replaced by spaces, so a value from elsewhere
// (an origin, a stored entry) can never split a head. It returns v itself when it is clean.
func SanitizeValue(v string) string {
	if !strings.ContainsAny(v, "\r\n\x00") {
		return v
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, v)
}
