// Package bench measures servers over the network, as black boxes: a delay line that emulates
// a link's latency and bandwidth in user space, the classic HTTP page-load scorecard with its
// textbook models, an HTTP load generator, a cache-size curve, a DNS load generator and
// self-contained HTML reports. It imports no server package.
package bench

import (
	"errors"
	"fmt"
)

// UsageError marks an error in the command line or the options (a bad duration, n ≤ 0, an
// unknown strategy). Commands return it wrapped; `outpost` maps it to exit status 2 with
// errors.As(err, new(*bench.UsageError)).
type UsageError struct {
	// Err says what is wrong, naming the flag.
	Err error
}

// Error returns the message of the wrapped error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *UsageError) Unwrap() error { return e.Err }

// usagef returns a *UsageError with a formatted message.
func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// IsUsage reports whether err is (or wraps) a *UsageError.
func IsUsage(err error) bool {
	var ue *UsageError
	return errors.As(err, &ue)
}
