package cache

import (
	"net/http"
	"strings"
)

// maxDelta is the largest delta-seconds value kept: RFC 9111 §1.2.2 says to treat larger values
// as 2147483648 (2^31).
const maxDelta = 1 << 31

// respDirectives are the Cache-Control response directives a shared cache acts on
// (RFC 9111 §5.2.2, RFC 5861). Durations are seconds; -1 means absent.
type respDirectives struct {
	noStore, noCache, private, public     bool
	mustRevalidate, proxyRevalidate       bool
	immutable, mustUnderstand             bool
	noCacheFields, privateFields          []string // qualified no-cache / private (field names)
	maxAge, sMaxAge, staleWhileRevalidate int64
	staleIfError                          int64
}

// reqDirectives are the Cache-Control request directives (RFC 9111 §5.2.1, RFC 5861).
// Durations are seconds; -1 means absent. maxStale is maxDelta for a bare max-stale.
type reqDirectives struct {
	noCache, noStore, onlyIfCached bool
	maxAge, maxStale, minFresh     int64
	staleIfError                   int64
	pragmaNoCache                  bool
}

// forEachDirective calls fn for every directive in the comma-separated field lines, with the
// name (as written) and the argument (unquoted; empty when there is none). It stops early when
// fn returns false. It does not allocate unless an argument uses quoted-pair escapes.
func forEachDirective(lines []string, fn func(name, arg string) bool) {
	for _, line := range lines {
		for line != "" {
			var item string
			item, line = nextItem(line)
			name, arg, hasArg := strings.Cut(item, "=")
			if hasArg && (endsWithSpace(name) || startsWithSpace(arg)) {
				continue // "max-age =60" is not a directive (RFC 9111 §5.2: no whitespace around "=")
			}
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !fn(name, unquote(strings.TrimSpace(arg))) {
				return
			}
		}
	}
}

// nextItem splits off the first comma-separated item, honouring quoted strings.
func nextItem(s string) (item, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// unquote removes the quotes of a quoted-string (RFC 9110 §5.6.4).
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseDelta parses delta-seconds (RFC 9111 §1.2.2). ok is false for anything that is not a
// non-negative decimal integer; values beyond 2^31 are clamped.
func parseDelta(s string) (n int64, ok bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta), true
}

// deltaArg sets *dst from a directive argument unless already set (RFC 9111 §4.2.1: use the
// first occurrence). An invalid argument counts as 0, so the response is treated as stale.
func deltaArg(dst *int64, arg string) {
	if *dst >= 0 {
		return
	}
	n, ok := parseDelta(arg)
	if !ok {
		n = 0
	}
	*dst = n
}

// fieldNames splits a qualified directive's argument into canonical field names.
func fieldNames(arg string) []string {
	var out []string
	for _, f := range strings.Split(arg, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, http.CanonicalHeaderKey(f))
		}
	}
	return out
}

// parseResponseDirectives reads the response's caching policy. A targeted field
// (Outpost-Cache-Control, then CDN-Cache-Control, RFC 9213 §2.2) replaces Cache-Control
// entirely when present and non-empty.
func parseResponseDirectives(h http.Header) respDirectives {
	for _, name := range targetedFields {
		if v := h[name]; len(v) > 0 && validTargeted(v) {
			return parseTargeted(v)
		}
	}
	return parseRespLines(h[hdrCacheControl])
}

// validTargeted checks a targeted field against the Structured Fields Dictionary syntax
// (RFC 9213 §2.1, RFC 8941 §3.2): lowercase keys, bare items, parameters. An invalid field is
// ignored as a whole; an empty one too.
func validTargeted(lines []string) bool {
	n := 0
	ok := true
	forEachDirective(lines, func(name, _ string) bool {
		n++
		ok = sfKey(name)
		return ok
	})
	if !ok || n == 0 {
		return false
	}
	for _, line := range lines {
		for line != "" {
			var item string
			item, line = nextItem(line)
			item = strings.TrimSpace(item)
			if item == "" || strings.Contains(item, " =") || strings.Contains(item, "= ") {
				return false // empty member, or whitespace around "="
			}
			_, value, hasValue := strings.Cut(item, "=")
			value, _, _ = strings.Cut(value, ";")
			if hasValue && !sfBareItem(strings.TrimSpace(value)) {
				return false
			}
		}
	}
	return true
}

// sfKey reports a Structured Fields key: lcalpha or "*", then lcalpha, digits, "_-.*".
func sfKey(k string) bool {
	k, _, _ = strings.Cut(k, ";")
	if k == "" || !(k[0] == '*' || 'a' <= k[0] && k[0] <= 'z') {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("_-.*", c) >= 0) {
			return false
		}
	}
	return true
}

// sfBareItem loosely checks a Structured Fields bare item: integer or decimal, string, token,
// byte sequence or boolean.
func sfBareItem(v string) bool {
	switch {
	case v == "":
		return false
	case v == "?0" || v == "?1":
		return true
	case v[0] == '"':
		return len(v) >= 2 && v[len(v)-1] == '"'
	case v[0] == ':':
		return len(v) >= 2 && v[len(v)-1] == ':'
	case v[0] == '-' || '0' <= v[0] && v[0] <= '9':
		return strings.Trim(v[1:], "0123456789.") == ""
	}
	return sfKey(strings.ToLower(v[:1])) && !strings.ContainsAny(v, " ,;=\\\"")
}

// parseTargeted reads a valid targeted field: only integer values count for the duration
// directives, "?0" switches a boolean directive off, and other value types are ignored
// (RFC 9213 §2.1).
func parseTargeted(lines []string) respDirectives {
	var kept []string
	seen := map[string]int{} // a repeated key's last value wins (RFC 8941 §4.2.2)
	keep := func(name, d string) {
		if i, ok := seen[name]; ok {
			kept[i] = d
			return
		}
		seen[name] = len(kept)
		kept = append(kept, d)
	}
	for _, line := range lines {
		for line != "" {
			var item string
			item, line = nextItem(line)
			item, _, _ = strings.Cut(strings.TrimSpace(item), ";")
			name, arg, _ := strings.Cut(item, "=")
			name, arg = strings.TrimSpace(name), strings.TrimSpace(arg)
			switch {
			case arg == "" || arg == "?1":
				keep(name, name)
			case arg == "?0":
				keep(name, "")
			default:
				if _, ok := parseDelta(arg); ok {
					keep(name, name+"="+arg)
				} else {
					keep(name, "")
				}
			}
		}
	}
	return parseRespLines([]string{strings.Join(kept, ", ")})
}

// parseRespLines parses Cache-Control response directive lines.
func parseRespLines(lines []string) respDirectives {
	d := respDirectives{maxAge: -1, sMaxAge: -1, staleWhileRevalidate: -1, staleIfError: -1}
	forEachDirective(lines, func(name, arg string) bool {
		switch strings.ToLower(name) {
		case "no-store":
			d.noStore = true
		case "no-cache":
			if arg == "" {
				d.noCache = true
			} else {
				d.noCacheFields = append(d.noCacheFields, fieldNames(arg)...)
			}
		case "private":
			if arg == "" {
				d.private = true
			} else {
				d.privateFields = append(d.privateFields, fieldNames(arg)...)
			}
		case "public":
			d.public = true
		case "must-revalidate":
			d.mustRevalidate = true
		case "proxy-revalidate":
			d.proxyRevalidate = true
		case "immutable":
			d.immutable = true
		case "must-understand":
			d.mustUnderstand = true
		case "max-age":
			deltaArg(&d.maxAge, arg)
		case "s-maxage":
			deltaArg(&d.sMaxAge, arg)
		case "stale-while-revalidate":
			deltaArg(&d.staleWhileRevalidate, arg)
		case "stale-if-error":
			deltaArg(&d.staleIfError, arg)
		}
		return true
	})
	return d
}

// parseRequestDirectives reads the request's Cache-Control, and Pragma: no-cache when the
// request has no Cache-Control (RFC 9111 §5.4). It does not allocate.
func parseRequestDirectives(h fields) reqDirectives {
	d := reqDirectives{maxAge: -1, maxStale: -1, minFresh: -1, staleIfError: -1}
	cc := h.Values(hdrCacheControl)
	if len(cc) == 0 {
		forEachDirective(h.Values(hdrPragma), func(name, _ string) bool {
			if strings.EqualFold(name, "no-cache") {
				d.pragmaNoCache = true
			}
			return true
		})
		return d
	}
	forEachDirective(cc, func(name, arg string) bool {
		d.apply(name, arg)
		return true
	})
	return d
}

// apply records one request directive.
func (d *reqDirectives) apply(name, arg string) {
	switch {
	case strings.EqualFold(name, "no-cache"):
		d.noCache = true
	case strings.EqualFold(name, "no-store"):
		d.noStore = true
	case strings.EqualFold(name, "only-if-cached"):
		d.onlyIfCached = true
	case strings.EqualFold(name, "max-age"):
		deltaArg(&d.maxAge, arg)
	case strings.EqualFold(name, "min-fresh"):
		deltaArg(&d.minFresh, arg)
	case strings.EqualFold(name, "stale-if-error"):
		deltaArg(&d.staleIfError, arg)
	case strings.EqualFold(name, "max-stale"):
		if d.maxStale >= 0 {
			return
		}
		if arg == "" {
			d.maxStale = maxDelta
			return
		}
		if n, ok := parseDelta(arg); ok {
			d.maxStale = n
		}
	}
}

// startsWithSpace reports a leading space or tab.
func startsWithSpace(s string) bool { return s != "" && (s[0] == ' ' || s[0] == '\t') }

// endsWithSpace reports a trailing space or tab.
func endsWithSpace(s string) bool { return s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') }
