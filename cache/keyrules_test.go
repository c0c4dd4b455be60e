package cache

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/config"
)

func TestKeyRulesApply(t *testing.T) {
	utm := config.CacheKeyConfig{IgnoreQuery: []string{"utm_*", "fbclid", "gclid"}}
	sorted := config.CacheKeyConfig{SortQuery: true}
	both := config.CacheKeyConfig{IgnoreQuery: []string{"utm_*"}, SortQuery: true}
	lower := config.CacheKeyConfig{LowercasePath: true}
	hdrs := config.CacheKeyConfig{IncludeHeaders: []string{"x-device", "Accept-Language"}}
	cases := []struct {
		name string
		cfg  config.CacheKeyConfig
		url  string
		hdr  []string
		want string
	}{
		{"no rules", config.CacheKeyConfig{}, "http://H/a?b=1", nil, "http://h/a?b=1"},
		{"utm dropped", utm, "http://h/a?utm_source=x&id=7&fbclid=z", nil, "http://h/a?id=7"},
		{"all dropped: no ?", utm, "http://h/a?utm_source=x&gclid=1", nil, "http://h/a"},
		{"value-less param", utm, "http://h/a?utm_x&b", nil, "http://h/a?b"},
		{"empty params dropped", utm, "http://h/a?&&b=1&", nil, "http://h/a?b=1"},
		{"not a prefix match", utm, "http://h/a?xutm_a=1", nil, "http://h/a?xutm_a=1"},
		{"sorted by name", sorted, "http://h/a?b=2&a=1&c", nil, "http://h/a?a=1&b=2&c"},
		{"sorted by name then value", sorted, "http://h/a?a=2&ab=0&a=1", nil, "http://h/a?a=1&a=2&ab=0"},
		{"ignore and sort", both, "http://h/a?z=1&utm_medium=m&y=2", nil, "http://h/a?y=2&z=1"},
		{"lowercase path, not query", lower, "http://h/A/B?Q=X", nil, "http://h/a/b?Q=X"},
		{"path case kept by default", utm, "http://h/A", nil, "http://h/A"},
		{"headers added in config order", hdrs, "http://h/a", []string{"Accept-Language: en , de", "X-Device: mobile"},
			"http://h/a\x00X-Device: mobile\x00Accept-Language: en,de"},
		{"absent header adds nothing", hdrs, "http://h/a", nil, "http://h/a"},
		{"many params", sorted, "http://h/a?" + strings.Repeat("p=1&", 40) + "a=0", nil, "http://h/a?a=0" + strings.Repeat("&p=1", 40)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kr, err := NewKeyRules("k", tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			for _, l := range tc.hdr {
				k, v, _ := strings.Cut(l, ":")
				h.Add(k, strings.TrimSpace(v))
			}
			got := string(kr.apply(normalizeKey([]byte(tc.url), 0), h))
			if got != tc.want {
				t.Errorf("key %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKeyRulesPurgeKey(t *testing.T) {
	kr, _ := NewKeyRules("k", config.CacheKeyConfig{IgnoreQuery: []string{"utm_*"}, SortQuery: true, LowercasePath: true})
	u, _ := url.Parse("http://Site.test/Static/X?utm_a=1&b=2&a=1")
	if got := purgeKeyOf(kr, u, nil, false); got != "http://site.test/static/x?a=1&b=2" {
		t.Errorf("url key %q", got)
	}
	if got := purgeKeyOf(kr, u, nil, true); got != "http://site.test/static/x?utm_a=1&b=2&a=1" {
		t.Errorf("prefix key %q", got)
	}
	if got := displayKey("http://h/a\x00X-A: \"q\"\x7f"); got != `http://h/a X-A: %22q%22%7F` {
		t.Errorf("display %q", got)
	}
}

// TestKeyRulesHitAllocs: a memory hit through a route with rules (no include_headers) stays
// allocation-free too.
func TestKeyRulesHitAllocs(t *testing.T) {
	kr, _ := NewKeyRules("k", config.CacheKeyConfig{IgnoreQuery: []string{"utm_*"}, SortQuery: true, LowercasePath: true})
	b, h := make([]byte, 0, 256), http.Header{}
	n := testing.AllocsPerRun(100, func() {
		b = kr.apply(normalizeKey(append(b[:0], "http://h/A?utm_x=1&b=2&a=1"...), 0), h)
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// ruledRequest is a Request carrying key rules, as the proxy's slot does for a route.
type ruledRequest struct {
	Request
	kr *KeyRules
}

func (r ruledRequest) KeyRules() *KeyRules { return r.kr }

// BenchmarkHitKeyRules is BenchmarkHit for a route with ignore_query, sort_query and
// lowercase_path: a request with tracking parameters in another order hits the stored object.
func BenchmarkHitKeyRules(b *testing.B) {
	body := strings.Repeat("x", 1024)
	h := newHarness(b, reply(200, body, "Cache-Control: max-age=3600"), nil)
	kr, _ := NewKeyRules("k", config.CacheKeyConfig{IgnoreQuery: []string{"utm_*", "fbclid", "gclid"}, SortQuery: true, LowercasePath: true})
	warm := httptest0(h, "/obj?a=1&b=2")
	if _, err := h.c.Serve(&recorder{method: "GET"}, ruledRequest{FromHTTP(warm), kr}, h.fetcher(warm)); err != nil {
		b.Fatal(err)
	}
	Settle(h.c)
	r := httptest0(h, "/Obj?utm_source=news&b=2&fbclid=x&a=1")
	req, f := Request(ruledRequest{FromHTTP(r), kr}), Fetcher(h.fetcher(r))
	w := &sink{buf: make([]byte, 0, 4096)}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		out, err := h.c.Serve(w, req, f)
		if err != nil || !out.Hit {
			b.Fatalf("%+v %v", out, err)
		}
	}
}

// TestNoKeyInStatusByDefault: without cache.debug_key, Cache-Status carries no key=.
func TestNoKeyInStatusByDefault(t *testing.T) {
	h := newHarness(t, reply(200, "x", "Cache-Control: max-age=60"), nil)
	for range 2 {
		if cs := h.do(http.MethodGet, "/r").header.Get("Cache-Status"); strings.Contains(cs, "key=") {
			t.Fatalf("Cache-Status %q", cs)
		}
	}
	h = newHarness(t, reply(200, "x", "Cache-Control: max-age=60"), func(c *config.CacheConfig) { c.DebugKey = true })
	for _, want := range []string{"fwd=uri-miss", "hit"} {
		if cs := h.do(http.MethodGet, "/r").header.Get("Cache-Status"); !strings.Contains(cs, want) || !strings.Contains(cs, `key="http://`) {
			t.Fatalf("Cache-Status %q, want %s with key=", cs, want)
		}
	}
}

func TestNamePatterns(t *testing.T) {
	for _, tc := range []struct {
		pat, name string
		want      bool
	}{
		{"utm_*", "utm_source", true}, {"utm_*", "utm_", true}, {"utm_*", "xutm_a", false},
		{"fbclid", "fbclid", true}, {"fbclid", "fbclid2", false},
		{"*", "anything", true}, {"[fg]clid", "gclid", true}, {"[fg]clid", "hclid", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"*_id", "session_id", true}, {`a\*`, "a*", true}, {`a\*`, "ab", false},
	} {
		if got := compilePattern(tc.pat).match(tc.name); got != tc.want {
			t.Errorf("%q ~ %q: %v, want %v", tc.pat, tc.name, got, tc.want)
		}
	}
}

// FuzzKeyRules: the rules never panic on a request target, the URL part stays a URL with the
// same scheme and host, and applying them again changes nothing.
func FuzzKeyRules(f *testing.F) {
	for _, s := range []string{"/p?utm_source=a&b=2&a=1", "/A/B?", "/?&&=&utm_=x", "/x?a=1&a=0&utm_b", "/%41?b&a", "/" + strings.Repeat("q=1&", 50)} {
		f.Add(s, "X-Device: m")
	}
	kr, _ := NewKeyRules("k", config.CacheKeyConfig{IgnoreQuery: []string{"utm_*", "[fg]clid"}, SortQuery: true, LowercasePath: true})
	f.Fuzz(func(t *testing.T, target, field string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " #\x00\r\n") {
			return
		}
		key := normalizeKey([]byte("http://site.test"+target), 0)
		once := string(kr.applyURL(append([]byte(nil), key...)))
		if !strings.HasPrefix(once, "http://site.test/") {
			t.Fatalf("key %q lost its origin", once)
		}
		if twice := string(kr.applyURL([]byte(once))); twice != once {
			t.Fatalf("not idempotent: %q then %q", once, twice)
		}
		h := http.Header{}
		if k, v, ok := strings.Cut(field, ":"); ok {
			h.Add(k, v)
		}
		_ = kr.apply(key, h)
	})
}

// FuzzVaryNormalize: normalising a Vary'd value twice gives the same as once.
func FuzzVaryNormalize(f *testing.F) {
	for _, s := range []string{"en-US, de;q=0.5", "DE; Q=1.0,,en", "gzip;q=1.", "*;q=0", ", ,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		once := normalizeVaryValue("Accept-Language", v)
		if twice := normalizeVaryValue("Accept-Language", once); twice != once {
			t.Fatalf("%q → %q → %q", v, once, twice)
		}
	})
}
