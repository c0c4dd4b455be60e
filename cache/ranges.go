package cache

import (
	"strconv"
	"strings"
)

// byteRange is a satisfiable range [start, end] (inclusive) of a representation.
type byteRange struct{ start, end int64 }

// maxRanges bounds the ranges served in one multipart/byteranges response (RFC 9110 §14.2
// lets a server ignore or reject excessive ranges).
const maxRanges = 16

// parseRange parses a Range field value for a representation of size bytes (RFC 9110 §14.1.2,
// §14.2). ok is false when the field is syntactically invalid or uses another unit (the range
// is then ignored and the whole representation sent); an empty result with ok true means
// no range is satisfiable (416). Overlapping or too many ranges make the field ignored.
func parseRange(v string, size int64) (ranges []byteRange, ok bool) {
	unit, spec, found := strings.Cut(strings.TrimSpace(v), "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return nil, false
	}
	n := 0
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if n++; n > maxRanges {
			return nil, false
		}
		r, valid, satisfiable := parseOneRange(part, size)
		if !valid {
			return nil, false
		}
		if satisfiable {
			ranges = append(ranges, r)
		}
	}
	if n == 0 {
		return nil, false
	}
	for i := range ranges {
		for j := range i {
			if ranges[i].start <= ranges[j].end && ranges[j].start <= ranges[i].end {
				return nil, false // overlapping ranges: ignore the field rather than amplify
			}
		}
	}
	return ranges, true
}

// parseOneRange parses "first-last", "first-" or "-suffix".
func parseOneRange(s string, size int64) (r byteRange, valid, satisfiable bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return r, false, false
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" {
		suffix, ok := parseDelta(b)
		if !ok || b == "" {
			return r, false, false
		}
		if suffix == 0 || size == 0 {
			return r, true, false
		}
		return byteRange{max(size-suffix, 0), size - 1}, true, true
	}
	first, ok := parseDigits(a)
	if !ok {
		return r, false, false
	}
	last := size - 1
	if b != "" {
		l, ok := parseDigits(b)
		if !ok || l < first {
			return r, false, false
		}
		last = min(l, size-1)
	}
	if first >= size {
		return r, true, false
	}
	return byteRange{first, last}, true, true
}

// parseDigits parses a non-negative decimal that fits an int64.
func parseDigits(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// contentRange renders a Content-Range value.
func contentRange(r byteRange, size int64) string {
	return "bytes " + strconv.FormatInt(r.start, 10) + "-" + strconv.FormatInt(r.end, 10) + "/" + strconv.FormatInt(size, 10)
}
