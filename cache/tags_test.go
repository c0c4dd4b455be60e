package cache

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// TestTagHeaderParse: both conventions, whitespace, duplicates, bad bytes and the limits.
func TestTagHeaderParse(t *testing.T) {
	space := tagRules{field: "Surrogate-Key", max: 4, maxLen: 8}
	comma := tagRules{field: "Cache-Tag", comma: true, max: 4, maxLen: 8}
	tests := []struct {
		name    string
		rules   tagRules
		lines   []string
		want    []string
		dropped int
	}{
		{"Surrogate-Key: space-separated", space, []string{"a b c"}, []string{"a", "b", "c"}, 0},
		{"Surrogate-Key: runs of spaces and tabs", space, []string{"  a \t b\t\tc  "}, []string{"a", "b", "c"}, 0},
		{"Surrogate-Key: a comma is not a separator, and not a tag byte", space, []string{"a,b c"}, []string{"c"}, 1},
		{"Surrogate-Key: several lines", space, []string{"a b", "c"}, []string{"a", "b", "c"}, 0},
		{"Surrogate-Key: duplicates kept once", space, []string{"a b a", "b"}, []string{"a", "b"}, 0},
		{"Surrogate-Key: case is significant", space, []string{"Tag tag"}, []string{"Tag", "tag"}, 0},
		{"Cache-Tag: comma-separated", comma, []string{"a,b,c"}, []string{"a", "b", "c"}, 0},
		{"Cache-Tag: OWS around members, empty members", comma, []string{" a , ,b,,\tc ,"}, []string{"a", "b", "c"}, 0},
		{"Cache-Tag: a space inside a member makes it invalid", comma, []string{"a b,c"}, []string{"c"}, 1},
		{"Cache-Tag: several lines and duplicates", comma, []string{"a,b", "b,c"}, []string{"a", "b", "c"}, 0},
		{"empty field", space, []string{""}, nil, 0},
		{"only separators", comma, []string{" , ,, "}, nil, 0},
		{"tag length limit", space, []string{"12345678 123456789"}, []string{"12345678"}, 1},
		{"tags per object limit", space, []string{"a b c d e f"}, []string{"a", "b", "c", "d"}, 2},
		{"a duplicate past the limit is not counted", space, []string{"a b c d a"}, []string{"a", "b", "c", "d"}, 0},
		{"control and non-ASCII bytes", space, []string{"ok a\x01b caf\xc3\xa9 x\x7f"}, []string{"ok"}, 3},
		{"visible ASCII punctuation is allowed", space, []string{"p:42/x#y"}, []string{"p:42/x#y"}, 0},
		{"many tags: duplicates past the set threshold", tagRules{max: 40, maxLen: 8}, []string{strings.Repeat("a b c d e f g h i j k l m n o p q r s t ", 3)},
			strings.Fields("a b c d e f g h i j k l m n o p q r s t"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, dropped := tt.rules.parse(tt.lines)
			if !slices.Equal(got, tt.want) || dropped != tt.dropped {
				t.Errorf("parse(%q) = %q (%d dropped), want %q (%d)", tt.lines, got, dropped, tt.want, tt.dropped)
			}
		})
	}
}

// TestTagRulesFromConfig: the separator follows the field's convention unless tag_separator
// says otherwise.
func TestTagRulesFromConfig(t *testing.T) {
	tests := []struct {
		header, sep string
		field       string
		comma       bool
	}{
		{"Surrogate-Key", "", "Surrogate-Key", false},
		{"surrogate-key", "", "Surrogate-Key", false},
		{"cache-tag", "", "Cache-Tag", true},
		{"Edge-Cache-Tag", "", "Edge-Cache-Tag", true},
		{"X-Tags", "", "X-Tags", false},
		{"X-Tags", "comma", "X-Tags", true},
		{"Cache-Tag", "space", "Cache-Tag", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		cfg := config.Default().Cache
		cfg.TagHeader, cfg.TagSeparator = tt.header, tt.sep
		r := newTagRules(cfg)
		if r.field != tt.field || r.comma != tt.comma {
			t.Errorf("%q/%q: field %q comma %v, want %q %v", tt.header, tt.sep, r.field, r.comma, tt.field, tt.comma)
		}
	}
}

// TestCheckPurgeTags: what an admin purge may name.
func TestCheckPurgeTags(t *testing.T) {
	many := make([]string, maxPurgeTags+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	tests := []struct {
		name string
		tags []string
		ok   bool
	}{
		{"plain", []string{"a", "product-42"}, true},
		{"empty tag", []string{""}, false},
		{"space", []string{"a b"}, false},
		{"comma", []string{"a,b"}, false},
		{"CRLF", []string{"a\r\nX-Evil: 1"}, false},
		{"too long", []string{strings.Repeat("x", maxTagBytes+1)}, false},
		{"too many", many, false},
		{"too many bytes", []string{strings.Repeat("x", 4096), strings.Repeat("y", 4096), strings.Repeat("z", 4096), strings.Repeat("w", 4096)}, false},
	}
	for _, tt := range tests {
		if got := checkPurgeTags(tt.tags) == ""; got != tt.ok {
			t.Errorf("%s: ok %v, want %v", tt.name, got, tt.ok)
		}
	}
}

// FuzzTagHeader: the parser never panics, keeps within its limits and returns only valid,
// distinct tags that occur in the input.
func FuzzTagHeader(f *testing.F) {
	for _, s := range []string{"a b c", " a\t\tb ", "a,b,,c", "a, b ,c", "x\x00y z", "caf\xc3\xa9", strings.Repeat("k ", 300),
		strings.Repeat("z", 300), ",", " ", "", "a a a", "p:1/2#3 ~!"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, line string, comma bool) {
		r := tagRules{field: "Surrogate-Key", comma: comma, max: 40, maxLen: 64}
		tags, dropped := r.parse([]string{line})
		if len(tags) > r.max || dropped < 0 {
			t.Fatalf("%d tags, %d dropped", len(tags), dropped)
		}
		seen := map[string]bool{}
		for _, tag := range tags {
			if !validTag(tag) || len(tag) > r.maxLen || seen[tag] || !strings.Contains(line, tag) {
				t.Fatalf("bad tag %q from %q", tag, line)
			}
			seen[tag] = true
		}
	})
}

// tagged is an origin answering with max-age=60, an ETag and the tags given per path.
func tagged(tags map[string]string, fields ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		if v, ok := tags[r.URL.Path]; ok {
			w.Header().Set("Surrogate-Key", v)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"v1"`)
		for _, l := range fields {
			k, v, _ := strings.Cut(l, ":")
			w.Header().Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "body of %s #%d", r.URL.Path, n)
	}
}

// TestTagPurge: PURGE with Surrogate-Key removes exactly the objects carrying one of its tags;
// the tag field is not sent to clients; the index follows replacements and purges.
func TestTagPurge(t *testing.T) {
	h := newHarness(t, tagged(map[string]string{"/p/1": "product-1 all", "/p/2": "product-2 all", "/q": "other"}), nil)
	for _, p := range []string{"/p/1", "/p/2", "/q", "/untagged"} {
		if r := h.do("GET", p); r.header.Get("Surrogate-Key") != "" {
			t.Fatalf("%s: the tag field reached the client: %q", p, r.header.Get("Surrogate-Key"))
		}
	}
	if r := h.do("GET", "/p/1"); r.out.Code != CodeMemHit || r.header.Get("Surrogate-Key") != "" {
		t.Fatalf("hit: %v, Surrogate-Key %q", r.out.Code, r.header.Get("Surrogate-Key"))
	}
	if n := h.c.Stats().Tags; n != 4 {
		t.Fatalf("%d tags indexed, want 4 (product-1 product-2 all other)", n)
	}
	steps := []struct {
		name   string
		hdr    []string
		status int
		purged int
		gone   []string
		kept   []string
	}{
		{"a tag nobody carries: 404", []string{"Surrogate-Key: nothing"}, 404, 0, nil, []string{"/p/1", "/p/2", "/q", "/untagged"}},
		{"no valid tag: 400, not a URL purge", []string{"Surrogate-Key: a,b"}, 400, 0, nil, []string{"/p/1", "/p/2", "/q", "/untagged"}},
		{"one tag", []string{"Surrogate-Key: product-1"}, 200, 1, []string{"/p/1"}, []string{"/p/2", "/q", "/untagged"}},
		{"two tags, one of them already purged", []string{"Surrogate-Key: all other"}, 200, 2, []string{"/p/2", "/q"}, []string{"/untagged"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := h.do("PURGE", "/anything", st.hdr...)
			var ans purgeAnswer
			if err := json.Unmarshal([]byte(r.body), &ans); err != nil || r.status != st.status || ans.Purged != st.purged {
				t.Fatalf("PURGE: %d %s, want %d purged=%d", r.status, r.body, st.status, st.purged)
			}
			// (Counts are of the objects indexed under the tags: one purged by another tag
			// still being reclaimed would count again.)
			h.c.st.ban.reclaimer.Wait()
			for _, p := range st.gone {
				if r := h.do("GET", p, "Cache-Control: only-if-cached"); r.status != http.StatusGatewayTimeout {
					t.Errorf("%s still stored after the purge: %d", p, r.status)
				}
			}
			for _, p := range st.kept {
				if r := h.do("GET", p, "Cache-Control: only-if-cached"); r.status != 200 {
					t.Errorf("%s was purged too: %d", p, r.status)
				}
			}
		})
	}
	h.c.st.ban.reclaimer.Wait()
	if n := h.c.Stats().Tags; n != 0 {
		t.Fatalf("%d tags left in the index, want 0", n)
	}
}

// TestTagIndexConsistency: the tag index follows the URL index — a replaced response's new
// tags replace its old ones, a URL purge, a Vary change and a §4.4 invalidation forget
// the tags, and memory-tier evictions too.
func TestTagIndexConsistency(t *testing.T) {
	tags := map[string]string{"/a": "t1 t2"}
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Surrogate-Key", tags[r.URL.Path])
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "#%d", n)
	}, nil)
	itemOf := func(path string) uint64 {
		key := "http://origin.test" + path
		return itemKey(primaryHash(key), key, "")
	}
	h.do("GET", "/a")
	if got := h.c.st.tags.tagsOf(itemOf("/a")); !slices.Equal(got, []string{"t1", "t2"}) {
		t.Fatalf("tags of /a: %q", got)
	}
	tags["/a"] = "t3"
	h.do("GET", "/a", "Cache-Control: no-cache") // a new response replaces the stored one
	if got := h.c.st.tags.tagsOf(itemOf("/a")); !slices.Equal(got, []string{"t3"}) {
		t.Fatalf("tags of /a after replacement: %q", got)
	}
	if n := h.c.Stats().Tags; n != 1 {
		t.Fatalf("%d tags, want 1 (t1 and t2 left with the old response)", n)
	}
	h.do("PURGE", "/a")
	if n := h.c.Stats().Tags; n != 0 {
		t.Fatalf("%d tags after a URL purge, want 0", n)
	}
	h.do("GET", "/a")
	h.do("POST", "/a") // RFC 9111 §4.4: invalidates /a
	if n := h.c.Stats().Tags; n != 0 {
		t.Fatalf("%d tags after an invalidation, want 0", n)
	}
	// Evictions: a memory tier far smaller than what is stored keeps the index within what
	// it holds.
	small := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Surrogate-Key", "shared "+r.URL.Path)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte(strings.Repeat("x", 4096)))
	}, func(c *config.CacheConfig) { c.MemorySize = 64 << 10 })
	for i := range 200 {
		small.do("GET", fmt.Sprint("/e/", i))
	}
	_, items := small.c.st.counts()
	small.c.st.tags.mu.Lock()
	tagged, shared := len(small.c.st.tags.byItem), len(small.c.st.tags.byTag["shared"].items)
	small.c.st.tags.mu.Unlock()
	if items >= 200 || tagged != items || shared != items {
		t.Fatalf("%d items indexed, %d tagged, %d carry the shared tag: want the three equal and < 200", items, tagged, shared)
	}
}

// TestTagHeaderConfig: Cache-Tag read with commas; strip_tag_header = false passes the field on.
func TestTagHeaderConfig(t *testing.T) {
	h := newHarness(t, reply(200, "x", "Cache-Control: max-age=60", "Cache-Tag: a, b"), func(c *config.CacheConfig) {
		c.TagHeader, c.StripTagHeader = "Cache-Tag", false
	})
	if r := h.do("GET", "/x"); r.header.Get("Cache-Tag") != "a, b" {
		t.Fatalf("miss: Cache-Tag %q, want it passed on", r.header.Get("Cache-Tag"))
	}
	if r := h.do("GET", "/x"); !r.stored || r.header.Get("Cache-Tag") != "a, b" {
		t.Fatalf("hit: Cache-Tag %q, want it passed on", r.header.Get("Cache-Tag"))
	}
	// A PURGE names tags in the configured field (with its convention) or in Surrogate-Key.
	if r := h.do("PURGE", "/", "Cache-Tag: nope, b"); r.status != 200 || !strings.Contains(r.body, `"purged":1`) {
		t.Fatalf("PURGE Cache-Tag: %d %s", r.status, r.body)
	}
	h.do("GET", "/x")
	if r := h.do("PURGE", "/", "Surrogate-Key: a"); r.status != 200 || !strings.Contains(r.body, `"purged":1`) {
		t.Fatalf("PURGE Surrogate-Key: %d %s", r.status, r.body)
	}
}

// TestAdminTagAndSoftPurge: POST /cache/purge with JSON: tags, soft, and the refusals.
func TestAdminTagAndSoftPurge(t *testing.T) {
	h := newHarness(t, tagged(map[string]string{"/a": "blue", "/b": "blue red", "/c": "red"}), nil)
	mux := http.NewServeMux()
	h.c.mountAdmin(mux)
	admin := httptest.NewServer(mux)
	defer admin.Close()
	post := func(ctype, body string) (int, purgeAnswer) {
		resp, err := http.Post(admin.URL+"/cache/purge", ctype, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans purgeAnswer
		_ = json.NewDecoder(resp.Body).Decode(&ans)
		return resp.StatusCode, ans
	}
	for _, p := range []string{"/a", "/b", "/c"} {
		h.do("GET", p)
	}
	bad := []struct{ name, ctype, body string }{
		{"not JSON", "application/json", `{"tags":`},
		{"unknown field", "application/json", `{"tag":["a"]}`},
		{"two kinds", "application/json", `{"tags":["a"],"url":"http://origin.test/a"}`},
		{"empty tags", "application/json", `{"tags":[]}`},
		{"bad tag", "application/json", `{"tags":["a b"]}`},
		{"CRLF in a tag", "application/json", `{"tags":["a\r\nX: y"]}`},
		{"bad host", "application/json", `{"tags":["a"],"host":"a b"}`},
		{"trailing data", "application/json", `{"tags":["a"]} {}`},
	}
	for _, b := range bad {
		if status, _ := post(b.ctype, b.body); status != 400 {
			t.Errorf("%s: %d, want 400", b.name, status)
		}
	}
	// Soft by tag: marked, still stored, revalidated on the next request (304: the body stays).
	status, ans := post("application/json", `{"tags":["red"],"soft":true}`)
	if status != 200 || ans.Purged != 2 || !ans.Soft {
		t.Fatalf("soft tag purge: %d %+v", status, ans)
	}
	before := h.originCount()
	r := h.do("GET", "/c")
	if h.originCount() != before+1 || r.out.Code != CodeRefreshHit || r.body != "body of /c #3" {
		t.Fatalf("after a soft purge: %v %q, origin %d→%d", r.out.Code, r.body, before, h.originCount())
	}
	if r := h.do("GET", "/c"); r.out.Code != CodeMemHit {
		t.Fatalf("after the revalidation: %v, want a hit", r.out.Code)
	}
	// Hard by tag, as a form too.
	status, ans = post("application/x-www-form-urlencoded", "tag=blue")
	if status != 200 || ans.Purged != 2 {
		t.Fatalf("form tag purge: %d %+v", status, ans)
	}
	if r := h.do("GET", "/a", "Cache-Control: only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("/a after the tag purge: %d", r.status)
	}
	// Soft by URL.
	status, ans = post("application/json", `{"url":"http://origin.test/c","soft":true}`)
	if status != 200 || ans.Purged != 1 || !ans.Soft {
		t.Fatalf("soft URL purge: %d %+v", status, ans)
	}
	if r := h.do("GET", "/c", "Cache-Control: only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("/c after a soft purge with only-if-cached: %d, want 504 (stale, must revalidate)", r.status)
	}
	if st := h.c.Stats(); st.SoftPurges != 2 {
		t.Fatalf("soft purges %d, want 2", st.SoftPurges)
	}
}

// TestSoftPurge: the stale mark through the seam — revalidation, stale-while-revalidate,
// stale-on-error, prefix, and a new response is fresh again.
func TestSoftPurge(t *testing.T) {
	t.Run("revalidated on the next request", func(t *testing.T) {
		h := newHarness(t, tagged(nil), nil)
		h.do("GET", "/x")
		r := h.do("PURGE", "/x", "Soft-Purge: 1")
		if r.status != 200 || !strings.Contains(r.body, `"soft":true`) {
			t.Fatalf("PURGE: %d %s", r.status, r.body)
		}
		if r := h.do("GET", "/x"); r.out.Code != CodeRefreshHit || h.lastSeen().header.Get("If-None-Match") != `"v1"` {
			t.Fatalf("%v, origin saw %v", r.out.Code, h.lastSeen().header)
		}
		if r := h.do("GET", "/x"); r.out.Code != CodeMemHit || h.originCount() != 2 {
			t.Fatalf("%v after the refresh, origin %d", r.out.Code, h.originCount())
		}
	})
	t.Run("stale-while-revalidate: served stale, one background refresh", func(t *testing.T) {
		h := newHarness(t, tagged(nil, "Cache-Control: max-age=60, stale-while-revalidate=30"), nil)
		h.do("GET", "/x")
		h.clk.Advance(5 * time.Second)
		h.do("PURGE", "/x", "Soft-Purge: 1")
		r := h.do("GET", "/x")
		if r.out.Code != CodeStaleHit || !strings.Contains(r.header.Get("Cache-Status"), "stale-while-revalidate") {
			t.Fatalf("%v %q", r.out.Code, r.header.Get("Cache-Status"))
		}
		if n := h.originCount(); n != 2 {
			t.Fatalf("origin %d, want 2 (the background revalidation)", n)
		}
		if r := h.do("GET", "/x"); r.out.Code != CodeMemHit {
			t.Fatalf("after the background refresh: %v", r.out.Code)
		}
	})
	t.Run("stale_on_error covers a failing origin", func(t *testing.T) {
		fail := false
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if fail {
				w.WriteHeader(503)
				return
			}
			tagged(nil)(w, r, n)
		}, func(c *config.CacheConfig) { c.StaleOn5xx = true })
		h.do("GET", "/x")
		h.do("PURGE", "/x", "Soft-Purge: 1")
		fail = true
		if r := h.do("GET", "/x"); r.status != 200 || r.out.Code != CodeStaleHit || r.body != "body of /x #1" {
			t.Fatalf("%d %v %q", r.status, r.out.Code, r.body)
		}
	})
	t.Run("prefix, and hard purge after soft", func(t *testing.T) {
		h := newHarness(t, tagged(nil), nil)
		h.do("GET", "/d/1")
		h.do("GET", "/d/2")
		h.do("GET", "/e")
		if r := h.do("PURGE", "/d/", "Soft-Purge: 1", "Outpost-Purge: prefix"); !strings.Contains(r.body, `"purged":2`) {
			t.Fatalf("soft prefix: %s", r.body)
		}
		if r := h.do("GET", "/e"); r.out.Code != CodeMemHit {
			t.Fatalf("/e: %v", r.out.Code)
		}
		if r := h.do("PURGE", "/d/1"); !strings.Contains(r.body, `"purged":1`) {
			t.Fatalf("hard after soft: %s", r.body)
		}
	})
	t.Run("an earlier mark stays", func(t *testing.T) {
		e := &entry{policy: policy{lifetime: time.Minute}, purged: newPurgeMark()}
		now := time.Now()
		e.timing = timing{responseTime: now}
		e.markStale(now.Add(10 * time.Second))
		e.markStale(now.Add(20 * time.Second))
		if lt := e.livePolicy().lifetime; lt != 10*time.Second {
			t.Fatalf("lifetime %v, want 10s", lt)
		}
	})
}

// TestTagsSurviveRestart: the tags travel in the disk entry's metadata; the start-up scan
// rebuilds the index, a tag purge after the restart removes the files, and a second restart
// does not bring them back.
func TestTagsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *config.CacheConfig) { c.DiskEnabled, c.DiskDir = true, dir }
	h := newHarness(t, tagged(map[string]string{"/a": "k1 shared", "/b": "k2 shared", "/c": "k3"}), mod)
	for _, p := range []string{"/a", "/b", "/c"} {
		h.do("GET", p)
	}
	h.c.Close()
	reopen := func() *Cache {
		cfg := config.Default().Cache
		cfg.MemorySize = 16 << 20
		mod(&cfg)
		c, err := New(cfg, component.Test(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := reopen()
	if n := c.Stats().Tags; n != 4 {
		t.Fatalf("%d tags after the restart, want 4", n)
	}
	if n := c.apply(purgeSpec{tags: []string{"shared"}}); n != 2 {
		t.Fatalf("tag purge after the restart removed %d, want 2", n)
	}
	c.st.ban.reclaimer.Wait()
	if files, _ := c.st.disk.usage(); files != 1 {
		t.Fatalf("%d disk files after the purge, want 1", files)
	}
	c.Close()
	c = reopen()
	defer c.Close()
	if st := c.Stats(); st.Tags != 1 || st.DiskEntries != 1 {
		t.Fatalf("after a second restart: %d tags, %d disk entries; want 1 and 1", st.Tags, st.DiskEntries)
	}
}

// TestTagPurgeBan: a purge by tag is final at once — a response fetched before the purge and
// finished after it is not stored — while a response fetched after the purge is stored and
// survives the background reclaim of the purged objects.
func TestTagPurgeBan(t *testing.T) {
	gate, started := make(chan struct{}), make(chan struct{})
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Surrogate-Key", "x")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "10")
		if r.URL.Path == "/slow" && n == 2 {
			w.Write([]byte("12345"))
			w.(http.Flusher).Flush()
			close(started)
			<-gate
		} else {
			w.Write([]byte("12345"))
		}
		w.Write([]byte("67890"))
	}, nil)
	fillTagged(h.c, "http://origin.test", 300, []string{"x"})
	h.do("GET", "/a")
	done := make(chan result)
	go func() { done <- h.do("GET", "/slow") }()
	<-started
	key := "http://origin.test/slow"
	for fl := (*flight)(nil); fl == nil; fl = h.c.flights.get(primaryHash(key), key) {
		runtime.Gosched() // the fetch is registered before it is sent: this ends at once
	}
	<-h.c.flights.get(primaryHash(key), key).ready // the response header reached the cache
	// (h.do would wait for the pump of /slow: serve these without settling.)
	direct := func(method, path string, hdr ...string) result {
		r := httptest0(h, path)
		r.Method = method
		for _, l := range hdr {
			k, v, _ := strings.Cut(l, ":")
			r.Header.Add(k, strings.TrimSpace(v))
		}
		rw := &recorder{method: method}
		out, err := h.serve(rw, r)
		if err != nil {
			t.Fatal(err)
		}
		return result{status: rw.resp.StatusCode, body: string(rw.body), out: out}
	}
	if r := direct("PURGE", "/", "Surrogate-Key: x"); !strings.Contains(r.body, `"purged":301`) {
		t.Fatalf("PURGE: %s", r.body)
	}
	if r := direct("GET", "/a"); r.out.Code != CodeMiss {
		t.Fatalf("/a after the purge: %v, want a miss", r.out.Code)
	}
	h.c.st.ban.reclaimer.Wait() // reclaimed before /slow finishes: its ban must outlast the reclaim
	close(gate)
	if r := <-done; r.status != 200 || r.body != "1234567890" {
		t.Fatalf("/slow: %d %q", r.status, r.body)
	}
	h.c.st.ban.reclaimer.Wait()
	if r := h.do("GET", "/slow", "Cache-Control: only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("/slow, fetched before the purge, was stored: %d", r.status)
	}
	// /a, fetched after the purge, is not banned. The reclaimer may still have removed its
	// memory copy, racing with its store (one extra miss, see dropItems); then the next
	// fetch is stored again.
	if r := h.do("GET", "/a"); r.out.Code != CodeMemHit {
		if r := h.do("GET", "/a"); r.out.Code != CodeMemHit {
			t.Fatalf("/a, fetched after the purge, is not stored after the reclaim: %v", r.out.Code)
		}
	}
	if st := h.c.Stats(); st.Entries != 1 || st.Tags != 1 || h.c.st.ban.list.Load() != nil {
		t.Fatalf("after the reclaim: %d entries, %d tags, bans %v", st.Entries, st.Tags, h.c.st.ban.list.Load())
	}
}

// TestTagPurgeDurable: a tag purge is recorded in the disk tier's directory before it
// answers; a restart before the reclaimer removed the files (simulated: the record written,
// the files left) drops them in the start-up scan, keeps the others, and removes the record.
func TestTagPurgeDurable(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *config.CacheConfig) { c.DiskEnabled, c.DiskDir = true, dir }
	h := newHarness(t, tagged(map[string]string{"/a": "k1", "/b": "k2"}), mod)
	h.do("GET", "/a")
	h.do("GET", "/b")
	h.c.Close()
	reopen := func() *Cache {
		cfg := config.Default().Cache
		cfg.MemorySize = 16 << 20
		mod(&cfg)
		c, err := New(cfg, component.Test(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := reopen()
	c.st.ban.disk.add([]string{"k1"}, c.st.seq.Add(1), c.now()) // the purge's record, and a crash before its reclaim
	c.Close()
	record := filepath.Join(dir, banFile)
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("no purge record: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "."+banFile+".tmp-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = reopen()
	defer c.Close()
	if st := c.Stats(); st.DiskEntries != 1 || st.Tags != 1 || st.DiskCorrupt != 0 {
		t.Fatalf("after the restart: %d disk entries, %d tags, %d corrupt; want 1, 1 (k2), 0", st.DiskEntries, st.Tags, st.DiskCorrupt)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("the record outlived the scan that applied it: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "."+banFile+".tmp-123")); !os.IsNotExist(err) {
		t.Fatalf("a temporary record survived the scan: %v", err)
	}
	// A real purge: recorded, then lifted (the record goes) once its objects are removed.
	if n := c.apply(purgeSpec{tags: []string{"k2"}}); n != 1 {
		t.Fatalf("purged %d", n)
	}
	c.st.ban.reclaimer.Wait()
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("the record outlived the reclaim: %v", err)
	}
	if files, _ := c.st.disk.usage(); files != 0 {
		t.Fatalf("%d files after the purge", files)
	}
}
