package cache

import (
	"slices"
	"strings"
)

// Vary selection (RFC 9111 §4.1) matches two requests' selecting fields when one can be turned
// into the other by whitespace, by combining field lines, or "by normalizing both header field
// values in a way that is known to have identical semantics, according to the header field's
// specification (e.g., reordering field values when order is not significant; case-
// normalization, where values are defined to be case-insensitive)". secondaryKey combines lines
// and drops whitespace around commas for every field; the fields below also get their own
// semantics.
//
// Accept-Language (RFC 9110 §12.5.4: language ranges are case-insensitive, RFC 4647 §2.1),
// Accept-Encoding (§12.5.3: codings are case-insensitive tokens) and Accept-Charset (§12.5.2):
// each member is lowercased with the whitespace inside it removed ("de; q=0.5" is "de;q=0.5"),
// "q=1", "q=1.0"… dropped as the default weight, and the members sorted, since the weights
// say the preference, not the order. Members with equal weights do leave the choice to the
// server; an origin that broke such ties by order would see those requests share a variant.

// normalizedVary lists the fields whose values are normalised by their semantics.
var normalizedVary = map[string]bool{"Accept-Language": true, "Accept-Encoding": true, "Accept-Charset": true}

// normalizeVaryValue returns the normalised form of a combined value of field name (members
// separated by commas, whitespace around them already trimmed) — itself for other fields.
func normalizeVaryValue(name, v string) string {
	if !normalizedVary[name] {
		return v
	}
	members := strings.Split(strings.ToLower(v), ",")
	out := members[:0]
	for _, m := range members {
		m = strings.Join(strings.Fields(m), "") // "de; q=0.5" → "de;q=0.5"
		if base, q, ok := strings.Cut(m, ";q="); ok && isDefaultWeight(q) {
			m = base
		}
		if m != "" {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// isDefaultWeight reports a qvalue equal to 1 (RFC 9110 §12.4.2: "1", "1.", "1.000").
func isDefaultWeight(q string) bool {
	if q == "" || q[0] != '1' {
		return false
	}
	rest := strings.TrimPrefix(q[1:], ".")
	return len(rest) <= 3 && strings.Trim(rest, "0") == ""
}
