package cache

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is the JSON document GET /cache/stats returns.
type Stats struct {
	URLs        int     `json:"urls"`
	Entries     int     `json:"entries"`
	MemoryBytes int64   `json:"memory_bytes"`
	DiskEntries int     `json:"disk_entries"`
	DiskBytes   int64   `json:"disk_bytes"`
	Hits        uint64  `json:"hits"`
	Misses      uint64  `json:"misses"`
	HitRatio    float64 `json:"hit_ratio"`
	MemHits     uint64  `json:"memory_hits"`
	DiskHits    uint64  `json:"disk_hits"`
	Refresh304  uint64  `json:"revalidated_304"`
	Refresh200  uint64  `json:"revalidated_200"`
	Collapsed   uint64  `json:"collapsed"`
	StaleServed uint64  `json:"stale_served"`
	NotModified uint64  `json:"not_modified_from_cache"`
	Stored      uint64  `json:"stored"`
	NotStored   uint64  `json:"not_stored"`
	Evictions   uint64  `json:"evictions"`
	Refused     uint64  `json:"admission_refused"`
	DiskEvicted uint64  `json:"disk_evictions"`
	DiskCorrupt uint64  `json:"disk_corrupt"`
	Purges      uint64  `json:"purges"`
	SoftPurges  uint64  `json:"soft_purges"`  // purges that marked stale
	Tags        int     `json:"tags"`         // distinct purge tags in the index
	TagsDropped uint64  `json:"tags_dropped"` // response tags ignored (limits, bytes)
}

// Stats returns a snapshot of the cache's counters and sizes.
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(),
		MemHits: c.stats.memHits.Load(), DiskHits: c.stats.diskHits.Load(),
		Refresh304: c.stats.refreshHits.Load(), Refresh200: c.stats.refreshMisses.Load(),
		Collapsed: c.stats.collapsed.Load(), StaleServed: c.stats.staleServed.Load(),
		NotModified: c.stats.notModified.Load(), Stored: c.stats.stored.Load(),
		NotStored: c.stats.notStored.Load(), Evictions: c.stats.evictions.Load(),
		Refused: c.stats.admissionRefused.Load(), DiskEvicted: c.stats.diskEvictions.Load(),
		DiskCorrupt: c.stats.diskCorrupt.Load(), Purges: c.stats.purges.Load(),
		SoftPurges: c.stats.softPurges.Load(), TagsDropped: c.stats.tagsDropped.Load(),
	}
	s.Tags = c.st.tags.count()
	s.URLs, s.Entries = c.st.counts()
	s.MemoryBytes = c.memBytes()
	if c.st.disk != nil {
		s.DiskEntries, s.DiskBytes = c.st.disk.usage()
	}
	if total := s.Hits + s.Misses; total > 0 {
		s.HitRatio = float64(s.Hits) / float64(total)
	}
	return s
}

// memBytes is the memory tier's charged cost.
func (c *Cache) memBytes() int64 {
	if c.st.mem == nil || c.st.mem.Metrics == nil {
		return 0
	}
	return int64(c.st.mem.Metrics.CostAdded() - c.st.mem.Metrics.CostEvicted())
}

// mountAdmin registers POST /cache/purge and GET /cache/stats.
func (c *Cache) mountAdmin(mux *http.ServeMux) {
	if mux == nil {
		return
	}
	mux.HandleFunc("POST /cache/purge", c.handlePurge)
	mux.HandleFunc("GET /cache/explain", c.handleExplain)
	mux.HandleFunc("GET /cache/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(c.Stats())
	})
}

// handlePurge removes one URL (url), every URL under a prefix (prefix) or every object
// carrying a tag (tags), given as a JSON object or as query or form parameters
// (purgeapi.go); soft marks them stale instead.
func (c *Cache) handlePurge(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	p, err := readAdminPurge(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if p.Tags != nil {
		c.handleTagPurge(w, p)
		return
	}
	raw, prefix := p.URL, false
	if raw == "" {
		raw, prefix = p.Prefix, true
	}
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" {
		http.Error(w, "want url=<absolute URL> or prefix=<absolute URL prefix>", http.StatusBadRequest)
		return
	}
	key := purgeKeyOf(c.rulesForURL(u), u, nil, prefix) // a bare host becomes "http://host/": every path of that host, no other host
	n := 0
	rep := c.purgeEverywhere(PurgeTarget{URL: u, Prefix: prefix, Soft: p.Soft}, func() { n = c.apply(purgeSpec{key: key, prefix: prefix, soft: p.Soft}) })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(purgeAnswer{Purged: n, Key: displayKey(key), Prefix: &prefix, Soft: p.Soft, PurgeReport: rep})
}

// registerMetrics exposes the counters to Prometheus.
func (c *Cache) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "outpost", Subsystem: "cache", Name: name, Help: help},
			func() float64 { return float64(f()) })
	}
	st := &c.stats
	cs := []prometheus.Collector{
		counter("hits_total", "Responses served from storage.", st.hits.Load),
		counter("misses_total", "Responses fetched from the origin.", st.misses.Load),
		counter("memory_hits_total", "Hits served from the memory tier.", st.memHits.Load),
		counter("disk_hits_total", "Hits served from the disk tier.", st.diskHits.Load),
		counter("revalidated_not_modified_total", "Revalidations answered 304.", st.refreshHits.Load),
		counter("revalidated_modified_total", "Revalidations answered with a new response.", st.refreshMisses.Load),
		counter("collapsed_total", "Requests served from another request's fetch.", st.collapsed.Load),
		counter("stale_served_total", "Stale responses served.", st.staleServed.Load),
		counter("evictions_total", "Memory-tier evictions.", st.evictions.Load),
		counter("admission_refused_total", "Memory-tier admissions refused.", st.admissionRefused.Load),
		counter("disk_evictions_total", "Disk-tier evictions.", st.diskEvictions.Load),
		counter("disk_corrupt_total", "Disk entries dropped as corrupt.", st.diskCorrupt.Load),
		counter("disk_refused_total", "Objects the disk tier did not store because its file system was (nearly) full.", st.diskRefused.Load),
		counter("stored_total", "Responses stored.", st.stored.Load),
		counter("not_stored_total", "Responses not stored.", st.notStored.Load),
		counter("soft_purges_total", "Purges that marked objects stale instead of removing them.", st.softPurges.Load),
		counter("tags_dropped_total", "Response purge tags ignored for cache.max_tags, cache.max_tag_length or their bytes.", st.tagsDropped.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "outpost", Subsystem: "cache", Name: "memory_bytes", Help: "Bytes charged to the memory tier."},
			func() float64 { return float64(c.memBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "outpost", Subsystem: "cache", Name: "disk_bytes", Help: "Bytes in the disk tier."},
			func() float64 {
				if c.st.disk == nil {
					return 0
				}
				_, b := c.st.disk.usage()
				return float64(b)
			}),
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
