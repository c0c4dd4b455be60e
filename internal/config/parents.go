package config

import (
	"fmt"
	"time"
)

// ProxyParentsConfig is [proxy.parents]: the parent tier. On a miss the proxy asks one of the
// servers (chosen per cache key by rendezvous hashing over the healthy ones) instead of the
// origin; with none healthy it goes to the origin directly.
type ProxyParentsConfig struct {
	// Servers are the parents' host:port addresses (their proxy listeners).
	Servers []string `mapstructure:"servers"`
	// Check is the health check: "http" (OPTIONS * answered by the parent itself, any status
	// below 500 is healthy) or "tcp" (a connection is accepted).
	Check string `mapstructure:"check"`
	// Interval is the time between two checks of one parent.
	Interval time.Duration `mapstructure:"interval"`
	// Timeout bounds one check.
	Timeout time.Duration `mapstructure:"timeout"`
	// Fall is how many failed checks in a row mark a healthy parent down.
	Fall int `mapstructure:"fall"`
	// Rise is how many good checks in a row bring a parent that is down back.
	Rise int `mapstructure:"rise"`
}

// ProxyPurgeConfig is [proxy.purge]: purge fan-out. A purge this cache accepts (PURGE from
// cache.purge_allow, or the admin's POST /cache/purge) is forwarded up to every parent and down
// to every peer, marked so that it is never forwarded back.
type ProxyPurgeConfig struct {
	// Peers are the host:port proxy listeners of the caches below (or beside) this one that
	// receive its purges: a parent lists its edges.
	Peers []string `mapstructure:"peers"`
	// Timeout bounds the whole fan-out: the purge's answer waits at most this long.
	Timeout time.Duration `mapstructure:"timeout"`
}

func defaultParents() ProxyParentsConfig {
	return ProxyParentsConfig{Check: "http", Interval: 2 * time.Second, Timeout: time.Second, Fall: 2, Rise: 2}
}

func defaultPurge() ProxyPurgeConfig {
	return ProxyPurgeConfig{Timeout: 2 * time.Second}
}

// MaxParents is how many proxy.parents.servers one proxy may have.
const MaxParents = 16

// validate checks [proxy.parents].
func (c *ProxyParentsConfig) validate() error {
	if len(c.Servers) > MaxParents {
		return errorf("proxy.parents.servers", "has %d entries, at most %d", len(c.Servers), MaxParents)
	}
	for i, s := range c.Servers {
		if err := CheckHostPort(fmt.Sprintf("proxy.parents.servers[%d]", i), s); err != nil {
			return err
		}
	}
	if c.Check != "http" && c.Check != "tcp" {
		return errorf("proxy.parents.check", "must be \"http\" or \"tcp\", got %q", c.Check)
	}
	for key, d := range map[string]time.Duration{"proxy.parents.interval": c.Interval, "proxy.parents.timeout": c.Timeout} {
		if err := CheckPositive(key, d); err != nil {
			return err
		}
	}
	if c.Timeout > c.Interval {
		return errorf("proxy.parents.timeout", "%v is longer than proxy.parents.interval (%v)", c.Timeout, c.Interval)
	}
	for key, n := range map[string]int{"proxy.parents.fall": c.Fall, "proxy.parents.rise": c.Rise} {
		if n < 1 || n > 100 {
			return errorf(key, "must be between 1 and 100, got %d", n)
		}
	}
	return nil
}

// validate checks [proxy.purge].
func (c *ProxyPurgeConfig) validate() error {
	for i, s := range c.Peers {
		if err := CheckHostPort(fmt.Sprintf("proxy.purge.peers[%d]", i), s); err != nil {
			return err
		}
	}
	return CheckPositive("proxy.purge.timeout", c.Timeout)
}
