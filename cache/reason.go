package cache

// Reason is why the cache did not store a response or did not serve a stored one. Each reason
// names the RFC section that requires it; its Token appears in the Cache-Status detail parameter
// (RFC 9211 §2.8) and so in the access log.
type Reason struct {
	// Token is the short name used in Cache-Status (detail=...).
	Token string
	// Section cites the rule, e.g. "RFC 9111 §5.2.2.5".
	Section string
}

// String returns the token and the section, for logs and test failures.
func (r Reason) String() string {
	if r.Token == "" {
		return "ok"
	}
	return r.Token + " (" + r.Section + ")"
}

// Reasons a response is not stored (RFC 9111 §3 and the directives it refers to).
var (
	NotStoredStatus         = Reason{"status", "RFC 9111 §3 (final status not understood or not cacheable)"}
	NotStoredInformational  = Reason{"status-1xx", "RFC 9110 §15.2 (interim responses are never stored)"}
	NotStoredRespNoStore    = Reason{"resp-no-store", "RFC 9111 §5.2.2.5"}
	NotStoredReqNoStore     = Reason{"req-no-store", "RFC 9111 §5.2.1.5"}
	NotStoredPrivate        = Reason{"private", "RFC 9111 §5.2.2.7 (shared cache)"}
	NotStoredAuthorization  = Reason{"authorization", "RFC 9111 §3.5"}
	NotStoredNoFreshness    = Reason{"no-freshness", "RFC 9111 §3 (no explicit or heuristic freshness, no validator)"}
	NotStoredVaryStar       = Reason{"vary-star", "RFC 9111 §4.1 (Vary: * never matches)"}
	NotStoredMustUnderstand = Reason{"must-understand", "RFC 9111 §5.2.2.3 (status not understood)"}
	NotStoredTooLarge       = Reason{"too-large", "cache.max_object_size / cache.disk_max_object_size"}
	NotStoredSetCookie      = Reason{"set-cookie", "RFC 9111 §7.3 (Set-Cookie without explicit cacheability)"}
	NotStoredIncomplete     = Reason{"incomplete", "RFC 9111 §3.3 (body cut short)"}
	NotStoredPartial        = Reason{"partial", "RFC 9111 §3.3 (partial response not combinable)"}
)

// Reasons a stored response is not served without contacting the origin (RFC 9111 §4).
var (
	ServeStale          = Reason{"stale", "RFC 9111 §4.2 (not fresh)"}
	ServeReqNoCache     = Reason{"req-no-cache", "RFC 9111 §5.2.1.4"}
	ServePragmaNoCache  = Reason{"pragma-no-cache", "RFC 9111 §5.4"}
	ServeRespNoCache    = Reason{"resp-no-cache", "RFC 9111 §5.2.2.4"}
	ServeReqMaxAge      = Reason{"req-max-age", "RFC 9111 §5.2.1.1"}
	ServeReqMinFresh    = Reason{"req-min-fresh", "RFC 9111 §5.2.1.3"}
	ServeMustRevalidate = Reason{"must-revalidate", "RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10"}
)
