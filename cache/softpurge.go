package cache

import (
	"strings"
	"sync/atomic"
	"time"
)

// Soft purge. Instead of removing the matched objects (URL, prefix or tag), a soft purge
// marks them stale: their freshness lifetime is cut to the age they had at the purge. The
// next request then revalidates (collapsed with its concurrent ones: one origin request), or
// is served stale while one background revalidation runs where the object allows it
// (stale-while-revalidate), and a failing origin is covered by the stale_on_error rules — a
// purge of a hot object sends no herd to the origin. The mark lives on the stored entry and
// is shared by its copies (memory, disk metadata); a revalidated or replaced object is a new
// entry without it. The mark is kept in memory (and in a disk file's metadata when the file
// is rewritten); a restart forgets the marks of disk-tier objects.

// newPurgeMark returns an entry's unset soft-purge mark.
func newPurgeMark() *atomic.Int64 { return new(atomic.Int64) }

// markStale cuts the entry's freshness lifetime to its age at now (an earlier mark stays).
// It reports whether the entry can carry a mark.
func (e *entry) markStale(now time.Time) bool {
	if e.purged == nil {
		return false
	}
	cut := int64(min(e.timing.currentAge(now), e.policy.lifetime)) + 1
	for {
		cur := e.purged.Load()
		if cur != 0 && cur <= cut {
			return true
		}
		if e.purged.CompareAndSwap(cur, cut) {
			return true
		}
	}
}

// livePolicy is the entry's serving policy with a soft purge applied: the lifetime is at most
// the age the entry had when it was purged.
func (e *entry) livePolicy() policy {
	p := e.policy
	if e.purged != nil {
		if cut := e.purged.Load(); cut != 0 {
			p.lifetime = min(p.lifetime, time.Duration(cut-1))
		}
	}
	return p
}

// softMarked reports whether the entry carries a soft-purge mark.
func (e *entry) softMarked() bool { return e.purged != nil && e.purged.Load() != 0 }

// markItem marks the stored responses at item key k stale in both tiers and reports whether
// there was one.
func (s *store) markItem(k uint64, now time.Time) bool {
	marked := false
	if s.mem != nil {
		if e, ok := s.mem.Get(k); ok && e != nil {
			marked = e.markStale(now)
		}
	}
	if s.disk != nil {
		if it := s.disk.get(k); it != nil && it.e.markStale(now) {
			marked = true
		}
	}
	return marked
}

// softPurge marks every stored response whose primary key is key (or starts with it, with
// prefix) stale, and returns how many.
func (s *store) softPurge(key string, prefix bool, now time.Time) int {
	var items []uint64
	s.mu.RLock()
	if !prefix {
		if rec := s.index[primaryHash(key)]; rec != nil && rec.key == key {
			for k := range rec.items {
				items = append(items, k)
			}
		}
	} else {
		for _, rec := range s.index {
			if strings.HasPrefix(rec.key, key) {
				for k := range rec.items {
					items = append(items, k)
				}
			}
		}
	}
	s.mu.RUnlock()
	return s.markItems(items, now)
}

// softPurgeTags marks every stored response carrying one of tags stale and returns how many.
func (s *store) softPurgeTags(tags []string, now time.Time) int {
	n := 0
	for _, tag := range tags {
		n += s.markItems(s.tags.items(tag), now)
	}
	return n
}

// markItems marks items stale and counts those found.
func (s *store) markItems(items []uint64, now time.Time) int {
	n := 0
	for _, k := range items {
		if s.markItem(k, now) {
			n++
		}
	}
	return n
}

// purgeSpec is what one accepted purge names: a URL key (or a prefix), or tags; soft marks
// stale instead of removing.
type purgeSpec struct {
	key    string
	prefix bool
	tags   []string
	soft   bool
}

// apply runs the purge on this cache's storage and returns how many stored responses it
// removed or marked.
func (c *Cache) apply(p purgeSpec) int {
	now := c.now()
	var n int
	switch {
	case len(p.tags) > 0 && p.soft:
		n = c.st.softPurgeTags(p.tags, now)
	case len(p.tags) > 0:
		n = c.st.purgeTags(p.tags, now)
	case p.soft:
		n = c.st.softPurge(p.key, p.prefix, now)
		if !p.prefix { // and the URL's include_headers variants, as purgeKey does (keyrules.go)
			n += c.st.softPurge(p.key+keyHeaderSep, true, now)
		}
	default:
		n = c.st.purgeKey(p.key, p.prefix)
	}
	c.stats.purges.Add(1)
	if p.soft {
		c.stats.softPurges.Add(1)
	}
	return n
}

// softPurgeRequested reads the Soft-Purge request field: "1" (or "true") asks for a soft
// purge.
func softPurgeRequested(values []string) bool {
	for _, v := range values {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "true", "yes":
			return true
		}
	}
	return false
}

// SoftPurgeField is the PURGE request field that asks for a soft purge ("1").
const SoftPurgeField = "Soft-Purge"

// storedMeanwhile looks again inside the flight (before its fetch): a request that found
// nothing usable may become a leader just after another flight stored or revalidated the
// object — a soft-purged hot object is revalidated once while its requests keep arriving.
// Then the request is served from storage and its flight publishes that to its followers,
// instead of asking the origin again. ok reports that it was.
func (t *txn) storedMeanwhile() (out Outcome, ok bool, err error) {
	c := t.c
	lr := c.st.lookup(t.h, t.key, t.r)
	if lr.e == nil || lr.e.partial != nil || lr.e.body == nil && lr.e.size != 0 {
		return out, false, nil // only from memory: a disk read that fails could not go forward now
	}
	if v, _ := decide(lr.e.timing, lr.e.livePolicy(), &t.rq, c.now()); v != useFresh {
		return out, false, nil
	}
	fl := t.fl
	fl.disk = lr.disk
	fl.publish(lr.e, true, true)
	if t.registered {
		c.flights.leave(fl)
	}
	fl.release()
	t.lr, t.now = lr, c.now()
	out, err = t.serveStored(statusHit+"; detail=stored-meanwhile", codeHit(lr.e, CodeMemHit))
	return out, true, err
}
