package cache

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestParsePurgeMarker(t *testing.T) {
	tests := []struct {
		values []string
		dir    string
		prefix bool
	}{
		{nil, PurgeFromClient, false},
		{[]string{"up"}, PurgeUp, false},
		{[]string{"down"}, PurgeDown, false},
		{[]string{"Down, prefix"}, PurgeDown, true},
		{[]string{"up", "prefix"}, PurgeUp, true},
		{[]string{"up, down"}, PurgeDown, false}, // both: never forwarded again
		{[]string{"down", "up"}, PurgeDown, false},
		{[]string{"sideways, , prefixes"}, PurgeFromClient, false},
	}
	for _, tt := range tests {
		dir, prefix := parsePurgeMarker(tt.values)
		if dir != tt.dir || prefix != tt.prefix {
			t.Errorf("%q: got %q %v, want %q %v", tt.values, dir, prefix, tt.dir, tt.prefix)
		}
	}
}

// FuzzPurgeMarker: any field value parses to one of the three directions without panicking.
func FuzzPurgeMarker(f *testing.F) {
	for _, s := range []string{"", "up", "down, prefix", "UP,,prefix", "\x00,\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		dir, _ := parsePurgeMarker([]string{v})
		if dir != PurgeFromClient && dir != PurgeUp && dir != PurgeDown {
			t.Fatalf("%q: direction %q", v, dir)
		}
	})
}

// recordingFanout is a PurgeFanout that records the purges and checks local runs inside.
type recordingFanout struct {
	mu      sync.Mutex
	targets []PurgeTarget
}

func (f *recordingFanout) Fanout(t PurgeTarget, local func()) PurgeReport {
	f.mu.Lock()
	f.targets = append(f.targets, t)
	f.mu.Unlock()
	local()
	return PurgeReport{Forwarded: 2, Failed: []string{"192.0.2.9:80: status 503"}}
}

// TestPurgeFanoutHook: PURGE and the admin's purge hand the fan-out the absolute URL, the
// prefix flag and how the purge arrived; the answer reports where it went.
func TestPurgeFanoutHook(t *testing.T) {
	h := newHarness(t, reply(200, "x", "Cache-Control: max-age=60"), nil)
	fan := &recordingFanout{}
	h.c.SetPurgeFanout(fan)
	mux := http.NewServeMux()
	h.c.mountAdmin(mux)
	admin := httptest.NewServer(mux)
	defer admin.Close()
	h.do("GET", "/a/1")
	resp, err := http.Post(admin.URL+"/cache/purge", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"prefix": {"http://origin.test/a/"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin purge: %d", resp.StatusCode)
	}
	if n := h.originCount(); n != 1 {
		t.Fatalf("origin %d", n)
	}
	h.do("GET", "/a/1")
	if n := h.originCount(); n != 2 {
		t.Fatalf("the admin's prefix purge left /a/1 stored (origin %d)", n)
	}
	fan.mu.Lock()
	defer fan.mu.Unlock()
	if len(fan.targets) != 1 || !fan.targets[0].Prefix || fan.targets[0].URL.String() != "http://origin.test/a/" ||
		fan.targets[0].Arrived != PurgeFromClient {
		t.Fatalf("fan-out got %+v", fan.targets)
	}
}
