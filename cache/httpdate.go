package cache

import (
	"errors"
	"time"
)

// errBadDate is returned for a value that is not an HTTP-date.
var errBadDate = errors.New("cache: not an HTTP-date")

// parseHTTPDate parses an HTTP-date strictly (RFC 9110 §5.6.7): the preferred IMF-fixdate
// ("Sun, 06 Nov 1994 08:49:37 GMT") and the two obsolete forms a recipient must accept, rfc850
// ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994"). Unlike
// http.ParseTime it refuses one-digit hours, runs of spaces, other zones ("UTC") and
// two-digit years outside rfc850, so that an invalid Expires counts as already expired
// (RFC 9111 §5.3). Day and month names and "GMT" are matched without regard to case, as
// mature caches do. It does not allocate.
func parseHTTPDate(s string) (time.Time, error) {
	var (
		wd, mon          string
		day, year        int
		hh, mm, ss       int
		clock, rest, sep string
		ok               bool
	)
	switch {
	case len(s) == 29 && s[3] == ',': // IMF-fixdate
		wd, sep = s[:3], s[3:5]
		day, ok = num(s[5:7])
		mon, clock, rest = s[8:11], s[16:26], s[26:]
		if !ok || sep != ", " || s[7] != ' ' || s[11] != ' ' || !fold(rest, "GMT") {
			return time.Time{}, errBadDate
		}
		if year, ok = num(s[12:16]); !ok {
			return time.Time{}, errBadDate
		}
	case len(s) == 24 && s[3] == ' ': // asctime
		wd, mon, clock = s[:3], s[4:7], s[10:20]
		d := s[8:10]
		if d[0] == ' ' {
			d = d[1:]
		}
		day, ok = num(d)
		if !ok || s[7] != ' ' {
			return time.Time{}, errBadDate
		}
		if year, ok = num(s[20:24]); !ok {
			return time.Time{}, errBadDate
		}
	default: // rfc850: day-name-l ", " DD "-" Mon "-" YY " " HH:MM:SS " GMT"
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		if i > 9 || len(s) != i+24 || !longWeekday(s[:i]) {
			return time.Time{}, errBadDate
		}
		p := s[i:]
		day, ok = num(p[2:4])
		mon, clock, rest = p[5:8], p[11:21], p[21:]
		if !ok || p[:2] != ", " || p[4] != '-' || p[8] != '-' || !fold(rest, "GMT") {
			return time.Time{}, errBadDate
		}
		if year, ok = num(p[9:11]); !ok {
			return time.Time{}, errBadDate
		}
		year += 1900
		if year < 1970 {
			year += 100 // RFC 9110 §5.6.7: a two-digit year is at most 50 years ahead
		}
		wd = s[:3]
	}
	if !shortWeekday(wd) {
		return time.Time{}, errBadDate
	}
	m := month(mon)
	if m == 0 {
		return time.Time{}, errBadDate
	}
	// clock is " HH:MM:SS " in all three forms.
	if len(clock) != 10 || clock[0] != ' ' || clock[3] != ':' || clock[6] != ':' || clock[9] != ' ' {
		return time.Time{}, errBadDate
	}
	var ok1, ok2, ok3 bool
	hh, ok1 = num(clock[1:3])
	mm, ok2 = num(clock[4:6])
	ss, ok3 = num(clock[7:9])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 || day < 1 || day > 31 {
		return time.Time{}, errBadDate
	}
	t := time.Date(year, m, day, hh, mm, ss, 0, time.UTC)
	if t.Day() != day && ss != 60 {
		return time.Time{}, errBadDate // 31 Feb
	}
	return t, nil
}

// num parses a fixed-width run of decimal digits.
func num(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// fold compares ASCII strings without regard to case.
func fold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y || !('a' <= x && x <= 'z') {
			return false
		}
	}
	return true
}

var (
	weekdays = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	months   = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

// shortWeekday reports a three-letter day name.
func shortWeekday(s string) bool {
	for _, w := range weekdays {
		if fold(s, w[:3]) {
			return true
		}
	}
	return false
}

// longWeekday reports a full day name (rfc850).
func longWeekday(s string) bool {
	for _, w := range weekdays {
		if fold(s, w) {
			return true
		}
	}
	return false
}

// month returns the month of a three-letter name, 0 when it is none.
func month(s string) time.Month {
	for i, m := range months {
		if fold(s, m) {
			return time.Month(i + 1)
		}
	}
	return 0
}
