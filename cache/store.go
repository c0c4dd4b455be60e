package cache

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

// urlRecord is the cache's own index entry for one primary key: ristretto cannot list its keys,
// so purge by prefix, Vary variants and the disk tier are found through it.
type urlRecord struct {
	key   string
	vary  []string          // field names of the latest stored response's Vary
	items map[uint64]uint64 // item keys stored for this URL (memory and/or disk) → store order
	seq   uint64
}

// store is the memory tier, the disk tier and the index over both.
type store struct {
	mem         *ristretto.Cache[uint64, *entry] // nil when memory_size is 0
	memMax      int64                            // per-object limit of the memory tier
	disk        *diskStore                       // nil when the disk tier is off
	maxVariants int
	stats       *counters

	mu    sync.RWMutex
	index map[uint64]*urlRecord // primary hash → record

	tags *tagIndex     // purge tags of the items in index (tags.go); locked after mu
	seq  atomic.Uint64 // store order of responses (entry.seq) and of tag purges
	ban  tagBans       // tag purges in progress (tags.go)
}

// newMemory builds the ristretto tier for a byte budget.
func newMemory(budget int64, stats *counters, onGone func(*entry)) (*ristretto.Cache[uint64, *entry], error) {
	if budget <= 0 {
		return nil, nil
	}
	counters := min(max(budget/2048*10, 10_000), 20_000_000)
	return ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters: counters,
		MaxCost:     budget,
		BufferItems: 64,
		Metrics:     true,
		KeyToHash:   func(k uint64) (uint64, uint64) { return k, 0 },
		OnEvict: func(it *ristretto.Item[*entry]) {
			stats.evictions.Add(1)
			onGone(it.Value)
		},
		OnReject: func(it *ristretto.Item[*entry]) {
			stats.admissionRefused.Add(1)
			onGone(it.Value)
		},
	})
}

// memGet returns the memory entry at item key k if it is the one for key and secondary.
func (s *store) memGet(k uint64, key []byte, secondary string) *entry {
	if s.mem == nil {
		return nil
	}
	e, ok := s.mem.Get(k)
	if !ok || e == nil || string(key) != e.key || e.secondary != secondary || s.banned(e) {
		return nil
	}
	return e
}

// memGetString is memGet for a key held as a string.
func (s *store) memGetString(k uint64, key, secondary string) *entry {
	if s.mem == nil {
		return nil
	}
	e, ok := s.mem.Get(k)
	if !ok || e == nil || key != e.key || e.secondary != secondary || s.banned(e) {
		return nil
	}
	return e
}

// lookupResult is a stored response found for a request, or why there was none.
type lookupResult struct {
	e    *entry // body nil when it must be read from disk
	disk *diskItem
	miss string // Cache-Status fwd value when e is nil: uri-miss or vary-miss
}

// lookup finds the stored response for a request's primary key and Vary'd fields.
func (s *store) lookup(h uint64, key string, req fields) lookupResult {
	s.mu.RLock()
	rec := s.index[h]
	var vary []string
	if rec != nil && rec.key == key {
		vary = rec.vary
	} else {
		rec = nil
	}
	s.mu.RUnlock()
	if rec == nil {
		return lookupResult{miss: "uri-miss"}
	}
	sec := secondaryKey(vary, req)
	k := itemKey(h, key, sec)
	if e := s.memGetString(k, key, sec); e != nil {
		return lookupResult{e: e}
	}
	if s.disk != nil {
		if it := s.disk.get(k); it != nil && it.e.key == key && it.e.secondary == sec && !s.banned(it.e) {
			return lookupResult{e: it.e, disk: it}
		}
	}
	if len(vary) > 0 {
		return lookupResult{miss: "vary-miss"}
	}
	return lookupResult{miss: "miss"}
}

// put stores e in memory (when it fits) and records it in the index. toDisk also queues it for
// the disk tier (a response already written there by a streaming fetch passes false).
func (s *store) put(h uint64, e *entry, toDisk bool) {
	stale, ok := s.index1(h, e)
	if !ok { // fetched before a purge of one of its tags
		if !toDisk && s.disk != nil && e.body == nil {
			s.disk.remove(e.item) // streamed to disk meanwhile
		}
		return
	}
	for _, k := range stale {
		s.dropItem(k)
	}
	if s.mem != nil && e.body != nil && e.size <= s.memMax {
		if !s.mem.Set(e.item, e, e.cost()) {
			s.stats.admissionRefused.Add(1) // dropped under load: only a lost hit
			s.gone(e, false)
		}
	}
	if toDisk && s.disk != nil && e.body != nil && e.partial == nil {
		s.disk.enqueue(e)
	}
}

// index1 records e under its primary key and returns the item keys it makes unreachable: all
// variants when the Vary field list changed, or the oldest ones beyond max_variants. ok is
// false, and nothing is recorded, for a response that a tag purge since its fetch banned.
func (s *store) index1(h uint64, e *entry) (stale []uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.banned(e) {
		return nil, false
	}
	rec := s.index[h]
	if rec == nil || rec.key != e.key {
		rec = &urlRecord{key: e.key, items: map[uint64]uint64{}}
		s.index[h] = rec
	}
	if !equalStrings(rec.vary, e.vary) {
		for k := range rec.items {
			if k != e.item {
				stale = append(stale, k)
			}
		}
		clear(rec.items)
		rec.vary = e.vary
	}
	if _, replacing := rec.items[e.item]; !replacing {
		for len(rec.items) >= s.maxVariants {
			oldest, at := uint64(0), uint64(1<<64-1)
			for k, n := range rec.items {
				if n < at {
					oldest, at = k, n
				}
			}
			delete(rec.items, oldest)
			stale = append(stale, oldest)
		}
	}
	rec.seq++
	rec.items[e.item] = rec.seq
	s.tags.set(e.item, h, e.tags, e.seq)
	return stale, true
}

// indexIfAbsent records an entry that reached a tier on its own (a disk write finishing after
// the memory tier dropped it), unless the URL's Vary has changed meanwhile.
func (s *store) indexIfAbsent(h uint64, e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.index[h]
	if rec == nil {
		rec = &urlRecord{key: e.key, vary: e.vary, items: map[uint64]uint64{}}
		s.index[h] = rec
	}
	if rec.key != e.key || !equalStrings(rec.vary, e.vary) || s.banned(e) {
		return
	}
	if _, ok := rec.items[e.item]; !ok {
		rec.seq++
		rec.items[e.item] = rec.seq
		s.tags.set(e.item, h, e.tags, e.seq)
	}
}

// equalStrings compares two string lists.
func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// dropItem removes one stored response from both tiers (and its tags).
func (s *store) dropItem(k uint64) {
	s.tags.forget(k)
	s.dropTiers(k)
}

// dropTiers removes one stored response from both tiers.
func (s *store) dropTiers(k uint64) {
	if s.mem != nil {
		s.mem.Del(k)
	}
	if s.disk != nil {
		s.disk.remove(k)
	}
}

// gone is called when a tier lets an entry go: the index forgets it unless the other tier
// still holds it.
func (s *store) gone(e *entry, fromDisk bool) {
	if e == nil {
		return
	}
	if !fromDisk && s.disk != nil && s.disk.get(e.item) != nil {
		return
	}
	if fromDisk && s.mem != nil {
		if m, ok := s.mem.Get(e.item); ok && m != nil && m.key == e.key {
			return
		}
	}
	h := primaryHash(e.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.index[h]; rec != nil && rec.key == e.key {
		delete(rec.items, e.item)
		s.tags.forget(e.item)
		if len(rec.items) == 0 {
			delete(s.index, h)
		}
	}
}

// purge removes every stored response whose primary key is key, or starts with it when
// prefix is set. It returns how many responses it removed.
func (s *store) purge(key string, prefix bool) int {
	s.mu.Lock()
	var items []uint64
	for h, rec := range s.index {
		if rec.key == key || (prefix && strings.HasPrefix(rec.key, key)) {
			for k := range rec.items {
				items = append(items, k)
			}
			delete(s.index, h)
		}
	}
	s.mu.Unlock()
	for _, k := range items {
		s.dropItem(k)
	}
	return len(items)
}

// counts returns the number of URLs and stored responses in the index.
func (s *store) counts() (urls, items int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, rec := range s.index {
		items += len(rec.items)
	}
	return len(s.index), items
}

// counters are the cache's statistics, updated atomically on the request path and read by
// /cache/stats and the Prometheus collectors.
type counters struct {
	hits, misses          atomic.Uint64 // responses served from storage / fetched
	memHits, diskHits     atomic.Uint64 // hits by tier
	refreshHits           atomic.Uint64 // revalidations answered 304
	refreshMisses         atomic.Uint64 // revalidations answered with a new response
	collapsed             atomic.Uint64 // requests served from another request's fetch
	staleServed           atomic.Uint64 // stale responses served (max-stale, swr, stale-if-error)
	notModified           atomic.Uint64 // 304s made from cache for conditional requests
	stored                atomic.Uint64 // responses stored
	notStored             atomic.Uint64 // cacheable-method responses not stored
	evictions             atomic.Uint64 // memory-tier evictions
	admissionRefused      atomic.Uint64 // memory-tier admissions refused by ristretto
	diskEvictions         atomic.Uint64 // disk-tier evictions
	diskCorrupt           atomic.Uint64 // disk entries dropped for a bad checksum or size
	diskDropped           atomic.Uint64 // disk writes dropped because the queue was full
	diskRefused           atomic.Uint64 // disk writes refused or failed for a full file system
	invalidations, purges atomic.Uint64 // §4.4 invalidations / PURGE and admin purges
	softPurges            atomic.Uint64 // purges that marked stale (softpurge.go)
	tagsDropped           atomic.Uint64 // response tags ignored for cache.max_tags, max_tag_length or their bytes
}
