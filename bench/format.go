package bench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/outpost-proxy/outpost/internal/config"
)

// humanBytes formats a byte count or rate with binary units.
func humanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// formatCounts formats a map of counts as "k=v" pairs in key order.
func formatCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString("  ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// ParseSize parses a byte size such as 512, 64KiB, 8MiB or 2GB.
func ParseSize(flag, s string) (int64, error) {
	n, err := config.ParseByteSize(s)
	if err != nil {
		return 0, usagef("%s: %v", flag, err)
	}
	return n, nil
}

// ParseSizeRange parses "SIZE" or "MIN..MAX".
func ParseSizeRange(flag, s string) (lo, hi int64, err error) {
	a, b, ok := strings.Cut(s, "..")
	if lo, err = ParseSize(flag, a); err != nil {
		return 0, 0, err
	}
	if !ok {
		return lo, lo, nil
	}
	if hi, err = ParseSize(flag, b); err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, usagef("%s: %q: the maximum is below the minimum", flag, s)
	}
	return lo, hi, nil
}

// ParseBandwidth parses a rate in bytes per second ("1MiB", "500KB") or, with a "bit" suffix,
// bits per second ("8Mbit", "100kbit"); empty means no cap.
func ParseBandwidth(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.TrimSuffix(strings.TrimSpace(strings.ToLower(s)), "/s")
	if num, ok := strings.CutSuffix(t, "bit"); ok {
		mult := int64(1)
		switch {
		case strings.HasSuffix(num, "k"):
			mult, num = 1000, strings.TrimSuffix(num, "k")
		case strings.HasSuffix(num, "m"):
			mult, num = 1000_000, strings.TrimSuffix(num, "m")
		case strings.HasSuffix(num, "g"):
			mult, num = 1000_000_000, strings.TrimSuffix(num, "g")
		}
		n, err := config.ParseByteSize(num)
		if err != nil || n <= 0 {
			return 0, usagef("%s: %q is not a rate (e.g. 8Mbit, 1MiB)", flag, s)
		}
		return max(1, n*mult/8), nil
	}
	n, err := config.ParseByteSize(t)
	if err != nil || n <= 0 {
		return 0, usagef("%s: %q is not a rate (e.g. 8Mbit, 1MiB)", flag, s)
	}
	return n, nil
}
