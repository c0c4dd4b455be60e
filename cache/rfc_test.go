package cache

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// step is one request of an RFC case and what must be true after it.
type step struct {
	adv    time.Duration // advance the clock first
	method string        // default GET
	path   string        // default /r
	hdr    []string      // request fields "Name: value"
	remote string        // RemoteAddr override

	status int    // expected status (0: 200)
	origin int    // expected cumulative origin requests
	cs     string // substring expected in Cache-Status ("" to skip)
	body   *string
	code   string // expected Outcome.Code ("" to skip)
	retry  bool   // the origin hangs up: a front end may retry the idempotent request once
	check  func(t *testing.T, d Driver, res Response)
}

// rfcCase is one named rule, its origin script and its requests.
type rfcCase struct {
	name   string
	origin func(w http.ResponseWriter, r *http.Request, n int)
	cfg    func(*config.CacheConfig)
	steps  []step
	// wire makes the seam harness fetch with proxy/wire, as the proxy's client does, for
	// origins net/http's Transport cannot read (transfer codings before chunked).
	wire bool
}

func str(s string) *string { return &s }

// run plays a case's steps against a fresh harness.
func (tc rfcCase) run(t *testing.T) {
	tc.runWith(t, func(t *testing.T, origin func(http.ResponseWriter, *http.Request, int), mod func(*config.CacheConfig)) Driver {
		h := newHarness(t, origin, mod)
		h.wire = tc.wire
		return harnessDriver{h}
	})
}

// runWith plays a case's steps against a driver (the seam harness, or the real proxy).
func (tc rfcCase) runWith(t *testing.T, newDriver DriverFactory) {
	d := newDriver(t, tc.origin, tc.cfg)
	for i, s := range tc.steps {
		d.Advance(s.adv)
		m, p := s.method, s.path
		if m == "" {
			m = http.MethodGet
		}
		if p == "" {
			p = "/r"
		}
		var res Response
		if s.remote != "" {
			hd, ok := d.(harnessDriver)
			if !ok {
				t.Skip("the remaining steps need another client address than 127.0.0.1")
			}
			res = hd.doFrom(s.remote, m, p, s.hdr...)
		} else {
			res = d.Do(m, p, s.hdr...)
		}
		want := s.status
		if want == 0 {
			want = 200
		}
		cs := strings.Join(res.Header.Values("Cache-Status"), ", ")
		if res.Status != want {
			t.Errorf("step %d (%s %s): status %d, want %d (Cache-Status %q)", i, m, p, res.Status, want, cs)
		}
		if got := d.OriginCount(); got != s.origin && !(s.retry && got == s.origin+1) {
			t.Errorf("step %d (%s %s): origin saw %d requests, want %d (Cache-Status %q)", i, m, p, got, s.origin, cs)
		}
		if s.cs != "" && !strings.Contains(cs, s.cs) {
			t.Errorf("step %d (%s %s): Cache-Status %q, want it to contain %q", i, m, p, cs, s.cs)
		}
		if s.body != nil && res.Body != *s.body {
			t.Errorf("step %d (%s %s): body %q, want %q", i, m, p, res.Body, *s.body)
		}
		if s.code != "" && res.Code != "" && res.Code != s.code {
			t.Errorf("step %d (%s %s): outcome %s, want %s", i, m, p, res.Code, s.code)
		}
		if s.check != nil {
			s.check(t, d, res)
		}
	}
}

// harnessDriver drives the seam harness.
type harnessDriver struct{ h *harness }

func (d harnessDriver) Do(method, path string, hdr ...string) Response {
	return d.doFrom("", method, path, hdr...)
}

func (d harnessDriver) doFrom(remote, method, path string, hdr ...string) Response {
	old := d.h.remote
	if remote != "" {
		d.h.remote = remote
	}
	defer func() { d.h.remote = old }()
	r := d.h.do(method, path, hdr...)
	return Response{Status: r.status, Header: r.header, Body: r.body, Code: r.out.Code.String()}
}

func (d harnessDriver) Advance(dur time.Duration) { d.h.clk.Advance(dur) }
func (d harnessDriver) OriginCount() int          { return d.h.originCount() }
func (d harnessDriver) LastSeen() http.Header     { return d.h.lastSeen().header }

// etagOrigin answers 304 to a matching If-None-Match, else 200 with fields and body.
func etagOrigin(etag, body string, fields ...string) func(http.ResponseWriter, *http.Request, int) {
	full := reply(200, body, append([]string{"ETag: " + etag}, fields...)...)
	return func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("If-None-Match") == etag {
			for _, l := range fields {
				k, v, _ := strings.Cut(l, ":")
				w.Header().Set(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			w.Header().Set("ETag", etag)
			w.WriteHeader(304)
			return
		}
		full(w, r, n)
	}
}

// sequence answers the n-th request with handlers[n-1] (the last one repeats).
func sequence(handlers ...func(http.ResponseWriter, *http.Request, int)) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		handlers[min(n, len(handlers))-1](w, r, n)
	}
}

// hasField checks a response field's value.
func hasField(name, want string) func(*testing.T, Driver, Response) {
	return func(t *testing.T, _ Driver, res Response) {
		t.Helper()
		if got := res.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

// originSaw checks a field of the origin's last request.
func originSaw(name, want string) func(*testing.T, Driver, Response) {
	return func(t *testing.T, d Driver, _ Response) {
		t.Helper()
		if got := d.LastSeen().Get(name); got != want {
			t.Errorf("origin saw %s = %q, want %q", name, got, want)
		}
	}
}

// lastModified is a Last-Modified value d before the harness clock's start.
func ago(h time.Duration) string {
	return time.Now().UTC().Truncate(time.Second).Add(-h).Format(http.TimeFormat)
}

// cutShort sends a header promising 100 bytes, 10 of them, and closes the connection.
func cutShort(w http.ResponseWriter, _ *http.Request, _ int) {
	w.Header().Set("Cache-Control", "max-age=60")
	w.Header().Set("Content-Length", "100")
	w.WriteHeader(200)
	_, _ = io.WriteString(w, "0123456789")
	if conn, bw, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = bw.Flush()
		conn.Close()
	}
}

// hangUp closes the origin connection without a response.
func hangUp(w http.ResponseWriter, _ *http.Request, _ int) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// rangeOrigin serves "0123456789" with a strong ETag, honouring Range and If-Range.
func rangeOrigin(w http.ResponseWriter, r *http.Request, _ int) {
	w.Header().Set("Cache-Control", "max-age=60")
	w.Header().Set("ETag", `"rng"`)
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader("0123456789"))
}

func TestRFC9111(t *testing.T) {
	for _, tc := range rfcCases() {
		t.Run(tc.name, tc.run)
	}
}

// rfcCases is the RFC table: each case names the rule it checks.
func rfcCases() []rfcCase {
	ok200 := reply(200, "hello", "Cache-Control: max-age=60")
	inFuture := func(d time.Duration) string {
		return time.Now().UTC().Truncate(time.Second).Add(d).Format(http.TimeFormat)
	}
	cases := []rfcCase{
		{name: "RFC 9111 §4.2.1 second GET within max-age is a hit with Age", origin: ok200, steps: []step{
			{origin: 1, cs: "fwd=uri-miss", code: "TCP_MISS", body: str("hello")},
			{adv: 10 * time.Second, origin: 1, cs: "outpost; hit", code: "TCP_MEM_HIT", body: str("hello"), check: hasField("Age", "10")},
		}},
		{name: "RFC 9111 §4.2.1 past max-age the stored response is revalidated (§4.3.1 If-None-Match)",
			origin: etagOrigin(`"v1"`, "hello", "Cache-Control: max-age=60"), steps: []step{
				{origin: 1},
				{adv: 61 * time.Second, origin: 2, cs: "fwd=stale; fwd-status=304", code: "TCP_REFRESH_HIT", body: str("hello"), check: originSaw("If-None-Match", `"v1"`)},
				{adv: time.Second, origin: 2, cs: "hit"},
			}},
		{name: "RFC 9111 §4.3.1 revalidation sends If-Modified-Since from Last-Modified", origin: sequence(
			reply(200, "a", "Cache-Control: max-age=1", "Last-Modified: "+ago(time.Hour)),
			reply(304, "", "Cache-Control: max-age=1")), steps: []step{
			{origin: 1},
			{adv: 2 * time.Second, origin: 2, body: str("a"), code: "TCP_REFRESH_HIT", check: originSaw("If-Modified-Since", ago(time.Hour))},
		}},
		{name: "RFC 9111 §4.2.1 s-maxage overrides max-age in a shared cache",
			origin: reply(200, "x", "Cache-Control: max-age=1, s-maxage=60"), steps: []step{
				{origin: 1}, {adv: 30 * time.Second, origin: 1, cs: "hit"},
			}},
		{name: "RFC 9111 §4.2.1 Expires minus Date", origin: reply(200, "x", "Expires: "+inFuture(60*time.Second)), steps: []step{
			{origin: 1}, {adv: 30 * time.Second, origin: 1, cs: "hit"}, {adv: 31 * time.Second, origin: 2},
		}},
		{name: "RFC 9111 §5.3 an invalid Expires means already expired", origin: reply(200, "x", "Expires: 0", "ETag: \"e\""), steps: []step{
			{origin: 1}, {origin: 2},
		}},
		{name: "RFC 9111 §4.2.1 max-age wins over Expires", origin: reply(200, "x", "Cache-Control: max-age=60", "Expires: 0"), steps: []step{
			{origin: 1}, {adv: 30 * time.Second, origin: 1, cs: "hit"},
		}},
		{name: "RFC 9111 §4.2.2 heuristic freshness is 10% of the time since Last-Modified",
			origin: reply(200, "x", "Last-Modified: "+ago(100*time.Second)), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 1, cs: "hit"}, {adv: 6 * time.Second, origin: 2},
			}},
		{name: "RFC 9111 §4.2.2 heuristic freshness is capped by cache.heuristic_max",
			cfg:    func(c *config.CacheConfig) { c.HeuristicMax = 2 * time.Second },
			origin: reply(200, "x", "Last-Modified: "+ago(1000*time.Hour)), steps: []step{
				{origin: 1}, {adv: time.Second, origin: 1, cs: "hit"}, {adv: 2 * time.Second, origin: 2},
			}},
		{name: "RFC 9111 §3 a 302 without explicit freshness is not stored (not heuristically cacheable)",
			origin: reply(302, "", "Location: /x", "Last-Modified: "+ago(time.Hour)), steps: []step{
				{status: 302, origin: 1, cs: "detail=no-freshness"}, {status: 302, origin: 2},
			}},
		{name: "RFC 9111 §3 an unusual status 299 is stored when explicitly fresh",
			origin: reply(299, "x", "Cache-Control: max-age=60"), steps: []step{
				{status: 299, origin: 1}, {status: 299, origin: 1, cs: "hit"},
			}},
		{name: "RFC 9111 §3 an unusual status 599 is stored when explicitly fresh",
			origin: reply(599, "x", "Cache-Control: max-age=60"), steps: []step{
				{status: 599, origin: 1}, {status: 599, origin: 1, cs: "hit", code: "TCP_NEGATIVE_HIT"},
			}},
		{name: "RFC 9110 §15.1 404 is heuristically cacheable",
			origin: reply(404, "nope", "Last-Modified: "+ago(time.Hour)), steps: []step{
				{status: 404, origin: 1}, {status: 404, origin: 1, code: "TCP_NEGATIVE_HIT", body: str("nope")},
			}},
		{name: "RFC 9111 §5.2.2.3 must-understand with a known status is stored despite no-store",
			origin: reply(200, "x", "Cache-Control: must-understand, no-store, max-age=60"), steps: []step{
				{origin: 1}, {origin: 1, cs: "hit"},
			}},
		{name: "RFC 9111 §5.2.2.3 must-understand with an unknown status is not stored",
			origin: reply(299, "x", "Cache-Control: must-understand, no-store, max-age=60"), steps: []step{
				{status: 299, origin: 1, cs: "detail=must-understand"}, {status: 299, origin: 2},
			}},
		{name: "RFC 9111 §4.2.3 the Age a response arrives with counts towards its age",
			origin: reply(200, "x", "Cache-Control: max-age=60", "Age: 50"), steps: []step{
				{origin: 1, check: hasField("Age", "50")},
				{adv: 5 * time.Second, origin: 1, check: hasField("Age", "55")},
				{adv: 6 * time.Second, origin: 2},
			}},
		{name: "RFC 9111 §5.2.2.5 no-store is not stored", origin: reply(200, "x", "Cache-Control: no-store, max-age=60"), steps: []step{
			{origin: 1, cs: "detail=resp-no-store"}, {origin: 2},
		}},
		{name: "RFC 9111 §5.2.2.4 no-cache is stored but validated on every use",
			origin: etagOrigin(`"n"`, "body", "Cache-Control: no-cache"), steps: []step{
				{origin: 1}, {origin: 2, cs: "fwd=stale; detail=resp-no-cache; fwd-status=304", body: str("body")}, {origin: 3, body: str("body")},
			}},
		{name: "RFC 9111 §5.2.2.4 qualified no-cache: the named field is not served from storage",
			origin: reply(200, "x", "Cache-Control: max-age=60, no-cache=\"X-Secret\"", "X-Secret: s", "X-Open: o"), steps: []step{
				{origin: 1}, {origin: 1, cs: "hit", check: func(t *testing.T, _ Driver, res Response) {
					if res.Header.Get("X-Secret") != "" || res.Header.Get("X-Open") != "o" {
						t.Errorf("fields: %v", res.Header)
					}
				}},
			}},
		{name: "RFC 9111 §5.2.2.7 private is not stored by a shared cache", origin: reply(200, "x", "Cache-Control: private, max-age=60"), steps: []step{
			{origin: 1, cs: "detail=private"}, {origin: 2},
		}},
		{name: "RFC 9111 §5.2.2.7 qualified private: the named field is not stored",
			origin: reply(200, "x", "Cache-Control: max-age=60, private=\"X-User\"", "X-User: bob"), steps: []step{
				{origin: 1}, {origin: 1, cs: "hit", check: hasField("X-User", "")},
			}},
		{name: "RFC 9111 §3.5 a response to a request with Authorization is not stored without public/s-maxage/must-revalidate",
			origin: ok200, steps: []step{
				{hdr: []string{"Authorization: Basic dTpw"}, origin: 1, cs: "detail=authorization"}, {origin: 2},
			}},
		{name: "RFC 9111 §3.5 Authorization and public: stored", origin: reply(200, "x", "Cache-Control: public, max-age=60"), steps: []step{
			{hdr: []string{"Authorization: Basic dTpw"}, origin: 1}, {origin: 1, cs: "hit"},
		}},
		{name: "RFC 9111 §3.5 Authorization and s-maxage: stored", origin: reply(200, "x", "Cache-Control: s-maxage=60"), steps: []step{
			{hdr: []string{"Authorization: Basic dTpw"}, origin: 1}, {origin: 1, cs: "hit"},
		}},
		{name: "RFC 9111 §5.2.2.9 public makes a heuristically non-cacheable status storable",
			origin: reply(302, "", "Cache-Control: public", "Location: /x", "Last-Modified: "+ago(time.Hour)), steps: []step{
				{status: 302, origin: 1}, {status: 302, origin: 1, cs: "hit"},
			}},
		{name: "RFC 9111 §5.2.1.2 max-stale lets a stale response be served",
			origin: reply(200, "x", "Cache-Control: max-age=1"), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, hdr: []string{"Cache-Control: max-stale=10"}, origin: 1, code: "TCP_STALE_HIT"},
				{hdr: []string{"Cache-Control: max-stale=2"}, origin: 2},
			}},
		{name: "RFC 9111 §5.2.2.2 must-revalidate: never served stale, even with max-stale",
			origin: reply(200, "x", "Cache-Control: max-age=1, must-revalidate"), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, hdr: []string{"Cache-Control: max-stale"}, origin: 2},
			}},
		{name: "RFC 9111 §5.2.2.8 proxy-revalidate: never served stale by a shared cache",
			origin: reply(200, "x", "Cache-Control: max-age=1, proxy-revalidate"), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, hdr: []string{"Cache-Control: max-stale"}, origin: 2},
			}},
		{name: "RFC 9111 §5.2.1.1 request max-age=0 makes the cache validate", origin: etagOrigin(`"m"`, "x", "Cache-Control: max-age=60"), steps: []step{
			{origin: 1}, {adv: time.Second, hdr: []string{"Cache-Control: max-age=0"}, origin: 2, cs: "fwd=request"},
			{adv: time.Second, hdr: []string{"Cache-Control: max-age=30"}, origin: 2, cs: "hit"},
		}},
		{name: "RFC 9111 §5.2.1.3 min-fresh", origin: ok200, steps: []step{
			{origin: 1}, {adv: 30 * time.Second, hdr: []string{"Cache-Control: min-fresh=20"}, origin: 1, cs: "hit"},
			{hdr: []string{"Cache-Control: min-fresh=40"}, origin: 2},
		}},
		{name: "RFC 9111 §5.2.1.4 request no-cache goes to the origin", origin: ok200, steps: []step{
			{origin: 1}, {hdr: []string{"Cache-Control: no-cache"}, origin: 2, cs: "fwd=request; detail=req-no-cache", code: "TCP_CLIENT_REFRESH_MISS"},
		}},
		{name: "RFC 9111 §5.4 Pragma: no-cache from an HTTP/1.0 client goes to the origin", origin: ok200, steps: []step{
			{origin: 1}, {hdr: []string{"Pragma: no-cache"}, origin: 2},
		}},
		{name: "RFC 9111 §5.4 Pragma is ignored when Cache-Control is present", origin: ok200, steps: []step{
			{origin: 1}, {hdr: []string{"Pragma: no-cache", "Cache-Control: max-age=100"}, origin: 1, cs: "hit"},
		}},
		{name: "RFC 9111 §5.2.1.5 request no-store: the response is not stored", origin: ok200, steps: []step{
			{hdr: []string{"Cache-Control: no-store"}, origin: 1, cs: "detail=req-no-store"}, {origin: 2}, {origin: 2, cs: "hit"},
		}},
		{name: "RFC 9111 §5.2.1.7 only-if-cached: 504 when nothing is stored, the stored response otherwise", origin: ok200, steps: []step{
			{hdr: []string{"Cache-Control: only-if-cached"}, status: 504, origin: 0},
			{origin: 1}, {hdr: []string{"Cache-Control: only-if-cached"}, origin: 1, cs: "hit"},
			{adv: time.Hour, hdr: []string{"Cache-Control: only-if-cached"}, status: 504, origin: 1},
		}},
		{name: "RFC 9111 §4.1 Vary: each variant stored and selected by the request's field",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				reply(200, "lang="+r.Header.Get("Accept-Language"), "Cache-Control: max-age=60", "Vary: Accept-Language")(w, r, n)
			}, steps: []step{
				{hdr: []string{"Accept-Language: en"}, origin: 1, body: str("lang=en")},
				{hdr: []string{"Accept-Language: fr"}, origin: 2, body: str("lang=fr"), cs: "fwd=vary-miss"},
				{hdr: []string{"Accept-Language: en"}, origin: 2, body: str("lang=en"), cs: "hit"},
				{hdr: []string{"Accept-Language:  fr"}, origin: 2, body: str("lang=fr"), cs: "hit"},
				{origin: 3, body: str("lang=")},
				{origin: 3, body: str("lang="), cs: "hit"},
			}},
		{name: "RFC 9111 §4.1 Vary: * is never served from storage",
			origin: reply(200, "x", "Cache-Control: max-age=60", "Vary: *"), steps: []step{
				{origin: 1, cs: "detail=vary-star"}, {origin: 2},
			}},
		{name: "RFC 9110 §13.1.2 a client's If-None-Match is answered 304 from storage",
			origin: reply(200, "x", "Cache-Control: max-age=60", `ETag: "t"`, "Expires: "+inFuture(time.Minute), "Vary: Accept"), steps: []step{
				{origin: 1},
				{hdr: []string{`If-None-Match: W/"t", "u"`}, status: 304, origin: 1, body: str(""), code: "TCP_IMS_HIT", check: func(t *testing.T, _ Driver, res Response) {
					for _, f := range []string{"Etag", "Cache-Control", "Expires", "Date", "Vary", "Age", "Cache-Status"} {
						if res.Header.Get(f) == "" {
							t.Errorf("304 lacks %s: %v", f, res.Header)
						}
					}
				}},
				{hdr: []string{`If-None-Match: "other"`}, origin: 1, body: str("x")},
			}},
		{name: "RFC 9110 §13.1.3 a client's If-Modified-Since is answered 304 from storage",
			origin: reply(200, "x", "Cache-Control: max-age=60", "Last-Modified: "+ago(time.Hour)), steps: []step{
				{origin: 1},
				{hdr: []string{"If-Modified-Since: " + ago(time.Minute)}, status: 304, origin: 1},
				{hdr: []string{"If-Modified-Since: " + ago(2*time.Hour)}, origin: 1, body: str("x")},
			}},
		{name: "RFC 9110 §13.2.2 If-None-Match takes precedence over If-Modified-Since",
			origin: reply(200, "x", "Cache-Control: max-age=60", `ETag: "t"`, "Last-Modified: "+ago(time.Hour)), steps: []step{
				{origin: 1},
				{hdr: []string{`If-None-Match: "zzz"`, "If-Modified-Since: " + ago(time.Minute)}, origin: 1, body: str("x")},
			}},
		{name: "RFC 9110 §13.1.1 a failed If-Match gets 412 from storage",
			origin: reply(200, "x", "Cache-Control: max-age=60", `ETag: "t"`), steps: []step{
				{origin: 1}, {hdr: []string{`If-Match: "zzz"`}, status: 412, origin: 1}, {hdr: []string{`If-Match: "t"`}, origin: 1},
			}},
		{name: "RFC 9110 §13.1.2 a conditional miss is fetched in full, stored and answered 304",
			origin: reply(200, "x", "Cache-Control: max-age=60", `ETag: "t"`), steps: []step{
				{hdr: []string{`If-None-Match: "t"`}, status: 304, origin: 1, check: originSaw("If-None-Match", "")},
				{origin: 1, cs: "hit", body: str("x")},
			}},
		{name: "RFC 9110 §13.1.2 a client's conditional request for an unstorable response still gets 304",
			origin: reply(200, "x", "Cache-Control: private", `ETag: "p"`), steps: []step{
				{hdr: []string{`If-None-Match: "p"`}, status: 304, origin: 1, body: str("")},
				{hdr: []string{`If-None-Match: "q"`}, origin: 2, body: str("x")},
			}},
		{name: "RFC 9111 §4.3.4 a 304 updates the stored header fields",
			origin: sequence(reply(200, "x", "Cache-Control: max-age=1", `ETag: "t"`, "X-V: 1"),
				reply(304, "", "Cache-Control: max-age=100", `ETag: "t"`, "X-V: 2", "Content-Length: 999")), steps: []step{
				{origin: 1}, {adv: 2 * time.Second, origin: 2, body: str("x"), check: hasField("X-V", "2")},
				{adv: 50 * time.Second, origin: 2, cs: "hit", body: str("x"), check: hasField("Content-Length", "1")},
			}},
		{name: "RFC 9111 §4.3.4 a 304 for another ETag does not update the stored response",
			origin: sequence(reply(200, "old", "Cache-Control: max-age=1", `ETag: "1"`), reply(304, "", `ETag: "2"`), reply(200, "new", "Cache-Control: max-age=60", `ETag: "2"`)), steps: []step{
				{origin: 1}, {adv: 2 * time.Second, origin: 3, body: str("new")}, {origin: 3, body: str("new"), cs: "hit"},
			}},
		{name: "RFC 9111 §4.3.3 a 200 on revalidation replaces the stored response",
			origin: sequence(reply(200, "old", "Cache-Control: max-age=1", `ETag: "1"`), reply(200, "new", "Cache-Control: max-age=60", `ETag: "2"`)), steps: []step{
				{origin: 1}, {adv: 2 * time.Second, origin: 2, body: str("new"), code: "TCP_REFRESH_MISS", cs: "fwd-status=200; stored"},
				{origin: 2, body: str("new"), cs: "hit"},
			}},
		{name: "RFC 9111 §4.3.5 HEAD is answered from a stored GET", origin: ok200, steps: []step{
			{origin: 1}, {method: "HEAD", origin: 1, cs: "hit", body: str(""), check: hasField("Content-Length", "5")},
		}},
		{name: "RFC 9111 §3 a HEAD miss is forwarded and not stored", origin: ok200, steps: []step{
			{method: "HEAD", origin: 1}, {origin: 2}, {method: "HEAD", origin: 2, cs: "hit"},
		}},
		{name: "RFC 9111 §4.3.5 a HEAD response freshens the stored GET response",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == "HEAD" {
					reply(200, "", "Cache-Control: max-age=100", `ETag: "h"`, "X-Head: new")(w, r, n)
					return
				}
				reply(200, "body", "Cache-Control: max-age=1", `ETag: "h"`, "X-Head: old")(w, r, n)
			}, steps: []step{
				{origin: 1}, {adv: 5 * time.Second, method: "HEAD", origin: 2},
				{origin: 2, cs: "hit", body: str("body"), check: hasField("X-Head", "new")},
			}},
		{name: "RFC 9111 §4.3.5 a HEAD response for another representation removes the stored one",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == "HEAD" {
					reply(200, "", "Cache-Control: max-age=100", `ETag: "other"`)(w, r, n)
					return
				}
				reply(200, "body", "Cache-Control: max-age=1", `ETag: "h"`)(w, r, n)
			}, steps: []step{
				{origin: 1}, {adv: 5 * time.Second, method: "HEAD", origin: 2}, {origin: 3},
			}},
		{name: "RFC 9111 §4.4 a successful POST invalidates the target URI", origin: ok200, steps: []step{
			{origin: 1}, {origin: 1, cs: "hit"}, {method: "POST", origin: 2, cs: "fwd=method"}, {origin: 3},
		}},
		{name: "RFC 9111 §4.4 PUT invalidates the same-origin Location and Content-Location",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == "PUT" {
					reply(201, "", "Location: /a", "Content-Location: http://origin.test/b")(w, r, n)
					return
				}
				ok200(w, r, n)
			}, steps: []step{
				{path: "/a", origin: 1}, {path: "/b", origin: 2}, {path: "/a", origin: 2, cs: "hit"},
				{method: "PUT", status: 201, origin: 3}, {path: "/a", origin: 4}, {path: "/b", origin: 5},
			}},
		{name: "RFC 9111 §4.4 an error response does not invalidate",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == "DELETE" {
					reply(500, "")(w, r, n)
					return
				}
				ok200(w, r, n)
			}, steps: []step{
				{origin: 1}, {method: "DELETE", status: 500, origin: 2}, {origin: 2, cs: "hit"},
			}},
		{name: "RFC 9111 §4.4 an unknown method invalidates", origin: ok200, steps: []step{
			{origin: 1}, {method: "FROB", origin: 2}, {origin: 3},
		}},
		{name: "RFC 9110 §9.3.3 a fresh POST response with its own Content-Location serves later GETs",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == "POST" {
					reply(200, "posted", "Cache-Control: max-age=60", "Content-Location: /r")(w, r, n)
					return
				}
				reply(200, "got", "Cache-Control: max-age=60")(w, r, n)
			}, steps: []step{
				{method: "POST", origin: 1, body: str("posted")}, {origin: 1, body: str("posted"), cs: "hit"},
			}},
		{name: "RFC 9213 §2.2 CDN-Cache-Control takes precedence over Cache-Control and is removed when strip_cdn_cache_control is on",
			cfg:    func(c *config.CacheConfig) { c.StripCDNCacheControl = true },
			origin: reply(200, "x", "Cache-Control: no-store", "CDN-Cache-Control: max-age=60"), steps: []step{
				{origin: 1, check: hasField("Cdn-Cache-Control", "")}, {origin: 1, cs: "hit", check: hasField("Cache-Control", "no-store")},
			}},
		{name: "RFC 9213 §3 CDN-Cache-Control is forwarded by default (strip_cdn_cache_control off)",
			origin: reply(200, "x", "CDN-Cache-Control: max-age=60"), steps: []step{
				{origin: 1, check: hasField("Cdn-Cache-Control", "max-age=60")}, {origin: 1, cs: "hit", check: hasField("Cdn-Cache-Control", "max-age=60")},
			}},
		{name: "RFC 9213 Outpost-Cache-Control takes precedence over CDN-Cache-Control",
			origin: reply(200, "x", "Cache-Control: max-age=60", "CDN-Cache-Control: max-age=60", "Outpost-Cache-Control: no-store"), steps: []step{
				{origin: 1, check: hasField("Outpost-Cache-Control", "")}, {origin: 2},
			}},
		{name: "RFC 9110 §14.2 a Range request is answered 206 from a stored full response",
			origin: reply(200, "0123456789", "Cache-Control: max-age=60", `ETag: "r"`, "Content-Type: text/plain"), steps: []step{
				{origin: 1},
				{hdr: []string{"Range: bytes=2-4"}, status: 206, origin: 1, body: str("234"), check: hasField("Content-Range", "bytes 2-4/10")},
				{hdr: []string{"Range: bytes=-3"}, status: 206, origin: 1, body: str("789")},
				{hdr: []string{"Range: bytes=20-"}, status: 416, origin: 1, check: hasField("Content-Range", "bytes */10")},
				{hdr: []string{"Range: bytes=0-0", `If-Range: "other"`}, origin: 1, body: str("0123456789")},
				{hdr: []string{"Range: bytes=0-0", `If-Range: "r"`}, status: 206, origin: 1, body: str("0")},
				{hdr: []string{"Range: bytes=0-1,5-6"}, status: 206, origin: 1, check: func(t *testing.T, _ Driver, res Response) {
					if !strings.HasPrefix(res.Header.Get("Content-Type"), "multipart/byteranges; boundary=") ||
						!strings.Contains(res.Body, "Content-Range: bytes 0-1/10\r\n") || !strings.Contains(res.Body, "\r\n\r\n01\r\n--") ||
						!strings.Contains(res.Body, "Content-Range: bytes 5-6/10\r\n") || !strings.Contains(res.Body, "\r\n\r\n56\r\n--") {
						t.Errorf("multipart: %v %q", res.Header, res.Body)
					}
				}},
			}},
		{name: "RFC 9110 §14.2 a Range miss is forwarded as is", origin: func(w http.ResponseWriter, r *http.Request, n int) {
			if r.Header.Get("Range") != "" {
				reply(206, "23", "Content-Range: bytes 2-3/10")(w, r, n)
				return
			}
			reply(200, "0123456789", "Cache-Control: max-age=60")(w, r, n)
		}, steps: []step{
			{hdr: []string{"Range: bytes=2-3"}, status: 206, origin: 1, body: str("23")},
		}},
		{name: "RFC 9111 §3.3 a 206 is stored and reused for a range it holds", origin: rangeOrigin, steps: []step{
			{hdr: []string{"Range: bytes=0-4"}, status: 206, origin: 1, body: str("01234"), cs: "stored"},
			{hdr: []string{"Range: bytes=1-3"}, status: 206, origin: 1, body: str("123"), cs: "hit", check: hasField("Content-Range", "bytes 1-3/10")},
			{hdr: []string{"Range: bytes=3-6"}, status: 206, origin: 2, body: str("3456"), cs: "fwd=partial"},
		}},
		{name: "RFC 9111 §3.4 two 206 responses are combined into a complete stored response", origin: rangeOrigin, steps: []step{
			{hdr: []string{"Range: bytes=0-4"}, status: 206, origin: 1},
			{hdr: []string{"Range: bytes=5-9"}, status: 206, origin: 2},
			{origin: 2, body: str("0123456789"), cs: "hit", code: "TCP_MEM_HIT"},
		}},
		{name: "RFC 9111 §3.4 an incomplete response is completed with a range request", origin: rangeOrigin, steps: []step{
			{hdr: []string{"Range: bytes=0-3"}, status: 206, origin: 1},
			{origin: 2, body: str("0123456789"), cs: "fwd=partial; fwd-status=206", check: func(t *testing.T, d Driver, _ Response) {
				if got := d.LastSeen().Get("Range"); got != "bytes=4-" || d.LastSeen().Get("If-Range") != `"rng"` {
					t.Errorf("origin saw Range %q If-Range %q", got, d.LastSeen().Get("If-Range"))
				}
			}},
			{origin: 2, body: str("0123456789"), cs: "hit"},
		}},
		{name: "RFC 9111 §3.4 a 206 with another validator replaces the held ranges", origin: sequence(
			reply(206, "012", "Cache-Control: max-age=60", `ETag: "a"`, "Content-Range: bytes 0-2/10"),
			reply(206, "789", "Cache-Control: max-age=60", `ETag: "b"`, "Content-Range: bytes 7-9/10")), steps: []step{
			{hdr: []string{"Range: bytes=0-2"}, status: 206, origin: 1},
			{hdr: []string{"Range: bytes=7-9"}, status: 206, origin: 2},
			{hdr: []string{"Range: bytes=7-8"}, status: 206, origin: 2, body: str("78")},
			{hdr: []string{"Range: bytes=0-1"}, status: 206, origin: 3},
		}},
		{name: "RFC 5861 §3 stale-while-revalidate serves stale and refreshes in the background",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1, stale-while-revalidate=60"), reply(200, "two", "Cache-Control: max-age=60")), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, body: str("one"), cs: "detail=stale-while-revalidate", code: "TCP_STALE_HIT"},
				{origin: 2, body: str("two"), cs: "hit"},
			}},
		{name: "RFC 5861 §4 stale-if-error serves stale on a 500",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1, stale-if-error=60"), reply(500, "boom")), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, body: str("one"), cs: "fwd-status=500; detail=stale-if-error"},
				{adv: 100 * time.Second, origin: 3, status: 500, body: str("boom")},
			}},
		{name: "RFC 9111 §4.2.4 stale_on_error: an unreachable origin gets the stale response",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1"), hangUp), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, retry: true, body: str("one"), code: "TCP_STALE_HIT"},
			}},
		{name: "RFC 9111 §4.2.4 stale_on_error: an origin closing mid-response on revalidation gets the stale response",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1"), cutShort), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, retry: true, body: str("one"), code: "TCP_STALE_HIT", cs: "detail=stale-if-error"},
			}},
		{name: "RFC 9111 §4.2.4 origin unreachable and stale not allowed: 502",
			cfg:    func(c *config.CacheConfig) { c.StaleOnError = false },
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1"), hangUp), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, retry: true, status: 502},
			}},
		{name: "RFC 9111 §5.2.2.2 must-revalidate and an unreachable origin: 502, not stale",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1, must-revalidate"), hangUp), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, retry: true, status: 502},
			}},
		{name: "RFC 9111 §4.2.4 a 5xx is passed on unless stale_on_5xx",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1"), reply(503, "down")), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, status: 503},
			}},
		{name: "RFC 9111 §4.2.4 stale_on_5xx serves stale on a 503",
			cfg:    func(c *config.CacheConfig) { c.StaleOn5xx = true },
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1"), reply(503, "down")), steps: []step{
				{origin: 1}, {adv: 5 * time.Second, origin: 2, body: str("one")},
			}},
		{name: "PURGE from an allowed address removes the stored response", origin: ok200, steps: []step{
			{origin: 1}, {method: "PURGE", origin: 1, code: "NONE"}, {origin: 2},
			{method: "PURGE", path: "/nothing", status: 404, origin: 2},
		}},
		{name: "PURGE from outside purge_allow is refused with 403", origin: ok200,
			cfg: func(c *config.CacheConfig) { c.PurgeAllow = []string{"192.0.2.0/24"} }, steps: []step{
				{origin: 1}, {method: "PURGE", status: 403, origin: 1, code: "TCP_DENIED"}, {origin: 1, cs: "hit"},
				{method: "PURGE", remote: "192.0.2.1:5555", origin: 1, code: "NONE"}, {origin: 2},
			}},
		{name: "RFC 9111 §7.3 Set-Cookie without explicit cacheability is not stored",
			origin: reply(200, "x", "Set-Cookie: a=b", "Last-Modified: "+ago(time.Hour)), steps: []step{
				{origin: 1, cs: "detail=set-cookie"}, {origin: 2},
			}},
		{name: "RFC 9111 §4 the key normalises scheme and host case and the default port",
			origin: ok200, steps: []step{
				{origin: 1}, {path: "/r?", origin: 2}, {path: "/r", origin: 2, cs: "hit"},
			}},
		{name: "RFC 9111 §4.2.1 a duplicated max-age uses the first occurrence",
			origin: reply(200, "x", "Cache-Control: max-age=60, max-age=0"), steps: []step{
				{origin: 1}, {adv: 10 * time.Second, origin: 1, cs: "hit"},
			}},
		{name: "RFC 9111 §1.2.2 an invalid max-age makes the response stale",
			origin: reply(200, "x", "Cache-Control: max-age=abc", `ETag: "i"`), steps: []step{
				{origin: 1}, {origin: 2},
			}},
		{name: "RFC 9111 §5.2.2.1 a quoted max-age is understood",
			origin: reply(200, "x", `Cache-Control: max-age="60"`), steps: []step{
				{origin: 1}, {origin: 1, cs: "hit"},
			}},
		{name: "RFC 9110 §15.3.5 a 204 is stored without a body", origin: reply(204, "", "Cache-Control: max-age=60"), steps: []step{
			{status: 204, origin: 1}, {status: 204, origin: 1, cs: "hit", body: str("")},
		}},
	}
	return append(append(cases, suiteCases()...), cornerCases()...)
}

// TestIncompleteNotStored checks RFC 9111 §3.3: a body cut short is not stored.
func TestIncompleteNotStored(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "short")
		if n == 1 {
			conn, bw, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = bw.Flush()
				conn.Close()
			}
		}
	}, nil)
	r := httptest0(h, "/r")
	rw := &recorder{method: "GET"}
	_, _ = h.serve(rw, r)
	h.settle()
	h.c.flights.mu.Lock()
	n := len(h.c.flights.m)
	h.c.flights.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d flights left registered", n)
	}
	if _, items := h.c.st.counts(); items != 0 {
		t.Fatalf("incomplete response stored (%d items)", items)
	}
}
