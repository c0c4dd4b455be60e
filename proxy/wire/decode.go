package wire

import (
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
)

// commonKeys interns the canonical names of common fields, so decoding them allocates nothing.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
		"Accept-Ranges", "Age", "Authorization", "Cache-Control", "Cdn-Cache-Control", "Connection",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Range", "Content-Type",
		"Cookie", "Date", "Etag", "Expect", "Expires", "Forwarded", "Host", "If-Match",
		"If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive",
		"Last-Modified", "Location", "Max-Forwards", "Origin", "Pragma", "Proxy-Authenticate",
		"Proxy-Authorization", "Proxy-Connection", "Range", "Referer", "Server", "Set-Cookie",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "Vary", "Via",
		"Warning", "Www-Authenticate", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		m[k] = k
	}
	return m
}()

// canonicalKey returns the canonical form of a field name, interned for common fields.
func canonicalKey(name []byte) string {
	if k, ok := commonKeys[string(name)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// Header decodes the fields into an http.Header with canonical names: one string holds every
// value, and common names are interned. Fields named in skip (canonical) are left out.
func (h *Head) Header(skip ...string) http.Header {
	if len(h.fields) == 0 {
		return http.Header{}
	}
	base := h.fields[0].name.off // one string for the field lines, not the start line
	all := string(h.buf[base:h.fields[len(h.fields)-1].value.end])
	hdr := make(http.Header, len(h.fields))
	values := make([]string, len(h.fields))
	for i, f := range h.fields {
		key := canonicalKey(h.bytes(f.name))
		if slices.Contains(skip, key) {
			continue
		}
		values[i] = all[f.value.off-base : f.value.end-base]
		if prior, ok := hdr[key]; ok {
			hdr[key] = append(prior, values[i])
		} else {
			hdr[key] = values[i : i+1 : i+1]
		}
	}
	return hdr
}

// methods interns the common methods.
var methods = map[string]string{"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT",
	"DELETE": "DELETE", "OPTIONS": "OPTIONS", "TRACE": "TRACE", "CONNECT": "CONNECT", "PATCH": "PATCH"}

// MethodString returns the method as a string, without allocating for the common ones.
func (r *RequestHead) MethodString() string {
	if m, ok := methods[string(r.Method())]; ok {
		return m
	}
	return string(r.Method())
}

// NewRequest decodes the head into an *http.Request the way http.ReadRequest would (URL,
// Host taken from an absolute target or the Host field and removed from Header, Close,
// Pragma: no-cache implying Cache-Control: no-cache), without a body (the caller frames it)
// and without Transfer-Encoding in Header. Its context is the background one.
func (r *RequestHead) NewRequest() (*http.Request, error) {
	req := &http.Request{Method: r.MethodString(), RequestURI: string(r.Target()),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody}
	if r.Proto10 {
		req.Proto, req.ProtoMinor = "HTTP/1.0", 0
	}
	raw := req.RequestURI
	authority := req.Method == "CONNECT" && raw[0] != '/'
	if authority {
		raw = "http://" + raw
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return nil, bad("malformed request target: %v", err)
	}
	if authority {
		u.Scheme = ""
	}
	req.URL = u
	req.Header = r.Header("Host", "Transfer-Encoding")
	req.Host = u.Host
	if req.Host == "" {
		req.Host = string(r.Host())
	}
	if _, ok := req.Header["Cache-Control"]; !ok && r.HasToken("Pragma", "no-cache") {
		req.Header["Cache-Control"] = []string{"no-cache"}
	}
	req.Close = r.closes()
	return req, nil
}

// closes reports whether the client asked to close after this request (RFC 9112 §9.3).
func (r *RequestHead) closes() bool {
	if r.Proto10 {
		return !r.HasToken("Connection", "keep-alive")
	}
	return r.HasToken("Connection", "close")
}
