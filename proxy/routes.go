package proxy

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
)

// route is one [[proxy.routes]] entry.
type route struct {
	host   string // lowercased exact host, "*.suffix" or "*"
	prefix string // path prefix ("" = all)
	pool   *pool
	keys   *cache.KeyRules // [proxy.routes.cache_key], nil for none
}

// routeTable finds the route for an origin-form request: the exact host first, then the
// longest "*.suffix", then "*"; among routes of the same host, the longest path prefix.
type routeTable struct {
	routes []*route
}

// newRouteTable builds the routes and their origin pools.
func newRouteTable(cfg config.ProxyConfig, d *dialer) (*routeTable, error) {
	t := &routeTable{}
	for i, rc := range cfg.Routes {
		var origins []*origin
		for _, o := range rc.Origins {
			u, err := url.Parse(o)
			if err != nil {
				return nil, fmt.Errorf("proxy: routes[%d]: %w", i, err)
			}
			origins = append(origins, &origin{u: u})
		}
		name := fmt.Sprintf("route[%d] %s%s", i, rc.Host, rc.PathPrefix)
		keys, err := cache.NewKeyRules(fmt.Sprintf("proxy.routes[%d].cache_key", i), rc.CacheKey)
		if err != nil {
			return nil, err
		}
		p := newPool(name, origins, rc.Balance, rc.RewriteHost, cfg, d)
		p.keys = keys
		t.routes = append(t.routes, &route{host: strings.ToLower(rc.Host), prefix: strings.TrimSuffix(rc.PathPrefix, "/"), pool: p, keys: keys})
	}
	return t, nil
}

// lookup returns the best route for the Host header and path, or nil.
func (t *routeTable) lookup(hostport, path string) *route {
	host := hostOnly(hostport)
	var best *route
	bestScore := -1
	for _, r := range t.routes {
		hs := hostScore(r.host, host, hostport)
		if hs < 0 || !hasPathPrefix(path, r.prefix) {
			continue
		}
		if score := hs*100000 + len(r.prefix); score > bestScore {
			best, bestScore = r, score
		}
	}
	return best
}

// hostOnly strips a ":port" (and IPv6 brackets) from a Host value without allocating.
func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		hostport = hostport[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// hostScore rates how well a route host pattern matches (-1: no match; exact beats suffix
// beats "*"; longer suffixes beat shorter ones).
func hostScore(pat, host, hostport string) int {
	switch {
	case pat == "*":
		return 0
	case strings.HasPrefix(pat, "*."):
		if len(host) > len(pat)-1 && hasSuffixFold(host, pat[1:]) {
			return 1 + len(pat)
		}
	case strings.EqualFold(pat, host) || strings.EqualFold(pat, hostport):
		return 10000
	}
	return -1
}

// hasSuffixFold is a case-insensitive strings.HasSuffix.
func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// hasPathPrefix reports whether path is under prefix (on a segment boundary).
func hasPathPrefix(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// closeIdle closes idle upstream connections of every route pool.
func (t *routeTable) closeIdle() {
	for _, r := range t.routes {
		r.pool.closeIdle()
	}
}

// keyRulesFor returns the cache-key rules of the route a URL falls under (its host and path),
// nil for none: the cache applies them to purges by URL and /cache/explain, which come without
// a request.
func (t *routeTable) keyRulesFor(u *url.URL) *cache.KeyRules {
	if rt := t.lookup(u.Host, u.EscapedPath()); rt != nil {
		return rt.keys
	}
	return nil
}
