// Package cache is Outpost's RFC 9111 shared HTTP cache: freshness and validation decisions,
// keys and Vary, a ristretto memory tier, a crash-safe disk tier, request collapsing and
// conditional responses. The proxy calls it through the seam in seam.go.
package cache

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// Cache is the shared cache. It implements Handler and io.Closer.
type Cache struct {
	cfg      config.CacheConfig
	log      *slog.Logger
	now      func() time.Time      // injected clock; time.Now outside tests
	policy   atomic.Pointer[knobs] // the settings a reload changes (Reload)
	st       *store
	flights  flightGroup
	stats    counters
	peering  peering  // Cache-Status name and purge fan-out (purgefanout.go)
	tagRules tagRules // how response tags are read (tags.go)

	keyRules func(*url.URL) *KeyRules // the proxy's route rules for a URL (keyrules.go)

	refreshing sync.Map       // item key → struct{}: background revalidations in progress
	bg         sync.WaitGroup // background revalidations
	pumps      sync.WaitGroup // origin bodies being read into storage
	closed     atomic.Bool
}

var _ Handler = (*Cache)(nil)

// New builds the cache from its configuration: the memory tier, the disk tier (under
// filepath.Join(env.DataDir, "cache") unless cache.disk_dir says otherwise, its index rebuilt
// by scanning), the admin endpoints on env.Admin and the metrics on env.Metrics.
func New(cfg config.CacheConfig, env component.Env) (*Cache, error) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	allow, err := config.ParsePrefixes("cache.purge_allow", cfg.PurgeAllow)
	if err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, log: env.Logger, now: time.Now, tagRules: newTagRules(cfg)}
	c.policy.Store(newKnobs(cfg, allow))
	c.st = &store{memMax: int64(cfg.MaxObjectSize), maxVariants: max(cfg.MaxVariants, 1), stats: &c.stats, index: map[uint64]*urlRecord{}, tags: newTagIndex()}
	c.st.mem, err = newMemory(int64(cfg.MemorySize), &c.stats, func(e *entry) { c.st.gone(e, false) })
	if err != nil {
		return nil, fmt.Errorf("cache: memory tier: %w", err)
	}
	if cfg.DiskEnabled {
		if err := c.openDisk(cfg, env.DataDir); err != nil {
			c.st.mem.Close()
			return nil, err
		}
	}
	if err := c.registerMetrics(env.Metrics); err != nil {
		c.Close()
		return nil, err
	}
	c.mountAdmin(env.Admin)
	return c, nil
}

// knobs are the cache's policy settings that Reload changes: heuristic freshness, stale
// serving, collapsing, purge_allow and strip_cdn_cache_control. Each use loads them once;
// a value is never modified after it was stored.
type knobs struct {
	cfg        config.CacheConfig // the reloaded fields are read from here
	heur       heuristics
	purgeAllow []netip.Prefix
}

func newKnobs(cfg config.CacheConfig, allow []netip.Prefix) *knobs {
	return &knobs{cfg: cfg, heur: heuristics{fraction: cfg.HeuristicFraction, max: cfg.HeuristicMax}, purgeAllow: allow}
}

// knobs returns the running policy settings.
func (c *Cache) knobs() *knobs { return c.policy.Load() }

// reloadableKeys are the [cache] keys Reload applies; the rest (sizes, the disk tier,
// max_variants, enabled) need a restart.
var reloadableKeys = map[string]bool{"cache.heuristic_fraction": true, "cache.heuristic_max": true,
	"cache.stale_on_error": true, "cache.stale_on_5xx": true, "cache.stale_max": true, "cache.collapse": true,
	"cache.collapse_timeout": true, "cache.purge_allow": true, "cache.strip_cdn_cache_control": true}

// Reload applies cfg's policy settings (reloadableKeys) to requests that start from now on;
// changed keys that need a restart are logged and keep their running values. A bad
// purge_allow keeps the running settings and is returned, naming the key.
func (c *Cache) Reload(cfg config.CacheConfig) error {
	allow, err := config.ParsePrefixes("cache.purge_allow", cfg.PurgeAllow)
	if err != nil {
		c.log.Error("cache: reload rejected, the previous settings keep serving", "err", err)
		return fmt.Errorf("cache: reload: %w", err)
	}
	for _, key := range config.ChangedKeys("cache", c.cfg, cfg) {
		if !reloadableKeys[key] {
			c.log.Warn("cache: reload: this key changes on restart only; the running value stays", "key", key)
		}
	}
	c.policy.Store(newKnobs(cfg, allow))
	c.log.Info("cache: policy settings reloaded")
	return nil
}

// openDisk opens the disk tier and indexes what it holds.
func (c *Cache) openDisk(cfg config.CacheConfig, dataDir string) error {
	dir := cfg.DiskDir
	if dir == "" {
		dir = filepath.Join(dataDir, "cache")
	}
	d := &diskStore{
		dir: dir, budget: int64(cfg.DiskSize), maxObject: int64(cfg.DiskMaxObjectSize),
		log: c.log, stats: &c.stats, now: func() time.Time { return c.now() },
		onRemove: func(e *entry) { c.st.gone(e, true) },
		onAdd:    func(e *entry) { c.st.indexIfAbsent(primaryHash(e.key), e) },
	}
	c.st.disk = d
	bans := loadDiskBans(dir, c.log)
	err := openDisk(d, func(e *entry) {
		if bans.drops(e) {
			d.remove(e.item) // purged by tag before a restart that came before its removal
			return
		}
		c.st.index1(primaryHash(e.key), e)
	})
	if err == nil {
		bans.clear() // every file it applied to is gone
		c.st.ban.disk = bans
	}
	return err
}

// Close waits for background revalidations, flushes the disk tier's write queue and stops the
// memory tier. The proxy calls it at shutdown, after the last Serve has returned.
func (c *Cache) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.st.ban.hurry.Store(true)
	idle := waitAtMost(&c.bg, 10*time.Second) && waitAtMost(&c.pumps, 10*time.Second) && waitAtMost(&c.st.ban.reclaimer, 10*time.Second)
	if c.st.disk != nil {
		c.st.disk.close()
	}
	if c.st.mem != nil && idle {
		c.st.mem.Close() // not while a stuck pump may still Set into it
	}
	return nil
}

// waitAtMost waits for wg, giving up after d (an origin that never finishes a body must not
// hold up shutdown).
func waitAtMost(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// primaryHash hashes a primary key as the request path does.
func primaryHash(key string) uint64 { return xxhash.Sum64String(key) }
