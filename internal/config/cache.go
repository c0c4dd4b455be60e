package config

// CacheConfig is the [cache] section.
type CacheConfig struct {
	// Enabled puts the cache in the proxy's request path.
	Enabled bool `mapstructure:"enabled"`
	// MemorySize is the memory tier's budget (headers + bodies).
	MemorySize ByteSize `mapstructure:"memory_size"`
	// MaxObjectSize is the largest object the memory tier keeps.
	MaxObjectSize ByteSize `mapstructure:"max_object_size"`
}

func defaultCache() CacheConfig {
	return CacheConfig{Enabled: true, MemorySize: 256 << 20, MaxObjectSize: 8 << 20}
}

func (c *CacheConfig) validate() error {
	if err := CheckNonNegative("cache.memory_size", c.MemorySize); err != nil {
		return err
	}
	return CheckNonNegative("cache.max_object_size", c.MaxObjectSize)
}
