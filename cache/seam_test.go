package cache

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestCodeString: every result code has its Squid name, distinct from the others, and an
// unknown value still prints.
func TestCodeString(t *testing.T) {
	seen := map[string]Code{}
	for c := CodeUnset; c <= CodeTunnel; c++ {
		name := c.String()
		if name == "" || strings.HasPrefix(name, "Code(") {
			t.Errorf("code %d has no name", c)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("codes %d and %d are both %q", other, c, name)
		}
		seen[name] = c
	}
	for _, tc := range []struct {
		code Code
		want string
	}{
		{CodeUnset, "-"}, {CodeNone, "NONE"}, {CodeMiss, "TCP_MISS"}, {CodeMemHit, "TCP_MEM_HIT"},
		{CodeClientRefreshMiss, "TCP_CLIENT_REFRESH_MISS"}, {CodeTunnel, "TCP_TUNNEL"}, {CodeTunnel + 1, "Code(14)"},
	} {
		if got := tc.code.String(); got != tc.want {
			t.Errorf("Code(%d).String() = %q, want %q", tc.code, got, tc.want)
		}
	}
}

// TestNormalizeKey: the primary key of absolute URLs as a Request's AppendURL gives them.
func TestNormalizeKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://Example.COM/a?b=C", "http://example.com/a?b=C"},
		{"HTTP://example.com:80/x", "http://example.com/x"},
		{"https://example.com:443/x", "https://example.com/x"},
		{"https://example.com:80/x", "https://example.com:80/x"},
		{"http://example.com:/x", "http://example.com/x"},
		{"http://example.com", "http://example.com/"},
		{"http://example.com?q", "http://example.com/?q"},
		{"http://example.com/?", "http://example.com/?"},
		{"http://[::1]:8080/p", "http://[::1]:8080/p"},
		{"ftp://Host/Path", "ftp://host/Path"},
	} {
		b := append([]byte("prefix "), tc.in...)
		if got := string(normalizeKey(b, len("prefix "))); got != "prefix "+tc.want {
			t.Errorf("normalizeKey(%q) = %q, want %q", tc.in, got, "prefix "+tc.want)
		}
	}
}

// TestUpstreamAdditions: how the request sent to the origin differs from the client's — a
// fetch for storage goes as a GET without the client's preconditions and Range, then takes
// the cache's validators or Range; no additions leave the request as it came.
func TestUpstreamAdditions(t *testing.T) {
	client := func() http.Header {
		return http.Header{"If-None-Match": {`"c"`}, "If-Modified-Since": {"x"}, "If-Match": {`"m"`},
			"If-Unmodified-Since": {"y"}, "Range": {"bytes=0-1"}, "If-Range": {`"r"`}, "Accept": {"*/*"}}
	}
	for _, tc := range []struct {
		name    string
		u       Upstream
		method  string
		want    http.Header
		changes bool
	}{
		{"as it came", Upstream{}, http.MethodHead, client(), false},
		{"for storage", Upstream{Store: true}, http.MethodGet, http.Header{"Accept": {"*/*"}}, true},
		{"revalidation", Upstream{Store: true, IfNoneMatch: `"s"`, IfModifiedSince: "z"}, http.MethodGet,
			http.Header{"Accept": {"*/*"}, "If-None-Match": {`"s"`}, "If-Modified-Since": {"z"}}, true},
		{"the rest of a partial", Upstream{Store: true, Range: "bytes=5-", IfRange: `"p"`}, http.MethodGet,
			http.Header{"Accept": {"*/*"}, "Range": {"bytes=5-"}, "If-Range": {`"p"`}}, true},
	} {
		h := client()
		if got := tc.u.ChangesHeader(h); got != tc.changes {
			t.Errorf("%s: ChangesHeader = %v", tc.name, got)
		}
		tc.u.ApplyHeader(h)
		if m := tc.u.Method(http.MethodHead); m != tc.method {
			t.Errorf("%s: method %s, want %s", tc.name, m, tc.method)
		}
		if !reflect.DeepEqual(h, tc.want) {
			t.Errorf("%s: header %v, want %v", tc.name, h, tc.want)
		}
	}
	if (Upstream{Store: true}).ChangesHeader(http.Header{"Accept": {"*/*"}}) {
		t.Error("a fetch for storage changes a header without preconditions")
	}
}
