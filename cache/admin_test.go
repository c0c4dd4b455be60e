package cache

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

func TestAdminPurgeAndStats(t *testing.T) {
	h := newHarness(t, reply(200, "x", "Cache-Control: max-age=60"), nil)
	mux := http.NewServeMux()
	h.c.mountAdmin(mux)
	admin := httptest.NewServer(mux)
	defer admin.Close()
	for _, p := range []string{"/a/1", "/a/2", "/b/1"} {
		h.do("GET", p)
		h.do("GET", p)
	}
	tests := []struct {
		name   string
		form   url.Values
		status int
		purged int
		origin int // origin requests after GETting /a/1, /a/2, /b/1 again
	}{
		{"no parameter", url.Values{}, 400, 0, 3},
		{"relative url refused", url.Values{"url": {"/a/1"}}, 400, 0, 3},
		{"one URL", url.Values{"url": {"http://ORIGIN.test:80/a/1"}}, 200, 1, 4},
		{"prefix", url.Values{"prefix": {"http://origin.test/a/"}}, 200, 2, 6},
		{"whole host", url.Values{"prefix": {"http://origin.test"}}, 200, 3, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(admin.URL+"/cache/purge", "application/x-www-form-urlencoded", strings.NewReader(tt.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			var got struct{ Purged int }
			_ = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if resp.StatusCode != tt.status || got.Purged != tt.purged {
				t.Fatalf("status %d purged %d, want %d %d", resp.StatusCode, got.Purged, tt.status, tt.purged)
			}
			for _, p := range []string{"/a/1", "/a/2", "/b/1"} {
				h.do("GET", p)
			}
			if n := h.originCount(); n != tt.origin {
				t.Fatalf("origin saw %d, want %d", n, tt.origin)
			}
		})
	}
	resp, err := http.Get(admin.URL + "/cache/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Entries != 3 || st.Hits == 0 || st.Misses != 9 || st.HitRatio <= 0 || st.MemoryBytes <= 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestNewValidation(t *testing.T) {
	cfg := config.Default().Cache
	cfg.PurgeAllow = []string{"not-a-cidr"}
	if _, err := New(cfg, component.Test(t.TempDir())); err == nil {
		t.Fatal("bad purge_allow accepted")
	}
	cfg = config.Default().Cache
	cfg.DiskDir = "/proc/forbidden/cache"
	if _, err := New(cfg, component.Test(t.TempDir())); err == nil {
		t.Fatal("unusable disk_dir accepted")
	}
	cfg = config.Default().Cache
	env := component.Test(t.TempDir())
	c, err := New(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.st.disk == nil {
		t.Fatal("disk tier not opened under data_dir")
	}
}
