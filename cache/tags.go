package cache

import (
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// Tag purge. A response's tag field (cache.tag_header: Surrogate-Key, space-separated, as
// Fastly reads it; Cache-Tag, comma-separated, as Cloudflare does) labels the stored object;
// a purge by tag removes (or, soft, marks stale: softpurge.go) every object carrying one of
// the tags. The tag index mirrors the URL index of store.go: an item key is tagged exactly
// while the URL index holds it, so an eviction, a replacement, an expiry-driven removal or a
// purge forgets its tags too. The tags travel in the disk entry's metadata and the index is
// rebuilt by the disk tier's start-up scan.

// tagRules is how tags are read from a field: its name, its separator and the limits.
type tagRules struct {
	field  string // canonical field name; "" = tagging off
	comma  bool   // comma-separated (else whitespace-separated)
	max    int    // tags kept per object
	maxLen int    // longest tag kept, in bytes
}

// surrogateKey is the request field a PURGE names tags in whatever cache.tag_header says, and
// the one the purge fan-out forwards them in.
const surrogateKey = "Surrogate-Key"

// newTagRules reads the [cache] tag keys (validated by internal/config).
func newTagRules(cfg config.CacheConfig) tagRules {
	r := tagRules{field: textproto.CanonicalMIMEHeaderKey(cfg.TagHeader), max: cfg.MaxTags, maxLen: cfg.MaxTagLength}
	switch cfg.TagSeparator {
	case "comma":
		r.comma = true
	case "":
		r.comma = r.field == "Cache-Tag" || r.field == "Edge-Cache-Tag"
	}
	return r
}

// parse splits the field's lines into tags: separated by commas or by spaces and tabs, empty
// members and duplicates dropped, each a run of visible ASCII (33-126) other than a comma —
// a tag with other bytes, or longer than maxLen, is ignored, and only the first max tags are
// kept. dropped counts the tags ignored for the limits or their bytes.
func (r tagRules) parse(lines []string) (tags []string, dropped int) {
	var seen map[string]struct{} // past a few tags: duplicates found in O(1)
	for _, line := range lines {
		for len(line) > 0 {
			var tok string
			tok, line = nextTag(line, r.comma)
			if tok == "" {
				continue
			}
			switch {
			case len(tok) > r.maxLen || !validTag(tok):
				dropped++
			case seen == nil && containsString(tags, tok):
			case seen != nil && hasKey(seen, tok):
			case len(tags) >= r.max:
				dropped++
			default:
				tags = append(tags, tok)
				if seen != nil {
					seen[tok] = struct{}{}
				} else if len(tags) == 16 {
					seen = make(map[string]struct{}, 64)
					for _, t := range tags {
						seen[t] = struct{}{}
					}
				}
			}
		}
	}
	return tags, dropped
}

// nextTag cuts the first member off s: up to a comma (trimmed of spaces and tabs) or up to
// whitespace.
func nextTag(s string, comma bool) (tok, rest string) {
	if comma {
		tok, rest, _ = strings.Cut(s, ",")
		return strings.Trim(tok, " \t"), rest
	}
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// validTag reports a tag of visible ASCII without commas.
func validTag(t string) bool {
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' || t[i] == ',' {
			return false
		}
	}
	return t != ""
}

// hasKey reports whether set holds s.
func hasKey(set map[string]struct{}, s string) bool {
	_, ok := set[s]
	return ok
}

// containsString reports whether list holds s.
func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// takeTags reads the tags of a response header the cache is about to store or send, and
// removes the field from it when cache.strip_tag_header says so (h is the cache's own copy).
func (c *Cache) takeTags(h http.Header) []string {
	if c.tagRules.field == "" {
		return nil
	}
	tags, dropped := c.tagRules.parse(h[c.tagRules.field])
	if dropped > 0 {
		c.stats.tagsDropped.Add(uint64(dropped))
	}
	if c.cfg.StripTagHeader {
		delete(h, c.tagRules.field)
	}
	return tags
}

// stripTags removes the tag field from a header going to a client (when configured to).
func (c *Cache) stripTags(h http.Header) {
	if c.tagRules.field != "" && c.cfg.StripTagHeader {
		delete(h, c.tagRules.field)
	}
}

// purgeTagsOf reads the tags a PURGE names: in cache.tag_header (with its convention) and in
// Surrogate-Key (space-separated; what the fan-out forwards). named reports a tag field
// present, with or without a valid tag in it.
func (c *Cache) purgeTagsOf(r Request) (tags []string, named bool) {
	rules := c.tagRules
	rules.max, rules.maxLen = maxPurgeTags, maxTagBytes
	if rules.field != "" && rules.field != surrogateKey {
		v := r.Values(rules.field)
		tags, _ = rules.parse(v)
		named = len(v) > 0
	}
	rules.comma = false
	v := r.Values(surrogateKey)
	more, _ := rules.parse(v)
	for _, t := range more {
		if !containsString(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags, named || len(v) > 0
}

// Purge request limits: the tags of one purge are forwarded in one Surrogate-Key line.
const (
	maxPurgeTags = 1024
	maxTagBytes  = 4096
	maxTagLine   = 16 << 10 // bytes of tags in one purge
)

// checkPurgeTags validates the tags of an admin purge: each a valid tag, at most maxPurgeTags
// and maxTagLine bytes in all. It returns why not, or "".
func checkPurgeTags(tags []string) string {
	n := 0
	for _, t := range tags {
		if len(t) > maxTagBytes || !validTag(t) {
			return "a tag is 1 to 4096 bytes of visible ASCII other than a comma"
		}
		n += len(t) + 1
	}
	if len(tags) > maxPurgeTags || n > maxTagLine {
		return "too many tags in one purge (at most 1024 tags and 16 KiB)"
	}
	return ""
}

// tagIndex maps tags to the item keys carrying them and item keys to their tags. Its lock is
// taken after store.mu, never before it.
type tagIndex struct {
	mu     sync.Mutex
	byTag  map[string]*tagSet
	byItem map[uint64]itemTags // item key → its tags
}

// itemTags are the tags of one stored response (the strings of their tagSets) and its store
// order (entry.seq).
type itemTags struct {
	tags []string
	seq  uint64
}

// tagSet is the items carrying one tag.
type tagSet struct {
	name  string            // the tag; one copy shared by every item's list
	items map[uint64]uint64 // item key → primary hash
}

// newTagIndex returns an empty index.
func newTagIndex() *tagIndex {
	return &tagIndex{byTag: map[string]*tagSet{}, byItem: map[uint64]itemTags{}}
}

// set records the tags of item k (primary hash h; the response's store order seq), replacing
// those it had.
func (x *tagIndex) set(k, h uint64, tags []string, seq uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.forgetLocked(k)
	if len(tags) == 0 {
		return
	}
	own := make([]string, 0, len(tags))
	for _, t := range tags {
		set := x.byTag[t]
		if set == nil {
			set = &tagSet{name: strings.Clone(t), items: map[uint64]uint64{}}
			x.byTag[set.name] = set
		}
		set.items[k] = h
		own = append(own, set.name)
	}
	x.byItem[k] = itemTags{tags: own, seq: seq}
}

// forget drops item k's tags.
func (x *tagIndex) forget(k uint64) {
	x.mu.Lock()
	x.forgetLocked(k)
	x.mu.Unlock()
}

// forgetLocked is forget with x.mu held.
func (x *tagIndex) forgetLocked(k uint64) {
	it, ok := x.byItem[k]
	if !ok {
		return
	}
	delete(x.byItem, k)
	for _, t := range it.tags {
		if set := x.byTag[t]; set != nil {
			delete(set.items, k)
			if len(set.items) == 0 {
				delete(x.byTag, t)
			}
		}
	}
}

// detach removes tag from the index and returns its items (item key → primary hash); the
// items keep their other tags until dropped.
func (x *tagIndex) detach(tag string) map[uint64]uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.byTag[tag]
	if set == nil {
		return nil
	}
	delete(x.byTag, tag)
	return set.items
}

// items copies the item keys carrying tag.
func (x *tagIndex) items(tag string) []uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	set := x.byTag[tag]
	if set == nil {
		return nil
	}
	out := make([]uint64, 0, len(set.items))
	for k := range set.items {
		out = append(out, k)
	}
	return out
}

// count is the number of distinct tags.
func (x *tagIndex) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.byTag)
}

// tagsOf returns item k's tags (for tests and /cache/stats-like views).
func (x *tagIndex) tagsOf(k uint64) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.byItem[k].tags...)
}

// A purge by tag is visible at once and costs little whatever the number of objects: it
// bans the tags (banList: responses fetched before the purge that carry one of them are
// misses from then on, and are not stored) and hands their objects to a background
// reclaimer, which removes them from the indexes and both tiers in batches of tagBatch (the
// locks are never held for long, so lookups and stores go on while a tag of 100,000 objects
// is reclaimed) and then lifts the ban. Close waits for the reclaimer.

// tagBans are the tag purges in progress: the bans, and what lifts them.
type tagBans struct {
	list   atomic.Pointer[banList] // banned tags; nil: none
	mu     sync.Mutex              // serialises changes to list and toLift
	toLift map[string]uint64       // reclaimed bans, lifted once no older fetch is in flight
	// reclaiming counts each tag's reclaims still running: a ban is lifted only when none is
	// (a second purge of a tag, with nothing left to detach, must not lift the ban that hides
	// what the first one's reclaimer has yet to remove).
	reclaiming map[string]int
	flyMu      sync.Mutex
	flying     map[uint64]int // store order of responses whose bodies are being read → count
	reclaimer  sync.WaitGroup // background removal of purged tags' objects
	disk       *diskBans      // the bans kept in the disk tier's directory (nil without one)
	hurry      atomic.Bool    // closing: the reclaimer no longer yields to serving
}

// banList maps each banned tag to the store order (store.seq) of its purge: an entry whose
// seq is lower is gone. It is replaced, never modified, once published.
type banList map[string]uint64

// banned reports whether a tag purge since e was fetched removed it.
func (s *store) banned(e *entry) bool {
	if len(e.tags) == 0 {
		return false
	}
	b := s.ban.list.Load()
	if b == nil {
		return false
	}
	for _, t := range e.tags {
		if at, ok := (*b)[t]; ok && e.seq < at {
			return true
		}
	}
	return false
}

// setBans publishes a copy of the ban list with tags banned at at (at 0: lifted when still
// banned at lift).
func (s *store) setBans(tags []string, at, lift uint64) {
	s.ban.mu.Lock()
	defer s.ban.mu.Unlock()
	next := banList{}
	if b := s.ban.list.Load(); b != nil {
		for t, v := range *b {
			next[t] = v
		}
	}
	for _, t := range tags {
		switch {
		case at != 0:
			next[t] = at
		case next[t] == lift:
			delete(next, t)
		}
	}
	if len(next) == 0 {
		s.ban.list.Store(nil)
		return
	}
	s.ban.list.Store(&next)
}

// tagBatch is how many objects the reclaimer removes per lock hold.
const tagBatch = 256

// purgeTags removes every stored response carrying one of tags and returns how many: banned
// at once (under mu, so that no store slips between the ban and the hand-over), reclaimed in
// the background.
func (s *store) purgeTags(tags []string, now time.Time) int {
	at := s.seq.Add(1)
	s.ban.disk.add(tags, at, now) // durable before the answer: a restart drops what is left
	s.mu.Lock()
	s.setBans(tags, at, 0)
	sets := make([]map[uint64]uint64, 0, len(tags))
	for _, tag := range tags {
		if set := s.tags.detach(tag); len(set) > 0 {
			sets = append(sets, set)
		}
	}
	s.mu.Unlock()
	n := 0
	if len(sets) == 1 {
		n = len(sets[0])
	} else {
		all := map[uint64]struct{}{}
		for _, set := range sets {
			for k := range set {
				all[k] = struct{}{}
			}
		}
		n = len(all)
	}
	s.ban.mu.Lock()
	if s.ban.reclaiming == nil {
		s.ban.reclaiming = map[string]int{}
	}
	for _, t := range tags {
		s.ban.reclaiming[t]++
	}
	s.ban.mu.Unlock()
	s.ban.reclaimer.Add(1)
	go s.reclaim(sets, tags, at)
	return n
}

// reclaim removes the objects of purged tags in batches, then lifts their ban.
func (s *store) reclaim(sets []map[uint64]uint64, tags []string, at uint64) {
	defer s.ban.reclaimer.Done()
	batch := make([]itemRef, 0, tagBatch)
	for _, set := range sets {
		for k, h := range set {
			batch = append(batch, itemRef{k: k, h: h})
			if len(batch) == tagBatch {
				t0 := time.Now()
				s.dropItems(batch, at)
				batch = batch[:0]
				if !s.ban.hurry.Load() {
					time.Sleep(3 * time.Since(t0)) // a quarter of a core at most: serving goes first
				}
			}
		}
	}
	s.dropItems(batch, at)
	s.ban.mu.Lock()
	if s.ban.toLift == nil {
		s.ban.toLift = map[string]uint64{}
	}
	for _, t := range tags {
		s.ban.toLift[t] = max(s.ban.toLift[t], at)
		if s.ban.reclaiming[t]--; s.ban.reclaiming[t] <= 0 {
			delete(s.ban.reclaiming, t)
		}
	}
	s.ban.mu.Unlock()
	s.liftBans()
}

// liftBans lifts the reclaimed bans that no fetch in flight predates: a response fetched
// before the purge but still arriving keeps its tag banned, so that it is not stored.
func (s *store) liftBans() {
	oldest := s.oldestFlying()
	s.ban.mu.Lock()
	lift := map[string]uint64{}
	for t, a := range s.ban.toLift {
		if oldest >= a && s.ban.reclaiming[t] == 0 {
			lift[t] = a
			delete(s.ban.toLift, t)
		}
	}
	s.ban.mu.Unlock()
	for t, a := range lift {
		s.setBans([]string{t}, 0, s.banOf(t, a))
		s.ban.disk.lift(t, a)
	}
}

// banOf is the store order tag is banned at (lift when it is at most that, else 0).
func (s *store) banOf(tag string, lift uint64) uint64 {
	if b := s.ban.list.Load(); b != nil {
		if at := (*b)[tag]; at <= lift {
			return at
		}
	}
	return 0
}

// flyStart records a response whose body is being read from the origin.
func (s *store) flyStart(seq uint64) {
	s.ban.flyMu.Lock()
	if s.ban.flying == nil {
		s.ban.flying = map[uint64]int{}
	}
	s.ban.flying[seq]++
	s.ban.flyMu.Unlock()
}

// flyEnd records that it was stored or given up, and lifts the bans it was holding.
func (s *store) flyEnd(seq uint64) {
	s.ban.flyMu.Lock()
	if s.ban.flying[seq]--; s.ban.flying[seq] <= 0 {
		delete(s.ban.flying, seq)
	}
	s.ban.flyMu.Unlock()
	s.ban.mu.Lock()
	waiting := len(s.ban.toLift) > 0
	s.ban.mu.Unlock()
	if waiting {
		s.liftBans()
	}
}

// oldestFlying is the lowest store order of the responses in flight (the maximum without).
func (s *store) oldestFlying() uint64 {
	s.ban.flyMu.Lock()
	defer s.ban.flyMu.Unlock()
	oldest := ^uint64(0)
	for seq := range s.ban.flying {
		oldest = min(oldest, seq)
	}
	return oldest
}

// itemRef is an item key and the primary hash of its URL.
type itemRef struct{ k, h uint64 }

// dropItems removes the items of batch whose indexed response predates the purge at store
// order at from the tag index, the URL index and both tiers (one stored again since, or no
// longer indexed, stays), and returns how many the URL index still held.
func (s *store) dropItems(batch []itemRef, at uint64) int {
	s.tags.mu.Lock()
	keep := batch[:0]
	for _, it := range batch {
		if cur, ok := s.tags.byItem[it.k]; ok && cur.seq < at {
			s.tags.forgetLocked(it.k)
			keep = append(keep, it)
		}
	}
	s.tags.mu.Unlock()
	batch = keep
	if len(batch) == 0 {
		return 0
	}
	// Under mu, a response of the same item stored since the check above (put indexes it
	// under mu) is seen and kept. (The tiers' removals run after mu is released: ristretto's
	// Del may block on its buffer, whose consumer calls back into the store. A response
	// stored between the two may then lose its memory copy: one extra miss, never a stale
	// hit.)
	n := 0
	keep = batch[:0]
	s.mu.Lock()
	s.tags.mu.Lock()
	for _, it := range batch {
		if cur, ok := s.tags.byItem[it.k]; ok && cur.seq >= at {
			continue
		}
		keep = append(keep, it)
		if rec := s.index[it.h]; rec != nil {
			if _, ok := rec.items[it.k]; ok {
				n++
				delete(rec.items, it.k)
				if len(rec.items) == 0 {
					delete(s.index, it.h)
				}
			}
		}
	}
	s.tags.mu.Unlock()
	s.mu.Unlock()
	for _, it := range keep {
		s.dropTiers(it.k)
	}
	return n
}
