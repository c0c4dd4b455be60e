package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Error is a configuration error: the dotted key that is wrong and why.
type Error struct {
	Key    string // dotted key, e.g. "proxy.listen"
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("config: %s: %s", e.Key, e.Reason) }

// errorf returns an *Error for key with a formatted reason.
func errorf(key, format string, args ...any) error {
	return &Error{Key: key, Reason: fmt.Sprintf(format, args...)}
}

// Errorf is errorf for the section files' validators and for components that validate further.
func Errorf(key, format string, args ...any) error { return errorf(key, format, args...) }

// ByteSize is a size in bytes. In TOML it is an integer or a string with a unit:
// "512", "64KiB", "8MiB", "1GiB", "10MB" (1000-based), "1k" (1024-based, as curl and nginx read it).
type ByteSize int64

// UnmarshalText parses a size such as "8MiB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

// String renders the size in the largest binary unit that divides it exactly.
func (b ByteSize) String() string {
	n := int64(b)
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
}

// ParseByteSize parses "123", "64KiB", "1m", "2GB". Negative sizes are errors.
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] == '-' || t[i] == '+' || (t[i] >= '0' && t[i] <= '9')) {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (want e.g. 512, 64KiB, 8MiB)", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	m, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q", s, unit)
	}
	if n > (1<<62)/m {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * m, nil
}

// CheckHostPort checks that value is a host:port listen or dial address with a numeric port
// (port 0 means "any free port", as in tests).
func CheckHostPort(key, value string) error {
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		return errorf(key, "%q is not a host:port address: %v", value, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return errorf(key, "%q has an invalid port %q", value, port)
	}
	if strings.ContainsAny(host, " /\\") {
		return errorf(key, "%q has an invalid host %q", value, host)
	}
	return nil
}

// CheckPositive checks that a numeric setting is greater than zero.
func CheckPositive[T ~int | ~int64 | ~float64](key string, v T) error {
	if v <= 0 {
		return errorf(key, "must be greater than zero, got %v", v)
	}
	return nil
}

// CheckNonNegative checks that a numeric setting is zero or more.
func CheckNonNegative[T ~int | ~int64 | ~float64](key string, v T) error {
	if v < 0 {
		return errorf(key, "must not be negative, got %v", v)
	}
	return nil
}

// ParsePrefixes parses CIDR strings (a bare address counts as a /32 or /128 host prefix).
func ParsePrefixes(key string, values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for i, s := range values {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, errorf(fmt.Sprintf("%s[%d]", key, i), "%q is not a CIDR prefix or address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
