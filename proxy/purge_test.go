package proxy

import (
	"net/url"
	"testing"

	"github.com/outpost-proxy/outpost/cache"
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
