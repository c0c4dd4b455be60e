package cache

import (
	"bytes"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unsafe"

	"github.com/outpost-proxy/outpost/internal/config"
)

// Cache-key rules per route ([proxy.routes.cache_key]). The primary key is the normalised
// target URL (normalizeKey); a route's rules then rewrite it:
//
//	lowercase_path   the path lowercased
//	ignore_query     query parameters whose name matches a glob left out
//	sort_query       the remaining parameters ordered by name, then value
//	include_headers  "\x00Name: value" appended per named request field present
//
// The URL part stays a URL (unsafe methods parse it back for §4.4 invalidation); the header
// part starts with a NUL, which no request target contains, so a purge of a URL removes every
// variant the included headers made (purgeKey). The proxy hands the rules with the request
// (KeyRuler, implemented by its slot); purges and /cache/explain without a request get them from
// the proxy's route table (SetKeyRules).

// KeyRules are one route's compiled cache-key rules. A nil *KeyRules leaves keys alone.
type KeyRules struct {
	ignore    []namePattern // ignore_query, compiled
	sortQuery bool
	headers   []string // canonical field names, in configuration order
	lowerPath bool
	cfg       config.CacheKeyConfig
}

// KeyRuler is implemented by a Request that carries its route's key rules (the proxy's slot).
// KeyRules returns nil when the route has none: the key is then the normalised URL and a
// memory hit stays allocation-free.
type KeyRuler interface {
	KeyRules() *KeyRules
}

// NewKeyRules compiles a route's [proxy.routes.cache_key]; nil when the rules are empty. key
// names the section in errors ("proxy.routes[0].cache_key"); internal/config has validated it.
func NewKeyRules(key string, c config.CacheKeyConfig) (*KeyRules, error) {
	if c.Empty() {
		return nil, nil
	}
	k := &KeyRules{sortQuery: c.SortQuery, lowerPath: c.LowercasePath, cfg: c}
	for i, p := range c.IgnoreQuery {
		if _, err := path.Match(p, ""); err != nil {
			return nil, config.Errorf(key+".ignore_query["+strconv.Itoa(i)+"]", "%q is not a glob pattern: %v", p, err)
		}
		k.ignore = append(k.ignore, compilePattern(p))
	}
	for _, h := range c.IncludeHeaders {
		k.headers = append(k.headers, http.CanonicalHeaderKey(h))
	}
	return k, nil
}

// Config returns the rules as configured (for /cache/explain).
func (k *KeyRules) Config() config.CacheKeyConfig {
	if k == nil {
		return config.CacheKeyConfig{}
	}
	return k.cfg
}

// SetKeyRules gives the cache the proxy's rules for a URL that arrives without a request (the
// admin's purge by URL, /cache/explain): the rules of the route the URL's host and path fall
// under, nil for none. Call it before serving.
func (c *Cache) SetKeyRules(f func(u *url.URL) *KeyRules) { c.keyRules = f }

// rulesOf returns the key rules a request carries (nil: none).
func rulesOf(r Request) *KeyRules {
	if kr, ok := r.(KeyRuler); ok {
		return kr.KeyRules()
	}
	return nil
}

// rulesForURL returns the rules of the route u falls under (nil: none).
func (c *Cache) rulesForURL(u *url.URL) *KeyRules {
	if c.keyRules == nil || u == nil {
		return nil
	}
	return c.keyRules(u)
}

// applyURL rewrites the normalised key in b (the whole of b) by the path and query rules.
func (k *KeyRules) applyURL(b []byte) []byte {
	if k == nil {
		return b
	}
	ps := pathStart(b)
	if ps < 0 {
		return b
	}
	qs := len(b)
	for i := ps; i < len(b); i++ {
		if b[i] == '?' {
			qs = i
			break
		}
	}
	if k.lowerPath {
		lowerInPlace(b[ps:qs])
	}
	if qs == len(b) || (len(k.ignore) == 0 && !k.sortQuery) {
		return b
	}
	return k.rewriteQuery(b, qs)
}

// ApplyURL rewrites the absolute URL in b (the whole of b: scheme://host/path?query, as the
// cache keys it) by the path and query rules, in place where it can; a nil k returns b. The
// proxy's parent tier hashes the result, so that requests one key serves go to one parent.
func (k *KeyRules) ApplyURL(b []byte) []byte { return k.applyURL(b) }

// pathStart is the index of the path in a normalised key (after scheme://host), -1 if none.
func pathStart(b []byte) int {
	i := bytes.Index(b, []byte("://"))
	if i < 0 {
		return -1
	}
	j := bytes.IndexByte(b[i+3:], '/')
	if j < 0 {
		return -1
	}
	return i + 3 + j
}

// param is one query parameter's bytes in a key: [off, end), its name ending at eq.
type param struct{ off, eq, end int }

// rewriteQuery drops the ignored parameters and empty ones, sorts the rest if asked, and writes
// the query back in place after b[qs] ('?'); the '?' goes when nothing is left. It does not
// allocate for up to 32 parameters when b has room for the query once more.
func (k *KeyRules) rewriteQuery(b []byte, qs int) []byte {
	var arr [32]param
	ps := arr[:0]
	for off := qs + 1; off <= len(b); {
		end := off
		for end < len(b) && b[end] != '&' {
			end++
		}
		if end > off {
			eq := off
			for eq < end && b[eq] != '=' {
				eq++
			}
			if !k.ignored(b[off:eq]) {
				ps = append(ps, param{off, eq, end})
			}
		}
		off = end + 1
	}
	if k.sortQuery {
		for i := 1; i < len(ps); i++ { // insertion sort: queries are short, and stable
			for j := i; j > 0 && paramLess(b, ps[j], ps[j-1]); j-- {
				ps[j], ps[j-1] = ps[j-1], ps[j]
			}
		}
	}
	n := len(b)
	for i, p := range ps {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, b[p.off:p.end]...)
	}
	if len(ps) == 0 {
		return b[:qs] // nothing left: the '?' goes too
	}
	m := copy(b[qs+1:], b[n:])
	return b[:qs+1+m]
}

// ignored reports a parameter name that matches an ignore_query pattern.
func (k *KeyRules) ignored(name []byte) bool {
	s := unsafe.String(unsafe.SliceData(name), len(name)) // not kept
	for _, p := range k.ignore {
		if p.match(s) {
			return true
		}
	}
	return false
}

// namePattern is an ignore_query glob: a literal and a "prefix*" are compared directly,
// anything else goes through path.Match.
type namePattern struct {
	glob   string
	lit    string // the literal or the prefix
	prefix bool
	plain  bool // lit (and prefix) say it all
}

// compilePattern sorts a valid glob into the three kinds.
func compilePattern(p string) namePattern {
	body, star := strings.CutSuffix(p, "*")
	if !strings.ContainsAny(body, `*?[\`) {
		return namePattern{glob: p, lit: body, prefix: star, plain: true}
	}
	return namePattern{glob: p}
}

// match reports whether the parameter name matches.
func (p namePattern) match(name string) bool {
	switch {
	case p.plain && p.prefix:
		return strings.HasPrefix(name, p.lit)
	case p.plain:
		return name == p.lit
	}
	ok, _ := path.Match(p.glob, name)
	return ok
}

// paramLess orders parameters by name, then by value.
func paramLess(b []byte, x, y param) bool {
	if c := bytes.Compare(b[x.off:x.eq], b[y.off:y.eq]); c != 0 {
		return c < 0
	}
	return bytes.Compare(b[x.eq:x.end], b[y.eq:y.end]) < 0
}

// keyHeaderSep starts each included header in a key.
const keyHeaderSep = "\x00"

// appendHeaders appends the include_headers part of the key for request fields r.
func (k *KeyRules) appendHeaders(b []byte, r fields) []byte {
	if k == nil {
		return b
	}
	for _, n := range k.headers {
		vals := r.Values(n)
		if vals == nil {
			continue
		}
		b = append(b, keyHeaderSep...)
		b = append(b, n...)
		b = append(b, ": "...)
		for i, v := range vals {
			if i > 0 {
				b = append(b, ',')
			}
			for j, part := range strings.Split(v, ",") {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, strings.TrimSpace(part)...)
			}
		}
	}
	return b
}

// apply applies every rule to the normalised key in b (the whole of b) for request r.
func (k *KeyRules) apply(b []byte, r fields) []byte {
	if k == nil {
		return b
	}
	return k.appendHeaders(k.applyURL(b), r)
}

// urlKey returns u's primary key under rules k without the header part (purge, invalidation).
func (k *KeyRules) urlKey(u *url.URL) string { return string(k.applyURL(appendKey(nil, u, ""))) }

// purgeKey removes every stored response whose primary key is key or key with an
// include_headers part; with prefix, every one whose key starts with key. It returns how many
// it removed.
func (s *store) purgeKey(key string, prefix bool) int {
	n := s.purge(key, prefix)
	if !prefix {
		n += s.purge(key+keyHeaderSep, true)
	}
	return n
}

// displayKey renders a key for people: the header parts' NULs as spaces, other bytes outside
// printable ASCII, '"' and '\' percent-encoded, so it fits a Cache-Status sf-string.
func displayKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == 0:
			b.WriteByte(' ')
		case c < 0x20 || c > 0x7e || c == '"' || c == '\\':
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(strconv.FormatInt(int64(c)>>4, 16)))
			b.WriteString(strings.ToUpper(strconv.FormatInt(int64(c)&15, 16)))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// withKey adds the key to a Cache-Status parameter list when cache.debug_key is on.
func (c *Cache) withKey(cs, key string) string {
	if !c.cfg.DebugKey || key == "" {
		return cs
	}
	return cs + `; key="` + displayKey(key) + `"`
}

// purgeKeyOf is the key a purge by URL (or by prefix) removes under rules kr: raw, when set,
// is the PURGE request's target as sent, else u's. A prefix gets only lowercase_path (query
// rules make no sense on a prefix).
func purgeKeyOf(kr *KeyRules, u *url.URL, raw []byte, prefix bool) string {
	b := raw
	if b == nil {
		b = AppendTargetURL(nil, u, "")
	}
	b = normalizeKey(b, 0)
	if !prefix {
		return string(kr.applyURL(b))
	}
	if kr != nil && kr.lowerPath {
		if ps := pathStart(b); ps >= 0 {
			lowerInPlace(b[ps:])
		}
	}
	return string(b)
}
