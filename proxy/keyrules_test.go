package proxy

import (
	"testing"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
)

// TestParentKeyUnderKeyRules: with a route's cache-key rules, requests one stored object serves
// (tracking parameters, another order, another path case) choose the same parent; without
// rules the key is the plain parentKey.
func TestParentKeyUnderKeyRules(t *testing.T) {
	keys, err := cache.NewKeyRules("k", config.CacheKeyConfig{IgnoreQuery: []string{"utm_*"}, SortQuery: true, LowercasePath: true})
	if err != nil {
		t.Fatal(err)
	}
	base := mustRequest(t, "http://www.cdn.test/obj?a=1&b=2")
	want := ruledParentKey(base, keys)
	if want != parentKey(base) {
		t.Errorf("a URL the rules leave alone hashes differently from parentKey")
	}
	for _, raw := range []string{"http://www.cdn.test/obj?b=2&a=1", "http://www.cdn.test/OBJ?utm_source=x&a=1&b=2"} {
		r := mustRequest(t, raw)
		if got := ruledParentKey(r, keys); got != want {
			t.Errorf("%s: key %x, want %x (as %s)", raw, got, want, base.URL)
		}
		if parentKey(r) == want {
			t.Errorf("%s: the plain key should differ", raw)
		}
		if ruledParentKey(r, nil) != parentKey(r) {
			t.Errorf("%s: no rules should give parentKey", raw)
		}
	}
}
