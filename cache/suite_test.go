package cache

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// This file holds RFC table cases written while checking Outpost against the public HTTP
// caching test suite (cache-tests.fyi): parsing quirks of Cache-Control, Expires and Age,
// heuristic freshness per status, status codes with explicit freshness, stored fields and
// invalidation. Each case names the RFC rule it checks; rfcCases appends them, so they run
// through the seam and through the real proxy.

// replyExact answers with exactly the given fields: a field named in fields replaces the one
// the harness stamps (Date), and repeated names make repeated lines.
func replyExact(status int, body string, fields ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		for _, l := range fields {
			k, _, _ := strings.Cut(l, ":")
			w.Header().Del(strings.TrimSpace(k))
		}
		reply(status, body, fields...)(w, r, n)
	}
}

// rawReply writes the response itself on the hijacked connection, so that Go's server does not
// drop fields it manages (Content-Type on a 304, Connection), then closes the connection.
func rawReply(status int, body string, fields ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
		for _, l := range fields {
			fmt.Fprintf(bw, "%s\r\n", l)
		}
		if status != http.StatusNotModified {
			fmt.Fprintf(bw, "Content-Length: %d\r\n", len(body))
		}
		fmt.Fprintf(bw, "\r\n%s", body)
		_ = bw.Flush()
	}
}

// httpDate formats the harness's start time moved by d.
func httpDate(d time.Duration) string {
	return time.Now().UTC().Truncate(time.Second).Add(d).Format(http.TimeFormat)
}

// ageAtLeast checks that Age is at least n seconds.
func ageAtLeast(n int) func(*testing.T, Driver, Response) {
	return func(t *testing.T, _ Driver, res Response) {
		t.Helper()
		if a, err := strconv.Atoi(res.Header.Get("Age")); err != nil || a < n {
			t.Errorf("Age = %q, want >= %d", res.Header.Get("Age"), n)
		}
	}
}

// fieldsAbsent checks that the named fields are missing from the response.
func fieldsAbsent(names ...string) func(*testing.T, Driver, Response) {
	return func(t *testing.T, _ Driver, res Response) {
		t.Helper()
		for _, n := range names {
			if v := res.Header.Values(n); len(v) > 0 {
				t.Errorf("%s = %q, want it absent", n, v)
			}
		}
	}
}

// reused is the two-step pattern "stored, then served from storage a second later".
func reused(status int) []step {
	return []step{{status: status, origin: 1}, {adv: time.Second, status: status, origin: 1, cs: "hit"}}
}

// notReused is "stored or not, the second request a second later goes to the origin".
func notReused(status int) []step {
	return []step{{status: status, origin: 1}, {adv: time.Second, status: status, origin: 2}}
}

// suiteCases are the cases for the rules above.
func suiteCases() []rfcCase {
	cc := func(v string) func(http.ResponseWriter, *http.Request, int) {
		return reply(200, "x", "Cache-Control: "+v)
	}
	expires := func(v string) func(http.ResponseWriter, *http.Request, int) { return reply(200, "x", "Expires: "+v) }
	future := httpDate(30 * 24 * time.Hour)
	cases := []rfcCase{
		// Cache-Control syntax (RFC 9111 §5.2, RFC 9110 §5.6.2).
		{name: "RFC 9111 §5.2 max-age with a space before = is not a directive", origin: cc("max-age =3600"), steps: notReused(200)},
		{name: "RFC 9111 §5.2 max-age with a space after = is not a directive", origin: cc("max-age= 3600"), steps: notReused(200)},
		{name: "RFC 9111 §5.2 max-age inside a quoted extension value is ignored", origin: cc(`extension="max-age=3600", max-age="1"`),
			steps: []step{{origin: 1}, {adv: 2 * time.Second, origin: 2}}},
		{name: "RFC 9111 §5.2 max-age inside a trailing quoted extension value is ignored", origin: cc(`max-age=1, extension="max-age=3600"`),
			steps: []step{{origin: 1}, {adv: 2 * time.Second, origin: 2}}},
		{name: "RFC 9111 §1.2.2 max-age=003600 (leading zeros) is 3600 seconds", origin: cc("max-age=003600"), steps: reused(200)},
		{name: "RFC 9111 §1.2.2 a single-quoted max-age is invalid", origin: cc("max-age='3600'"), steps: notReused(200)},
		{name: "RFC 9111 §1.2.2 a negative max-age is invalid", origin: cc("max-age=-100"), steps: notReused(200)},
		{name: "RFC 9111 §1.2.2 max-age with a trailing letter is invalid", origin: cc("max-age=100a"), steps: notReused(200)},
		{name: "RFC 9111 §1.2.2 max-age=2147483648 is kept", origin: cc("max-age=2147483648"), steps: reused(200)},
		{name: "RFC 9111 §1.2.2 max-age beyond 2^31 is clamped, not overflowed", origin: cc("max-age=99999999999"), steps: reused(200)},
		{name: "RFC 9111 §5.2 directive names are case-insensitive", origin: cc("MaX-aGe=3600"), steps: reused(200)},
		{name: "RFC 9111 §5.2.3 an unknown extension is ignored", origin: cc("foobar, max-age=3600"), steps: reused(200)},
		{name: "RFC 9111 §5.2.2.5 No-StOrE is no-store", origin: cc("No-StOrE, max-age=3600"), steps: notReused(200)},
		{name: "RFC 9111 §4.2.1 max-age=0 wins over a future Expires", origin: reply(200, "x", "Cache-Control: max-age=0", "Expires: "+future), steps: notReused(200)},
		{name: "RFC 9111 §4.2.1 s-maxage wins over a longer max-age (shared cache)", origin: cc("max-age=3600, s-maxage=1"),
			steps: []step{{origin: 1}, {adv: 2 * time.Second, origin: 2}}},
		{name: "RFC 9111 §4.2.1 s-maxage wins over max-age on another line", origin: reply(200, "x", "Cache-Control: max-age=3600", "Cache-Control: s-maxage=1"),
			steps: []step{{origin: 1}, {adv: 2 * time.Second, origin: 2}}},
		{name: "RFC 9111 §4.2.1 a duplicated max-age on separate lines uses the first", origin: reply(200, "x", "Cache-Control: max-age=1800", "Cache-Control: max-age=1"), steps: reused(200)},

		// Expires and Date (RFC 9111 §5.3, RFC 9110 §5.6.7).
		{name: "RFC 9111 §5.3 Expires with a one-digit hour is invalid (already expired)", origin: expires("Thu, 18 Aug 2050 2:01:18 GMT"), steps: notReused(200)},
		{name: "RFC 9111 §5.3 Expires in UTC instead of GMT is invalid", origin: expires("Thu, 18 Aug 2050 02:01:18 UTC"), steps: notReused(200)},
		{name: "RFC 9111 §5.3 Expires with runs of spaces is invalid", origin: expires("Thu, 18  Aug  2050 02:01:18 GMT"), steps: notReused(200)},
		{name: "RFC 9111 §5.3 Expires with a two-digit year in IMF-fixdate is invalid", origin: expires("Thu, 18 Aug 50 02:01:18 GMT"), steps: notReused(200)},
		{name: "RFC 9111 §5.3 Expires without the comma is invalid", origin: expires("Thu 18 Aug 2050 02:01:18 GMT"), steps: notReused(200)},
		{name: "RFC 9111 §5.3 Expires with dashes in IMF-fixdate is invalid", origin: expires("Thu, 18-Aug-2050 02:01:18 GMT"), steps: notReused(200)},
		{name: "RFC 9111 §5.3 Expires with periods in the time is invalid", origin: expires("Thu, 18 Aug 2050 02.01.18 GMT"), steps: notReused(200)},
		{name: "RFC 9110 §5.6.7 Expires with upper-case day and month names is accepted", origin: expires(strings.ToUpper(future)), steps: reused(200)},
		{name: "RFC 9110 §5.6.7 Expires in the obsolete rfc850 form is accepted",
			origin: expires(time.Now().UTC().Add(24 * time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT")), steps: reused(200)},
		{name: "RFC 9110 §5.6.7 Expires in the obsolete asctime form is accepted",
			origin: expires(time.Now().UTC().Add(24 * time.Hour).Format(time.ANSIC)), steps: reused(200)},
		{name: "RFC 9111 §5.3 a past Expires is stale", origin: expires(httpDate(-time.Hour)), steps: notReused(200)},
		{name: "RFC 9111 §4.2.1 an invalid Date: Expires is measured from the time of receipt",
			origin: replyExact(200, "x", "Date: foo", "Expires: "+httpDate(time.Hour)), steps: reused(200)},
		{name: "RFC 9111 §4.2.3 Age beyond Expires minus Date (fast Date) makes the response stale",
			origin: replyExact(200, "x", "Date: "+httpDate(10*time.Second), "Expires: "+httpDate(20*time.Second), "Age: 15"), steps: notReused(200)},
		{name: "RFC 9111 §4.2.3 Age beyond Expires minus Date (slow Date) makes the response stale",
			origin: replyExact(200, "x", "Date: "+httpDate(-10*time.Second), "Expires: "+httpDate(10*time.Second), "Age: 25"), steps: notReused(200)},
		{name: "RFC 9111 §4.2.3 Age beyond max-age makes the response stale", origin: reply(200, "x", "Cache-Control: max-age=10", "Age: 15"), steps: notReused(200)},
		{name: "RFC 9111 §5.1 a non-numeric Age is ignored", origin: reply(200, "x", "Cache-Control: max-age=3600", "Age: abc"), steps: reused(200)},
		{name: "RFC 9111 §5.1 a negative Age is ignored", origin: reply(200, "x", "Cache-Control: max-age=3600", "Age: -7200"), steps: reused(200)},

		// Age and Date on responses from storage (RFC 9111 §4, §5.1).
		{name: "RFC 9111 §5.1 Age carries the origin's Age plus the time in storage", origin: reply(200, "x", "Cache-Control: max-age=600", "Age: 30"),
			steps: []step{{origin: 1}, {adv: 3 * time.Second, origin: 1, cs: "hit", check: ageAtLeast(33)}}},
		{name: "RFC 9111 §4 Date is not changed on a response from storage", origin: replyExact(200, "x", "Expires: "+future, "Date: "+httpDate(0)),
			steps: []step{{origin: 1}, {adv: 3 * time.Second, origin: 1, cs: "hit", check: hasField("Date", httpDate(0))}}},

		// Stored fields (RFC 9111 §3.1, §5.2.2.4).
		{name: "RFC 9111 §3.1 fields named in Connection are not stored",
			origin: rawReply(200, "x", "Cache-Control: max-age=3600", "Connection: a, b", "A: 1", "B: 2", "C: 3"),
			steps: []step{{origin: 1}, {origin: 1, cs: "hit", check: func(t *testing.T, d Driver, res Response) {
				fieldsAbsent("A", "B")(t, d, res)
				hasField("C", "3")(t, d, res)
			}}}},
		{name: "RFC 9111 §5.2.2.4 no-cache with two field names: both are left out, the rest served",
			origin: reply(200, "x", `Cache-Control: no-cache="a, b"`, "Cache-Control: max-age=3600", "A: 1", "B: 2", "C: 3"),
			steps: []step{{origin: 1}, {origin: 1, cs: "hit", check: func(t *testing.T, d Driver, res Response) {
				fieldsAbsent("A", "B")(t, d, res)
				hasField("C", "3")(t, d, res)
			}}}},
		{name: "RFC 9111 §3.1 end-to-end fields such as Content-Type, Set-Cookie and security headers are stored",
			origin: reply(200, "x", "Cache-Control: max-age=3600", "Content-Type: text/plain", "X-Frame-Options: deny",
				"Set-Cookie: a=b", "Strict-Transport-Security: max-age=1", "WWW-Authenticate: Basic"),
			steps: []step{{origin: 1}, {origin: 1, cs: "hit", check: func(t *testing.T, d Driver, res Response) {
				for _, f := range []string{"Content-Type", "X-Frame-Options", "Set-Cookie", "Strict-Transport-Security", "WWW-Authenticate"} {
					if res.Header.Get(f) == "" {
						t.Errorf("%s missing from the stored response", f)
					}
				}
			}}}},
		{name: "RFC 9111 §3 a Cookie in the request does not prevent reuse", origin: cc("max-age=3600"),
			steps: []step{{origin: 1}, {hdr: []string{"Cookie: a=b"}, origin: 1, cs: "hit"}}},

		// 304 updates (RFC 9111 §3.2, §4.3.4).
		{name: "RFC 9111 §3.2 a Last-Modified 304 updates Content-Type, Content-Location and Cache-Control",
			origin: sequence(
				reply(200, "x", "Cache-Control: max-age=1", "Last-Modified: "+ago(24*time.Hour), "Content-Type: text/plain", "Content-Location: /foo", "Test-Header: A"),
				rawReply(304, "", "Cache-Control: max-age=3600", "Last-Modified: "+ago(24*time.Hour), "Content-Type: text/plain;charset=utf-8", "Content-Location: /bar", "Test-Header: B")),
			steps: []step{{origin: 1}, {adv: 2 * time.Second, origin: 2, body: str("x"), check: hasField("Content-Type", "text/plain;charset=utf-8")},
				{adv: 10 * time.Second, origin: 2, cs: "hit", body: str("x"), check: func(t *testing.T, d Driver, res Response) {
					hasField("Content-Location", "/bar")(t, d, res)
					hasField("Test-Header", "B")(t, d, res)
				}}}},
		{name: "RFC 9111 §3.2 a 304 that omits a field keeps the stored one",
			origin: sequence(reply(200, "x", "Cache-Control: max-age=1", `ETag: "e"`, "Test-Header: A"), reply(304, "", "Cache-Control: max-age=3600", `ETag: "e"`)),
			steps:  []step{{origin: 1}, {adv: 2 * time.Second, origin: 2, check: hasField("Test-Header", "A")}}},

		// Invalidation (RFC 9111 §4.4).
		{name: "RFC 9111 §4.4 an unknown method (M-SEARCH) invalidates the target URI", origin: cc("max-age=100000"),
			steps: []step{{origin: 1}, {method: "M-SEARCH", origin: 2}, {origin: 3}}},
		{name: "RFC 9111 §4.4 a failed (500) POST does not invalidate",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == http.MethodPost {
					reply(500, "no")(w, r, n)
					return
				}
				cc("max-age=100000")(w, r, n)
			},
			steps: []step{{origin: 1}, {method: "POST", status: 500, origin: 2}, {origin: 2, cs: "hit"}}},
		{name: "RFC 9111 §4.4 a PUT invalidates the relative Location and Content-Location URIs",
			origin: func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == http.MethodPut {
					reply(201, "", "Location: location_target", "Content-Location: content_location_target")(w, r, n)
					return
				}
				cc("max-age=100000")(w, r, n)
			},
			steps: []step{
				{path: "/d/location_target", origin: 1}, {path: "/d/content_location_target", origin: 2},
				{method: "PUT", path: "/d/x", status: 201, origin: 3},
				{path: "/d/location_target", origin: 4}, {path: "/d/content_location_target", origin: 5},
			}},

		// Serving stale (RFC 9111 §4.2.4).
		{name: "RFC 9111 §4.2.4 no-cache: not served stale when the origin is unreachable",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=1, no-cache"), hangUp),
			steps:  []step{{origin: 1}, {adv: 5 * time.Second, origin: 2, retry: true, status: 502}}},
		{name: "RFC 9111 §4.2.4 s-maxage: not served stale when the origin is unreachable",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=2, s-maxage=2"), hangUp),
			steps:  []step{{origin: 1}, {adv: 5 * time.Second, origin: 2, retry: true, status: 502}}},
		{name: "RFC 9111 §4.2.4 proxy-revalidate: not served stale when the origin is unreachable",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=2, proxy-revalidate"), hangUp),
			steps:  []step{{origin: 1}, {adv: 5 * time.Second, origin: 2, retry: true, status: 502}}},

		// Vary (RFC 9111 §4.1).
		{name: "RFC 9111 §4.1 Vary listing * among other names is never matched", origin: reply(200, "x", "Cache-Control: max-age=60", "Vary: Foo, *"),
			steps: []step{{hdr: []string{"Foo: 1"}, origin: 1}, {hdr: []string{"Foo: 1"}, origin: 2}}},
		{name: "RFC 9111 §4.1 Vary * on a second line after an empty one is never matched", origin: reply(200, "x", "Cache-Control: max-age=60", "Vary: ", "Vary: *"),
			steps: []step{{hdr: []string{"Foo: 1"}, origin: 1}, {hdr: []string{"Foo: 1"}, origin: 2}}},
		{name: "RFC 9111 §4.1 a three-way Vary does not match when one value differs", origin: reply(200, "x", "Cache-Control: max-age=60", "Vary: Foo, Bar, Baz"),
			steps: []step{
				{hdr: []string{"Foo: 1", "Bar: abc4", "Baz: 789"}, origin: 1},
				{hdr: []string{"Foo: 1", "Bar: abc", "Baz: 789"}, origin: 2},
				{hdr: []string{"Foo: 1", "Bar: abc", "Baz: 789"}, origin: 2, cs: "hit"},
			}},
		{name: "RFC 9111 §4.1 a Vary'd field absent from both requests matches", origin: reply(200, "x", "Cache-Control: max-age=60", "Vary: Foo, Bar, Baz"),
			steps: []step{{hdr: []string{"Foo: 1", "Baz: 789"}, origin: 1}, {hdr: []string{"Foo: 1", "Baz: 789", "Other: 3"}, origin: 1, cs: "hit"}}},
		{name: "RFC 9111 §4.1 Vary'd values are normalised: whitespace and combined lines", origin: reply(200, "x", "Cache-Control: max-age=60", "Vary: Foo"),
			steps: []step{{hdr: []string{"Foo: 1,2"}, origin: 1}, {hdr: []string{"Foo:  1, 2 "}, origin: 1, cs: "hit"}, {hdr: []string{"Foo: 1", "Foo: 2"}, origin: 1, cs: "hit"}}},
		{name: "RFC 9111 §4.1 a request omitting a Vary'd field does not match", origin: reply(200, "x", "Cache-Control: max-age=60", "Vary: Foo"),
			steps: []step{{hdr: []string{"Foo: 1"}, origin: 1}, {origin: 2}}},
	}
	// Heuristic freshness (RFC 9111 §4.2.2, RFC 9110 §15.1): only heuristically cacheable
	// statuses, or any status with public.
	for _, s := range []int{200, 203, 204, 404, 405, 410, 414, 501} {
		cases = append(cases, rfcCase{name: "RFC 9111 §4.2.2 heuristic freshness for a " + strconv.Itoa(s),
			origin: reply(s, "", "Last-Modified: "+ago(24*time.Hour)), steps: reused(s)})
	}
	for _, s := range []int{201, 202, 403, 502, 503, 504, 599} {
		cases = append(cases, rfcCase{name: "RFC 9111 §4.2.2 no heuristic freshness for a " + strconv.Itoa(s),
			origin: reply(s, "", "Last-Modified: "+ago(24*time.Hour)), steps: notReused(s)})
	}
	cases = append(cases, rfcCase{name: "RFC 9111 §4.2.2 public allows heuristic freshness for a 599",
		origin: reply(599, "", "Cache-Control: public", "Last-Modified: "+ago(24*time.Hour)), steps: reused(599)})
	// Explicit freshness makes any final status reusable while fresh, never once stale (§3, §4.2).
	for _, s := range []int{200, 203, 204, 299, 301, 302, 303, 307, 308, 400, 404, 410, 499, 500, 502, 503, 504, 599} {
		cases = append(cases,
			rfcCase{name: "RFC 9111 §3 a fresh " + strconv.Itoa(s) + " with explicit freshness is reused",
				origin: reply(s, "", "Expires: "+future, "Cache-Control: max-age=100000", "Last-Modified: "+ago(0)), steps: reused(s)},
			rfcCase{name: "RFC 9111 §4.2 a stale " + strconv.Itoa(s) + " is not reused",
				origin: reply(s, "", "Expires: "+httpDate(-5000*time.Second), "Last-Modified: "+ago(100000*time.Second)), steps: notReused(s)})
	}
	cases = append(cases, partialCases()...)
	cases = append(cases, ageCases()...)
	cases = append(cases, leaderCases()...)
	return append(cases, staleCases()...)
}

// partialCases check partial content without validators (RFC 9111 §3.3).
func partialCases() []rfcCase {
	return []rfcCase{
		{name: "RFC 9111 §3.3 a 206 without a validator is stored and reused for a range inside it",
			origin: reply(206, "456789", "Cache-Control: max-age=3600", "Content-Range: bytes 4-9/10"), steps: []step{
				{hdr: []string{"Range: bytes=-6"}, status: 206, origin: 1, body: str("456789"), cs: "stored", check: originSaw("Range", "bytes=-6")},
				{hdr: []string{"Range: bytes=-6"}, status: 206, origin: 1, body: str("456789"), cs: "hit"},
				{hdr: []string{"Range: bytes=6-8"}, status: 206, origin: 1, body: str("678"), cs: "hit"},
				{hdr: []string{"Range: bytes=6-"}, status: 206, origin: 1, body: str("6789"), cs: "hit"},
				{hdr: []string{"Range: bytes=-1"}, status: 206, origin: 1, body: str("9"), cs: "hit"},
			}},
		{name: "RFC 9111 §3.4 a partial response without a strong validator is not completed or combined",
			origin: reply(206, "0123", "Cache-Control: max-age=3600", "Content-Range: bytes 0-3/10"), steps: []step{
				{hdr: []string{"Range: bytes=0-3"}, status: 206, origin: 1},
				{status: 206, origin: 2, check: originSaw("Range", "")},
			}},
		{name: "RFC 9110 §14.4 a 206 whose body disagrees with Content-Range is relayed, not stored",
			origin: reply(206, "01234", "Cache-Control: max-age=3600", "Content-Range: bytes 4-9/10"), steps: []step{
				{hdr: []string{"Range: bytes=-6"}, status: 206, origin: 1, body: str("01234")},
				{hdr: []string{"Range: bytes=-6"}, status: 206, origin: 2, body: str("01234")},
			}},
		{name: "RFC 9110 §13.1.3 If-Modified-Since in the rfc850 form is understood",
			origin: reply(200, "x", "Cache-Control: max-age=10000", "Last-Modified: "+ago(3000*time.Second)), steps: []step{
				{origin: 1},
				{hdr: []string{"If-Modified-Since: " + time.Now().UTC().Truncate(time.Second).Add(-3000*time.Second).Format("Monday, 02-Jan-06 15:04:05 GMT")}, status: 304, origin: 1},
			}},
		{name: "RFC 9110 §13.1.3 If-Modified-Since against a stored response without Last-Modified uses its Date",
			origin: cc200("max-age=10000"), steps: []step{
				{origin: 1}, {adv: time.Second, hdr: []string{"If-Modified-Since: " + httpDate(time.Minute)}, status: 304, origin: 1},
				{hdr: []string{"If-Modified-Since: " + ago(3000*time.Second)}, origin: 1, body: str("x")},
			}},
		{name: "RFC 9110 §8.8.3.2 a weak ETag matches If-None-Match by weak comparison",
			origin: reply(200, "x", "Cache-Control: max-age=10000", `ETag: W/"abcdef"`), steps: []step{
				{origin: 1}, {hdr: []string{`If-None-Match: W/"abcdef"`}, status: 304, origin: 1, check: hasField("ETag", `W/"abcdef"`)},
				{hdr: []string{`If-None-Match: "1234", "abcdef", "5678"`}, status: 304, origin: 1},
			}},
	}
}

// cc200 answers 200 "x" with the given Cache-Control.
func cc200(v string) func(http.ResponseWriter, *http.Request, int) {
	return reply(200, "x", "Cache-Control: "+v)
}

// ageCases check Age parsing (RFC 9111 §5.1): a list-based Age (one line with commas, or
// several lines) counts by its first member, the others discarded; a value that is then not
// delta-seconds is ignored. With max-age=3600, an Age of 7200 makes the response stale.
func ageCases() []rfcCase {
	var cases []rfcCase
	for _, tc := range []struct {
		name  string
		lines []string
		stale bool // the Age that counts is 7200
	}{
		{"an invalid Age (a float) is ignored", []string{"7200.0"}, false},
		{"an invalid Age (a sign) is ignored", []string{"+7200"}, false},
		{"an invalid first member is ignored, not replaced by the next", []string{"old, 7200"}, false},
		{"a list uses its first member (0)", []string{"0,7200"}, false},
		{"a list uses its first member (7200)", []string{"7200, 0"}, true},
		{"a duplicated old value counts", []string{"7200, 7200"}, true},
		{"an empty first element is no member", []string{", 7200"}, true},
		{"two lines use the first (7200)", []string{"7200", "0"}, true},
		{"two lines use the first (0)", []string{"0", "7200"}, false},
	} {
		fields := []string{"Cache-Control: max-age=3600"}
		for _, l := range tc.lines {
			fields = append(fields, "Age: "+l)
		}
		steps := reused(200)
		if tc.stale {
			steps = notReused(200)
		}
		cases = append(cases, rfcCase{name: "RFC 9111 §5.1 Age: " + tc.name, origin: reply(200, "x", fields...), steps: steps})
	}
	return cases
}

// leaderCases check the response to the request that fetched a stored response: it is the
// origin's, not one served from storage.
func leaderCases() []rfcCase {
	return []rfcCase{
		{name: "RFC 9111 §5.2.2.4 the fields a qualified no-cache names reach the client that fetched the response",
			origin: reply(200, "x", `Cache-Control: no-cache="a", max-age=3600`, "A: 1", "B: 2"), steps: []step{
				{origin: 1, check: func(t *testing.T, d Driver, res Response) {
					hasField("A", "1")(t, d, res)
					hasField("B", "2")(t, d, res)
				}},
				{origin: 1, cs: "hit", check: func(t *testing.T, d Driver, res Response) {
					fieldsAbsent("A")(t, d, res)
					hasField("B", "2")(t, d, res)
				}},
			}},
		{name: "RFC 9111 §5.2.2.7 the fields a qualified private names reach the client that fetched the response",
			origin: reply(200, "x", `Cache-Control: private="x-user", max-age=3600`, "X-User: bob"), steps: []step{
				{origin: 1, check: hasField("X-User", "bob")}, {origin: 1, cs: "hit", check: hasField("X-User", "")},
			}},
		{name: "RFC 9111 §5.1 the origin's Age is passed on unchanged on the response that fetched it",
			origin: reply(200, "x", "Cache-Control: max-age=3600", "Age: 30"), steps: []step{
				{origin: 1, check: hasField("Age", "30")}, {adv: 2 * time.Second, origin: 1, cs: "hit", check: hasField("Age", "32")},
			}},
		{name: "RFC 9111 §5.1 an invalid Age from the origin is passed on, and ignored for freshness",
			origin: reply(200, "x", "Cache-Control: max-age=3600", "Age: abc"), steps: []step{
				{origin: 1, check: hasField("Age", "abc")}, {adv: 2 * time.Second, origin: 1, cs: "hit", check: hasField("Age", "2")},
			}},
	}
}

// staleCases check that an explicit stale-if-error window is kept (RFC 5861 §4).
func staleCases() []rfcCase {
	on5xx := func(c *config.CacheConfig) { c.StaleOn5xx = true }
	return []rfcCase{
		{name: "RFC 5861 §4 past the response's stale-if-error window a 500 is passed on, even with stale_on_5xx",
			cfg: on5xx, origin: sequence(reply(200, "one", "Cache-Control: max-age=0, stale-if-error=1"), reply(500, "boom")), steps: []step{
				{origin: 1}, {adv: 3 * time.Second, origin: 2, status: 500, body: str("boom")},
			}},
		{name: "RFC 5861 §4 past the response's stale-if-error window an unreachable origin gets 502, even with stale_on_error",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=0, stale-if-error=1"), hangUp), steps: []step{
				{origin: 1}, {adv: 3 * time.Second, origin: 2, retry: true, status: 502},
			}},
		{name: "RFC 5861 §4 past the request's stale-if-error window a 500 is passed on, even with stale_on_5xx",
			cfg: on5xx, origin: sequence(reply(200, "one", "Cache-Control: max-age=0"), reply(500, "boom")), steps: []step{
				{origin: 1}, {adv: 3 * time.Second, hdr: []string{"Cache-Control: stale-if-error=1"}, origin: 2, status: 500},
			}},
		{name: "RFC 5861 §4 within the request's stale-if-error window a 500 gets the stale response",
			origin: sequence(reply(200, "one", "Cache-Control: max-age=0"), reply(500, "boom")), steps: []step{
				{origin: 1}, {adv: 3 * time.Second, hdr: []string{"Cache-Control: stale-if-error=3600"}, origin: 2, body: str("one")},
			}},
	}
}
