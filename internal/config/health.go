package config

import (
	"fmt"
	"strings"
	"time"
)

// ProxyRouteHealth is [proxy.routes.health]: the active health check of a route's origins.
// Checks are off while Path is empty. An origin that fails Fall checks in a row gets no
// traffic until it has passed Rise checks in a row; passive health (upstream.fail_timeout)
// applies as well.
type ProxyRouteHealth struct {
	// Path is the origin path a check GETs ("/healthz"), sent with the origin's own Host.
	Path string `mapstructure:"path"`
	// Interval is the time between two checks of one origin (0: 5s).
	Interval time.Duration `mapstructure:"interval"`
	// Timeout bounds one check: connecting, sending and reading the status line (0: 2s, at
	// most the interval).
	Timeout time.Duration `mapstructure:"timeout"`
	// Fall is how many failed checks in a row take a healthy origin down (0: 3).
	Fall int `mapstructure:"fall"`
	// Rise is how many passed checks in a row bring an origin that is down back (0: 2).
	Rise int `mapstructure:"rise"`
	// ExpectStatus lists the statuses that pass; empty means any 2xx or 3xx.
	ExpectStatus []int `mapstructure:"expect_status"`
}

// Defaults of [proxy.routes.health] for keys left at zero (routes are an array of tables,
// which viper gives no per-element defaults).
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthTimeout  = 2 * time.Second
	DefaultHealthFall     = 3
	DefaultHealthRise     = 2
)

// Enabled reports whether the route's origins are checked.
func (h ProxyRouteHealth) Enabled() bool { return h.Path != "" }

// Effective returns h with its zero values replaced by the defaults.
func (h ProxyRouteHealth) Effective() ProxyRouteHealth {
	if h.Interval == 0 {
		h.Interval = DefaultHealthInterval
	}
	if h.Timeout == 0 {
		h.Timeout = min(DefaultHealthTimeout, h.Interval)
	}
	if h.Fall == 0 {
		h.Fall = DefaultHealthFall
	}
	if h.Rise == 0 {
		h.Rise = DefaultHealthRise
	}
	return h
}

// Passes reports whether a check's status is a pass.
func (h ProxyRouteHealth) Passes(status int) bool {
	if len(h.ExpectStatus) == 0 {
		return status >= 200 && status < 400
	}
	for _, s := range h.ExpectStatus {
		if s == status {
			return true
		}
	}
	return false
}

// validate checks one route's health section; key is "proxy.routes[i].health".
func (h *ProxyRouteHealth) validate(key string) error {
	if h.Path == "" {
		if h.Interval != 0 || h.Timeout != 0 || h.Fall != 0 || h.Rise != 0 || len(h.ExpectStatus) > 0 {
			return errorf(key+".path", "must be set (e.g. \"/healthz\") for the other health keys to apply")
		}
		return nil
	}
	if !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \t\r\n") {
		return errorf(key+".path", "%q must start with / and contain no spaces", h.Path)
	}
	for k, d := range map[string]time.Duration{key + ".interval": h.Interval, key + ".timeout": h.Timeout} {
		if err := CheckNonNegative(k, d); err != nil {
			return err
		}
	}
	e := h.Effective()
	if e.Interval < 10*time.Millisecond {
		return errorf(key+".interval", "%s is shorter than 10ms", e.Interval)
	}
	if e.Timeout > e.Interval {
		return errorf(key+".timeout", "%s is longer than the interval (%s)", e.Timeout, e.Interval)
	}
	for k, n := range map[string]int{key + ".fall": h.Fall, key + ".rise": h.Rise} {
		if n < 0 || n > 100 {
			return errorf(k, "must be between 1 and 100 (0: the default), got %d", n)
		}
	}
	for i, s := range h.ExpectStatus {
		if s < 100 || s > 599 {
			return errorf(fmt.Sprintf("%s.expect_status[%d]", key, i), "%d is not an HTTP status", s)
		}
	}
	return nil
}
