package proxy

import (
	"errors"
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

// newRouteTable builds the routes and their origin pools, carrying over the pools of prev
// (nil: none) whose spec is unchanged (live.go). Every bad route is reported, naming its key.
func newRouteTable(cfg config.ProxyConfig, d *dialer, prev *routeTable) (*routeTable, error) {
	t := &routeTable{}
	var errs []error
	taken := map[*pool]bool{}
	for i, rc := range cfg.Routes {
		name := "route " + rc.Host + rc.PathPrefix
		spec := poolSpec(rc)
		var p *pool
		if old := prev.withSpec(spec, taken); old != nil {
			taken[old] = true
			p = old.carriedOver(name)
		} else {
			origins, err := newOrigins(i, rc)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p = newPool(name, origins, rc.Balance, rc.RewriteHost, cfg, d)
			p.spec = spec
		}
		keys, err := cache.NewKeyRules(fmt.Sprintf("proxy.routes[%d].cache_key", i), rc.CacheKey)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.keys = keys // a carried-over pool is a new value: the route's rules may have changed
		t.routes = append(t.routes, &route{host: strings.ToLower(rc.Host), prefix: strings.TrimSuffix(rc.PathPrefix, "/"), pool: p, keys: keys})
	}
	return t, errors.Join(errs...)
}

// newOrigins parses route i's origins, each with its health checker when the route has one.
func newOrigins(i int, rc config.ProxyRoute) ([]*origin, error) {
	var origins []*origin
	for j, o := range rc.Origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, config.Errorf(fmt.Sprintf("proxy.routes[%d].origins[%d]", i, j), "%q is not an http(s)://host[:port] URL", o)
		}
		org := &origin{u: u}
		if rc.Health.Enabled() {
			org.hc = newOriginCheck(rc.Health.Effective())
		}
		origins = append(origins, org)
	}
	return origins, nil
}

// poolSpec is what makes two routes' pools interchangeable: origins, balance, rewrite_host and
// health check.
func poolSpec(rc config.ProxyRoute) string {
	return fmt.Sprintf("%q %q %v %+v", rc.Origins, rc.Balance, rc.RewriteHost, rc.Health)
}

// withSpec returns a pool of t with spec that is not taken yet (nil-safe; nil: none).
func (t *routeTable) withSpec(spec string, taken map[*pool]bool) *pool {
	if t == nil {
		return nil
	}
	for _, r := range t.routes {
		if r.pool.spec == spec && !taken[r.pool] {
			return r.pool
		}
	}
	return nil
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
