package cache

import (
	"net/http"
	"strings"
	"time"
)

// This file holds the freshness rules of RFC 9111 §4.2 as pure functions: given stored
// metadata, request directives and the time, they return a decision and its reason. No I/O.

// timing is what RFC 9111 §4.2.3 needs to compute a stored response's age.
type timing struct {
	requestTime  time.Time     // when the cache sent the request that produced the response
	responseTime time.Time     // when the cache received the response
	initialAge   time.Duration // corrected_initial_age
}

// newTiming computes corrected_initial_age from the response's Date and Age fields
// (RFC 9111 §4.2.3).
func newTiming(h http.Header, requestTime, responseTime time.Time) timing {
	date := dateValue(h, responseTime)
	apparent := max(responseTime.Sub(date), 0)
	ageValue := time.Duration(0)
	if n, ok := ageField(h[hdrAge]); ok {
		ageValue = time.Duration(n) * time.Second
	}
	corrected := ageValue + max(responseTime.Sub(requestTime), 0)
	return timing{requestTime: requestTime, responseTime: responseTime, initialAge: max(apparent, corrected)}
}

// ageField reads Age (RFC 9111 §5.1): a singleton, but a list-based value (commas, or several
// field lines) counts by its first member, the others discarded; a first member that is not
// delta-seconds makes the field ignored (ok false), and so does a missing one. Empty list
// elements are not members (RFC 9110 §5.6.1).
func ageField(lines []string) (int64, bool) {
	for _, l := range lines {
		for m := range strings.SplitSeq(l, ",") {
			if m = strings.TrimSpace(m); m != "" {
				return parseDelta(m)
			}
		}
	}
	return 0, false
}

// currentAge is current_age at now (RFC 9111 §4.2.3).
func (t timing) currentAge(now time.Time) time.Duration {
	return t.initialAge + max(now.Sub(t.responseTime), 0)
}

// dateValue is the Date field, or the time of receipt when it is absent or invalid.
func dateValue(h http.Header, responseTime time.Time) time.Time {
	if d, err := parseHTTPDate(h.Get(hdrDate)); err == nil {
		return d
	}
	return responseTime
}

// heuristics are the configured heuristic freshness parameters (RFC 9111 §4.2.2).
type heuristics struct {
	fraction float64
	max      time.Duration
}

// heuristicallyCacheable lists the statuses RFC 9110 §15.1 defines as heuristically cacheable.
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// explicitFreshness reports whether the response carries explicit expiry (RFC 9111 §4.2.1).
func explicitFreshness(h http.Header, d *respDirectives) bool {
	return d.sMaxAge >= 0 || d.maxAge >= 0 || len(h[hdrExpires]) > 0
}

// freshnessLifetime is the response's freshness lifetime for a shared cache (RFC 9111 §4.2.1):
// s-maxage, then max-age, then Expires minus Date, then a heuristic (§4.2.2) when the status is
// heuristically cacheable or the response is public. heuristic reports the last case.
func freshnessLifetime(status int, h http.Header, d *respDirectives, responseTime time.Time, hp heuristics) (lifetime time.Duration, heuristic bool) {
	switch {
	case d.sMaxAge >= 0:
		return time.Duration(d.sMaxAge) * time.Second, false
	case d.maxAge >= 0:
		return time.Duration(d.maxAge) * time.Second, false
	case len(h[hdrExpires]) > 0:
		if len(h[hdrExpires]) > 1 {
			return 0, false // conflicting Expires lines: treat as stale (§4.2.1)
		}
		exp, err := parseHTTPDate(h.Get(hdrExpires))
		if err != nil {
			return 0, false // invalid Expires means already expired (§5.3)
		}
		return max(exp.Sub(dateValue(h, responseTime)), 0), false
	}
	if !heuristicallyCacheable(status) && !d.public {
		return 0, false
	}
	lm, err := parseHTTPDate(h.Get(hdrLastModified))
	if err != nil {
		return 0, true
	}
	since := dateValue(h, responseTime).Sub(lm)
	if since <= 0 {
		return 0, true
	}
	return min(time.Duration(float64(since)*hp.fraction), hp.max), true
}

// verdict is what may be done with a stored response for one request.
type verdict int

const (
	useFresh           verdict = iota // serve it: fresh and acceptable to the request
	useStale                          // serve it stale: the request allows it (max-stale)
	useStaleRevalidate                // serve it stale and refresh in the background (RFC 5861)
	mustValidate                      // ask the origin first
)

// policy is the serving policy fixed when a response is stored.
type policy struct {
	lifetime   time.Duration
	noCache    bool          // unqualified no-cache: validate every time (§5.2.2.4)
	revalidate bool          // must-revalidate, proxy-revalidate or s-maxage: never serve stale
	swr        time.Duration // stale-while-revalidate window, -1 when absent
	sie        time.Duration // stale-if-error window, -1 when absent
}

// newPolicy derives the serving policy from the response's directives.
func newPolicy(d *respDirectives, lifetime time.Duration) policy {
	return policy{
		lifetime:   lifetime,
		noCache:    d.noCache,
		revalidate: d.mustRevalidate || d.proxyRevalidate || d.sMaxAge >= 0,
		swr:        seconds(d.staleWhileRevalidate),
		sie:        seconds(d.staleIfError),
	}
}

// seconds converts a directive value (-1 = absent) into a duration (-1 = absent).
func seconds(n int64) time.Duration {
	if n < 0 {
		return -1
	}
	return time.Duration(n) * time.Second
}

// decide says whether a stored response may satisfy a request at now (RFC 9111 §4, §4.2.4,
// §5.2.1, RFC 5861 §3).
func decide(t timing, p policy, rq *reqDirectives, now time.Time) (verdict, Reason) {
	switch {
	case rq.noCache:
		return mustValidate, ServeReqNoCache
	case rq.pragmaNoCache:
		return mustValidate, ServePragmaNoCache
	case p.noCache:
		return mustValidate, ServeRespNoCache
	}
	age := t.currentAge(now)
	if rq.maxAge >= 0 && age > time.Duration(rq.maxAge)*time.Second {
		return mustValidate, ServeReqMaxAge
	}
	if rq.minFresh >= 0 && p.lifetime-age < time.Duration(rq.minFresh)*time.Second {
		return mustValidate, ServeReqMinFresh
	}
	if age < p.lifetime {
		return useFresh, Reason{}
	}
	staleness := age - p.lifetime
	switch {
	case p.revalidate:
		return mustValidate, ServeMustRevalidate
	case rq.maxStale >= 0 && staleness <= time.Duration(rq.maxStale)*time.Second:
		return useStale, ServeStale
	case p.swr >= 0 && staleness <= p.swr:
		return useStaleRevalidate, ServeStale
	}
	return mustValidate, ServeStale
}

// staleOnErrorAllowed says whether a stale response may be served because the origin failed
// (RFC 5861 §4, RFC 9111 §4.2.4). configured is the operator's window for this kind of failure
// (-1 when the switch is off); a stale-if-error in the request or the response replaces it.
func staleOnErrorAllowed(t timing, p policy, rq *reqDirectives, now time.Time, configured time.Duration) bool {
	if p.noCache || p.revalidate {
		return false
	}
	staleness := max(t.currentAge(now)-p.lifetime, 0)
	// An explicit stale-if-error is the window: the client's first, then the origin's; the
	// operator's switch only applies when neither gave one.
	switch {
	case rq.staleIfError >= 0:
		return staleness <= time.Duration(rq.staleIfError)*time.Second
	case p.sie >= 0:
		return staleness <= p.sie
	}
	return configured >= 0 && staleness <= configured
}

// understoodStatus lists the final statuses whose semantics Outpost implements (RFC 9110 §15),
// for must-understand (RFC 9111 §5.2.2.3).
func understoodStatus(status int) bool {
	switch {
	case status >= 200 && status <= 206, status >= 300 && status <= 308 && status != 306,
		status >= 400 && status <= 417, status >= 421 && status <= 422, status == 426,
		status >= 500 && status <= 505:
		return true
	}
	return false
}

// storable says whether a shared cache may store a response to a GET (RFC 9111 §3). A zero
// Reason means it may. hasAuth reports an Authorization field in the request.
func storable(status int, h http.Header, d *respDirectives, rq *reqDirectives, hasAuth bool) Reason {
	switch {
	case status < 200:
		return NotStoredInformational
	case rq.noStore:
		return NotStoredReqNoStore
	case d.mustUnderstand && !understoodStatus(status):
		return NotStoredMustUnderstand
	case d.noStore && !(d.mustUnderstand && understoodStatus(status)):
		return NotStoredRespNoStore
	case status == 304 || status == 206:
		return NotStoredStatus
	case d.private:
		return NotStoredPrivate
	case hasAuth && !d.public && !d.mustRevalidate && d.sMaxAge < 0:
		return NotStoredAuthorization
	case varyStar(h):
		return NotStoredVaryStar
	case !d.public && !explicitFreshness(h, d) && !heuristicallyCacheable(status):
		return NotStoredNoFreshness
	case len(h[hdrSetCookie]) > 0 && !d.public && !explicitFreshness(h, d):
		return NotStoredSetCookie
	}
	return Reason{}
}
