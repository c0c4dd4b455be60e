package cache

import (
	"net/http"
	"testing"
	"time"
)

// TestParseHTTPDate checks the three HTTP-date forms and the near misses RFC 9110 §5.6.7
// does not allow (an invalid Expires then means "already expired", RFC 9111 §5.3).
func TestParseHTTPDate(t *testing.T) {
	want := time.Date(1994, time.November, 6, 8, 49, 37, 0, time.UTC)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"IMF-fixdate", "Sun, 06 Nov 1994 08:49:37 GMT", true},
		{"rfc850", "Sunday, 06-Nov-94 08:49:37 GMT", true},
		{"asctime", "Sun Nov  6 08:49:37 1994", true},
		{"names in upper case", "SUN, 06 NOV 1994 08:49:37 GMT", true},
		{"zone in mixed case", "Sun, 06 Nov 1994 08:49:37 gMT", true},
		{"UTC zone", "Sun, 06 Nov 1994 08:49:37 UTC", false},
		{"one-digit hour", "Sun, 06 Nov 1994 8:49:37 GMT", false},
		{"runs of spaces", "Sun, 06  Nov  1994 08:49:37 GMT", false},
		{"two-digit year", "Sun, 06 Nov 94 08:49:37 GMT", false},
		{"no comma", "Sun 06 Nov 1994 08:49:37 GMT", false},
		{"dashes in IMF-fixdate", "Sun, 06-Nov-1994 08:49:37 GMT", false},
		{"periods in the time", "Sun, 06 Nov 1994 08.49.37 GMT", false},
		{"hour 24", "Sun, 06 Nov 1994 24:49:37 GMT", false},
		{"31 February", "Sun, 31 Feb 1994 08:49:37 GMT", false},
		{"unknown month", "Sun, 06 Nvm 1994 08:49:37 GMT", false},
		{"unknown day", "Xyz, 06 Nov 1994 08:49:37 GMT", false},
		{"zero", "0", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHTTPDate(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("parseHTTPDate(%q) error %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok && !got.Equal(want) {
				t.Errorf("parseHTTPDate(%q) = %v, want %v", tc.in, got, want)
			}
		})
	}
}

// FuzzHTTPDate: parsing never panics, and what it accepts in IMF-fixdate form round-trips.
func FuzzHTTPDate(f *testing.F) {
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Thu, 18 Aug 2050 2:01:18 GMT", "Wednesday, 99-Xyz-99 99:99:99 GMT", ",,,,,,,,,,,,,,,,,,,,,,,,,,,,", "Mon Jan 99 00:00:00 0000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseHTTPDate(s)
		if err != nil || len(s) != 29 || s[3] != ',' {
			return
		}
		back, err := parseHTTPDate(got.Format(http.TimeFormat))
		if err != nil || !back.Equal(got) {
			t.Fatalf("%q parsed as %v does not round-trip: %v %v", s, got, back, err)
		}
	})
}
