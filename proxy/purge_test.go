package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// TestPurgeRequest: the forwarded PURGE is origin-form with the URL's Host, the direction
// (and prefix) marker, and the Via chain only when going up.
func TestPurgeRequest(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		prefix bool
		dir    string
		via    []string
		want   string
	}{
		{"up with via", "http://www.cdn.test/obj/1?v=2", false, cache.PurgeUp, []string{"1.1 edge2"},
			"PURGE /obj/1?v=2 HTTP/1.1\r\nHost: www.cdn.test\r\nOutpost-Purge: up\r\nVia: 1.1 edge2\r\nUser-Agent: outpost-purge\r\nConnection: close\r\n\r\n"},
		{"down prefix of a whole host", "http://www.cdn.test", true, cache.PurgeDown, nil,
			"PURGE / HTTP/1.1\r\nHost: www.cdn.test\r\nOutpost-Purge: down, prefix\r\nUser-Agent: outpost-purge\r\nConnection: close\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got := string(purgeRequest(cache.PurgeTarget{URL: u, Prefix: tt.prefix}, tt.dir, tt.via))
			if got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestPurgeRequestTags: a tag purge is forwarded with its tags in Surrogate-Key (and
// Soft-Purge when soft); one without a URL is addressed to the other cache itself.
func TestPurgeRequestTags(t *testing.T) {
	u, _ := url.Parse("http://www.cdn.test/")
	got := string(purgeRequest(cache.PurgeTarget{URL: u, Tags: []string{"a", "p:42"}, Soft: true}, cache.PurgeDown, nil))
	want := "PURGE / HTTP/1.1\r\nHost: www.cdn.test\r\nOutpost-Purge: down\r\nSurrogate-Key: a p:42\r\nSoft-Purge: 1\r\nUser-Agent: outpost-purge\r\nConnection: close\r\n\r\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	got = string(purgeRequest(routedTo(cache.PurgeTarget{Tags: []string{"a"}}, "127.0.0.1:9"), cache.PurgeUp, nil))
	if !strings.HasPrefix(got, "PURGE / HTTP/1.1\r\nHost: 127.0.0.1:9\r\nOutpost-Purge: up\r\nSurrogate-Key: a\r\n") {
		t.Errorf("without a URL: %q", got)
	}
}

// TestTagPurgeFanout: an edge below a parent, real proxies with real caches (the parent keeps
// the tag field for its edges: strip_tag_header = false). A PURGE by tag at the edge leaves
// the tagged objects in no tier and the others in both; a soft purge by tag at the edge makes
// both tiers revalidate, once.
func TestTagPurgeFanout(t *testing.T) {
	var fetches, conditional atomic.Int64
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if r.Header.Get("If-None-Match") != "" {
			conditional.Add(1)
		}
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("ETag", `"1"`)
		if strings.HasPrefix(r.URL.Path, "/t/") {
			w.Header().Set("Surrogate-Key", "group "+strings.TrimPrefix(r.URL.Path, "/t/"))
		}
		if r.Header.Get("If-None-Match") == `"1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "object %s", r.URL.Path)
	})
	parentAddr, edgeAddr := freeAddr(t), freeAddr(t)
	route := reverseRoute(o)
	pcfg := loadProxyConfig(t, fmt.Sprintf("via_pseudonym = \"parent\"\n%s\n[proxy.purge]\npeers = [%q]\n", route, edgeAddr))
	pcfg.Listen = []string{parentAddr}
	parentCache := config.Default().Cache
	parentCache.DiskEnabled, parentCache.StripTagHeader = false, false
	pc, err := cache.New(parentCache, component.Test(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	parent := startProxyConfig(t, pcfg, Options{Cache: pc})
	ecfg := loadProxyConfig(t, fmt.Sprintf("via_pseudonym = \"edge\"\n%s\n[proxy.parents]\nservers = [%q]\n", route, parentAddr))
	ecfg.Listen = []string{edgeAddr}
	edge := startProxyConfig(t, ecfg, Options{Cache: newRealCache(t)})
	for _, p := range []string{"/t/1", "/t/2", "/other"} {
		resp, body := tierGet(t, edge, p, "")
		if resp.StatusCode != 200 || resp.Header.Get("Surrogate-Key") != "" || body != "object "+p {
			t.Fatalf("%s: %d %q, Surrogate-Key %q at the client", p, resp.StatusCode, body, resp.Header.Get("Surrogate-Key"))
		}
	}
	stored := func(p *testProxy, path string) bool {
		resp, _ := tierGet(t, p, path, "Cache-Control: only-if-cached\r\n")
		return resp.StatusCode == 200
	}
	purge := func(extra string) string {
		c := dialRaw(t, edge.addr)
		c.send("PURGE / HTTP/1.1\r\nHost: www.cdn.test\r\n" + extra + "Connection: close\r\n\r\n")
		resp, body := c.response("PURGE")
		if resp.StatusCode != 200 || strings.Contains(body, "failed") {
			t.Fatalf("PURGE %q at the edge: %d %s", extra, resp.StatusCode, body)
		}
		return body
	}
	// Soft: both tiers keep the objects, marked stale; the next request revalidates once,
	// the edge through the parent to the origin.
	if body := purge("Surrogate-Key: 1\r\nSoft-Purge: 1\r\n"); !strings.Contains(body, `"soft":true`) || !strings.Contains(body, `"forwarded":1`) {
		t.Fatalf("soft PURGE: %s", body)
	}
	before := fetches.Load()
	if resp, body := tierGet(t, edge, "/t/1", ""); resp.StatusCode != 200 || body != "object /t/1" {
		t.Fatalf("/t/1 after the soft purge: %d %q", resp.StatusCode, body)
	}
	if n, c := fetches.Load()-before, conditional.Load(); n != 1 || c != 1 {
		t.Fatalf("after the soft purge the origin saw %d requests (%d conditional), want 1 conditional", n, c)
	}
	// Hard: gone from both tiers, the untagged object stays. (The edge's own count may be 0:
	// the purge came back down from the parent first.)
	if body := purge("Surrogate-Key: group\r\n"); !strings.Contains(body, `"forwarded":1`) {
		t.Fatalf("PURGE by tag: %s", body)
	}
	for _, p := range []*testProxy{edge, parent} {
		for _, path := range []string{"/t/1", "/t/2"} {
			if stored(p, path) {
				t.Errorf("%s still serves %s after the tag purge", p.addr, path)
			}
		}
		if !stored(p, "/other") {
			t.Errorf("%s lost /other to the tag purge", p.addr)
		}
	}
}
