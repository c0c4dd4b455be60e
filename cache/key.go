package cache

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// fields is read access to a request's header fields by canonical name (Request has it): nil
// when absent.
type fields interface {
	Values(name string) []string
}

// Field names the cache reads or writes, in canonical form so map lookups need no conversion.
const (
	hdrAge               = "Age"
	hdrCacheControl      = "Cache-Control"
	hdrCacheStatus       = "Cache-Status"
	hdrCDNCacheControl   = "Cdn-Cache-Control"
	hdrOutpostCC         = "Outpost-Cache-Control"
	hdrConnection        = "Connection"
	hdrContentLength     = "Content-Length"
	hdrContentLocation   = "Content-Location"
	hdrContentRange      = "Content-Range"
	hdrContentType       = "Content-Type"
	hdrDate              = "Date"
	hdrETag              = "Etag"
	hdrExpires           = "Expires"
	hdrIfMatch           = "If-Match"
	hdrIfModifiedSince   = "If-Modified-Since"
	hdrIfNoneMatch       = "If-None-Match"
	hdrIfRange           = "If-Range"
	hdrIfUnmodifiedSince = "If-Unmodified-Since"
	hdrLastModified      = "Last-Modified"
	hdrLocation          = "Location"
	hdrPragma            = "Pragma"
	hdrRange             = "Range"
	hdrSetCookie         = "Set-Cookie"
	hdrVary              = "Vary"
	hdrAuthorization     = "Authorization"
)

// targetedFields are the targeted cache-control fields Outpost obeys, highest precedence first
// (RFC 9213 §2.2).
var targetedFields = []string{hdrOutpostCC, hdrCDNCacheControl}

// keyBuf is a pooled buffer for building keys and per-request fields without allocating.
type keyBuf struct{ b []byte }

var keyBufs = sync.Pool{New: func() any { return &keyBuf{b: make([]byte, 0, 256)} }}

// getBuf takes a buffer from the pool.
func getBuf() *keyBuf { return keyBufs.Get().(*keyBuf) }

// putBuf returns a buffer to the pool unless it grew too large to keep.
func putBuf(k *keyBuf) {
	if cap(k.b) <= 64<<10 {
		k.b = k.b[:0]
		keyBufs.Put(k)
	}
}

// AppendTargetURL appends the target URI of a request for u in absolute form, as the cache's
// Request.AppendURL gives it: scheme://host path?query, with the request's Host when u has no
// host and "http" when it has no scheme; the path escaped, userinfo and fragment left out.
func AppendTargetURL(b []byte, u *url.URL, host string) []byte {
	scheme := u.Scheme
	if scheme == "" {
		scheme = "http"
	}
	b = append(b, scheme...)
	b = append(b, "://"...)
	if u.Host != "" {
		host = u.Host
	}
	b = append(b, host...)
	b = append(b, u.EscapedPath()...)
	if u.RawQuery != "" || u.ForceQuery {
		b = append(b, '?')
		b = append(b, u.RawQuery...)
	}
	return b
}

// appendKey appends the primary cache key of a request for u (RFC 9111 §4: the target URI);
// see normalizeKey.
func appendKey(b []byte, u *url.URL, host string) []byte {
	start := len(b)
	return normalizeKey(AppendTargetURL(b, u, host), start)
}

// normalizeKey turns the absolute URL in b[start:] into the primary cache key in place:
// scheme://host[:port]path[?query], scheme and host lowercased, an empty or default port
// dropped, an empty path written as "/". GET and HEAD share it. It does not allocate when b
// has room for one more byte.
func normalizeKey(b []byte, start int) []byte {
	colon := bytes.IndexByte(b[start:], ':')
	if colon < 0 || !bytes.HasPrefix(b[start+colon:], []byte("://")) {
		return b
	}
	sep := start + colon
	lowerInPlace(b[start:sep])
	hostStart := sep + 3
	hostEnd := hostStart
	for hostEnd < len(b) && b[hostEnd] != '/' && b[hostEnd] != '?' {
		hostEnd++
	}
	lowerInPlace(b[hostStart:hostEnd])
	host, scheme := b[hostStart:hostEnd], b[start:sep]
	cut := 0
	switch {
	case bytes.HasSuffix(host, []byte(":")):
		cut = 1
	case string(scheme) == "http" && bytes.HasSuffix(host, []byte(":80")):
		cut = 3
	case string(scheme) == "https" && bytes.HasSuffix(host, []byte(":443")):
		cut = 4
	}
	if cut > 0 {
		copy(b[hostEnd-cut:], b[hostEnd:])
		b = b[:len(b)-cut]
		hostEnd -= cut
	}
	if hostEnd == len(b) || b[hostEnd] != '/' {
		b = append(b, 0)
		copy(b[hostEnd+1:], b[hostEnd:])
		b[hostEnd] = '/'
	}
	return b
}

// lowerInPlace lowercases ASCII letters in b.
func lowerInPlace(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// itemKey is the memory and disk key of one stored response: the primary key's hash for a
// response without Vary, a hash of both keys otherwise.
func itemKey(primary uint64, key, secondary string) uint64 {
	if secondary == "" {
		return primary
	}
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(key)
	_, _ = d.WriteString("\x00")
	_, _ = d.WriteString(secondary)
	return d.Sum64()
}

// varyNames returns the canonical, sorted, de-duplicated field names a response's Vary lists.
func varyNames(h http.Header) []string {
	var names []string
	for _, line := range h[hdrVary] {
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f != "" {
				names = append(names, http.CanonicalHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// varyStar reports Vary: * (RFC 9111 §4.1: never matches).
func varyStar(h http.Header) bool {
	for _, n := range varyNames(h) {
		if n == "*" {
			return true
		}
	}
	return false
}

// secondaryKey renders the request's values of the Vary'd fields (RFC 9111 §4.1), normalised:
// lines combined, whitespace around commas removed, and for some fields their own semantics
// (normalizeVaryValue). An absent field differs from an empty one.
func secondaryKey(names []string, req fields) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(64)
	for _, n := range names {
		b.WriteString(n)
		vals := req.Values(n)
		if vals == nil {
			b.WriteString("\x01\x00")
			continue
		}
		b.WriteByte(':')
		start := b.Len()
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(',')
			}
			for j := 0; ; j++ {
				part, rest, more := strings.Cut(v, ",")
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strings.TrimSpace(part))
				if !more {
					break
				}
				v = rest
			}
		}
		if normalizedVary[n] { // the field's own semantics (varynorm.go)
			combined := b.String()[start:]
			norm := normalizeVaryValue(n, combined)
			s := b.String()[:start] + norm
			b.Reset()
			b.WriteString(s)
		}
		b.WriteByte(0)
	}
	return b.String()
}
