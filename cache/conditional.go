package cache

import (
	"net/http"
	"strings"
	"time"
)

// This file evaluates a client's conditional request against a stored response
// (RFC 9110 §13.1, in the order of §13.2.2, and RFC 9111 §4.3.2). Pure functions.

// condResult is the outcome of evaluating preconditions.
type condResult int

const (
	condProceed         condResult = iota // send the selected representation
	condNotModified                       // 304
	condPreconditionErr                   // 412
)

// evalConditions applies If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since to
// a stored response with status, validators etag and lastMod and the given Date.
func evalConditions(h fields, method string, status int, etag, lastMod, date string) condResult {
	if status < 200 || status > 299 {
		return condProceed // preconditions apply to the selected representation of a 2xx
	}
	if im := h.Values(hdrIfMatch); len(im) > 0 {
		if !etagListMatch(im, etag, true) {
			return condPreconditionErr
		}
	} else if ius := firstValue(h, hdrIfUnmodifiedSince); ius != "" {
		if t, err := parseHTTPDate(ius); err == nil {
			if lm, err := parseHTTPDate(lastMod); err == nil && lm.After(t) {
				return condPreconditionErr
			}
		}
	}
	if method != http.MethodGet && method != http.MethodHead {
		return condProceed
	}
	if inm := h.Values(hdrIfNoneMatch); len(inm) > 0 {
		if etagListMatch(inm, etag, false) {
			return condNotModified
		}
		return condProceed
	}
	if ims := firstValue(h, hdrIfModifiedSince); ims != "" {
		t, err := parseHTTPDate(ims)
		if err != nil {
			return condProceed
		}
		if notModifiedSince(lastMod, date, t) {
			return condNotModified
		}
	}
	return condProceed
}

// notModifiedSince compares a stored response's Last-Modified (or, lacking it, its Date, as
// RFC 9111 §4.3.2 allows) with an If-Modified-Since time.
func notModifiedSince(lastMod, date string, since time.Time) bool {
	lm, err := parseHTTPDate(lastMod)
	if err != nil {
		if lm, err = parseHTTPDate(date); err != nil {
			return false
		}
	}
	return !lm.After(since)
}

// etagListMatch reports whether an If-Match / If-None-Match list matches etag, comparing
// strongly or weakly (RFC 9110 §8.8.3.2). "*" matches any current representation.
func etagListMatch(lines []string, etag string, strong bool) bool {
	for _, line := range lines {
		for line != "" {
			var item string
			item, line = nextItem(line)
			item = strings.TrimSpace(item)
			if item == "*" {
				return true
			}
			if etag != "" && etagMatch(item, etag, strong) {
				return true
			}
		}
	}
	return false
}

// etagMatch compares two entity-tags.
func etagMatch(a, b string, strong bool) bool {
	aw, bw := strings.HasPrefix(a, "W/"), strings.HasPrefix(b, "W/")
	if strong && (aw || bw) {
		return false
	}
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// notModifiedFields are the fields a 304 carries (RFC 9110 §15.4.5).
var notModifiedFields = []string{hdrCacheControl, hdrContentLocation, hdrDate, hdrETag, hdrExpires, hdrVary}

// notModifiedHeader builds the header of a 304 made from a stored response.
func notModifiedHeader(stored http.Header) http.Header {
	h := make(http.Header, len(notModifiedFields)+3)
	for _, f := range notModifiedFields {
		if v := stored[f]; len(v) > 0 {
			h[f] = v
		}
	}
	if len(h[hdrETag]) == 0 {
		if v := stored[hdrLastModified]; len(v) > 0 {
			h[hdrLastModified] = v
		}
	}
	return h
}
