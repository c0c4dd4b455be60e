package config

// RuntimeConfig is the [runtime] section: the Go runtime's garbage collector, for the whole
// process. The GOGC and GOMEMLIMIT environment variables, when set, take precedence (the Go
// runtime reads them at start, and outpost leaves them alone).
type RuntimeConfig struct {
	// GCPercent is GOGC: the heap may grow by this percentage over the live heap before a
	// collection; -1 turns the proportional trigger off (then MemoryLimit must be set).
	GCPercent int `mapstructure:"gc_percent"`
	// MemoryLimit is GOMEMLIMIT: a soft limit on the memory the Go runtime uses, which makes it
	// collect more often as the limit nears; 0 means none.
	MemoryLimit ByteSize `mapstructure:"memory_limit"`
}

func defaultRuntime() RuntimeConfig { return RuntimeConfig{GCPercent: 100} }

func (c *RuntimeConfig) validate() error {
	if c.GCPercent < -1 || c.GCPercent == 0 || c.GCPercent > 10000 {
		return errorf("runtime.gc_percent", "must be -1 (off) or between 1 and 10000, got %d", c.GCPercent)
	}
	if err := CheckNonNegative("runtime.memory_limit", c.MemoryLimit); err != nil {
		return err
	}
	if c.MemoryLimit > 0 && c.MemoryLimit < 16<<20 {
		return errorf("runtime.memory_limit", "must be 0 (none) or at least 16MiB, got %d bytes", c.MemoryLimit)
	}
	if c.GCPercent == -1 && c.MemoryLimit == 0 {
		return errorf("runtime.gc_percent", "-1 (off) needs runtime.memory_limit, or the heap grows without bound")
	}
	return nil
}
