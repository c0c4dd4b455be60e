package web

import (
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// policy is the compiled [[web.cache_policy]] list: the first rule whose glob matches the
// request path sets Cache-Control and Expires.
type policy []rule

// rule is one compiled cache policy entry.
type rule struct {
	glob         string
	base         bool // the glob has no "/": match the last path element
	cacheControl []string
	expires      time.Duration
}

// newPolicy compiles the configured rules (validated by internal/config).
func newPolicy(rules []config.WebCacheRule) policy {
	p := make(policy, 0, len(rules))
	for _, r := range rules {
		c := rule{glob: r.Glob, base: !strings.Contains(r.Glob, "/"), expires: r.Expires}
		if r.CacheControl != "" {
			c.cacheControl = []string{r.CacheControl}
		}
		p = append(p, c)
	}
	return p
}

// match returns the first rule matching urlPath, or nil.
func (p policy) match(urlPath string) *rule {
	base := urlPath[strings.LastIndexByte(urlPath, '/')+1:]
	for i := range p {
		name := urlPath
		if p[i].base {
			name = base
		}
		if ok, _ := path.Match(p[i].glob, name); ok {
			return &p[i]
		}
	}
	return nil
}

// apply sets the matching rule's headers on h. Handlers that have their own defaults only set
// Cache-Control when the policy did not.
func (p policy) apply(h http.Header, urlPath string, now time.Time) {
	r := p.match(urlPath)
	if r == nil {
		return
	}
	if r.cacheControl != nil {
		h["Cache-Control"] = r.cacheControl
	}
	if r.expires > 0 {
		h["Expires"] = []string{now.Add(r.expires).UTC().Format(http.TimeFormat)}
	}
}
