package cache

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// Explanation is the JSON document GET /cache/explain?url=<absolute URL> returns: the key the
// URL gets under its route's rules, the rules, and what storage holds for it.
type Explanation struct {
	URL string `json:"url"`
	// Key is the primary cache key (include_headers parts shown after spaces).
	Key string `json:"key"`
	// Rules are the [proxy.routes.cache_key] rules applied (all empty: the URL alone).
	Rules config.CacheKeyConfig `json:"rules"`
	// Stored reports a stored response for this key and the request fields given (header=).
	Stored bool `json:"stored"`
	// Variants counts the responses stored under the key (Vary variants).
	Variants int `json:"variants"`
	// Vary lists the field names the stored responses vary on.
	Vary []string `json:"vary,omitempty"`
	// Tier is "memory" or "disk" for a stored response.
	Tier string `json:"tier,omitempty"`
	// Status is the stored response's status code.
	Status int `json:"status,omitempty"`
	// Partial reports a stored 206 that does not hold the whole representation.
	Partial bool `json:"partial,omitempty"`
	// Fresh, AgeSeconds, LifetimeSeconds and TTLSeconds describe its freshness (RFC 9111 §4.2)
	// for a request without cache directives.
	Fresh           bool  `json:"fresh"`
	AgeSeconds      int64 `json:"age_seconds"`
	LifetimeSeconds int64 `json:"lifetime_seconds"`
	TTLSeconds      int64 `json:"ttl_seconds"`
}

// handleExplain answers GET /cache/explain?url=<absolute URL>[&header=Name: value ...]: the
// header parameters stand for the request's fields (include_headers, Vary selection).
func (c *Cache) handleExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	raw := q.Get("url")
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		http.Error(w, "want url=<absolute http(s) URL> (and header=Name: value, repeated, for the request's fields)", http.StatusBadRequest)
		return
	}
	hdr := http.Header{}
	for _, l := range q["header"] {
		k, v, ok := strings.Cut(l, ":")
		if !ok || !config.IsFieldName(strings.TrimSpace(k)) {
			http.Error(w, "header= wants \"Name: value\", got "+l, http.StatusBadRequest)
			return
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(c.explain(u, hdr))
}

// explain builds the Explanation of u for a request with fields hdr.
func (c *Cache) explain(u *url.URL, hdr http.Header) Explanation {
	kr := c.rulesForURL(u)
	key := string(kr.apply(appendKey(nil, u, ""), hdr))
	ex := Explanation{URL: u.String(), Key: displayKey(key), Rules: kr.Config()}
	h := primaryHash(key)
	c.st.mu.RLock()
	if rec := c.st.index[h]; rec != nil && rec.key == key {
		ex.Variants, ex.Vary = len(rec.items), rec.vary
	}
	c.st.mu.RUnlock()
	lr := c.st.lookup(h, key, hdr)
	if lr.e == nil {
		return ex
	}
	e, now := lr.e, c.now()
	ex.Stored, ex.Status, ex.Partial, ex.Tier = true, e.status, e.partial != nil, "disk"
	if e.body != nil {
		ex.Tier = "memory"
	}
	p := e.livePolicy() // with a soft purge's cut (softpurge.go)
	v, _ := decide(e.timing, p, &noDirectives, now)
	age := e.timing.currentAge(now)
	ex.Fresh = v == useFresh
	ex.AgeSeconds = int64(age / time.Second)
	ex.LifetimeSeconds = int64(p.lifetime / time.Second)
	ex.TTLSeconds = int64((p.lifetime - age) / time.Second)
	return ex
}
