package cache

import (
	"net/http"
	"net/textproto"
	"strings"
	"sync"

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
			case containsString(tags, tok):
			case len(tags) >= r.max:
				dropped++
			default:
				tags = append(tags, tok)
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
// Surrogate-Key (space-separated; what the fan-out forwards).
func (c *Cache) purgeTagsOf(r Request) []string {
	rules := c.tagRules
	rules.max, rules.maxLen = maxPurgeTags, maxTagBytes
	var tags []string
	if rules.field != "" && rules.field != surrogateKey {
		tags, _ = rules.parse(r.Values(rules.field))
	}
	rules.comma = false
	more, _ := rules.parse(r.Values(surrogateKey))
	for _, t := range more {
		if !containsString(tags, t) {
			tags = append(tags, t)
		}
	}
	return tags
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
	byItem map[uint64][]string // item key → its tags (the strings of their tagSets)
}

// tagSet is the items carrying one tag.
type tagSet struct {
	name  string            // the tag; one copy shared by every item's list
	items map[uint64]uint64 // item key → primary hash
}

// newTagIndex returns an empty index.
func newTagIndex() *tagIndex {
	return &tagIndex{byTag: map[string]*tagSet{}, byItem: map[uint64][]string{}}
}

// set records the tags of item k (primary hash h), replacing those it had.
func (x *tagIndex) set(k, h uint64, tags []string) {
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
	x.byItem[k] = own
}

// forget drops item k's tags.
func (x *tagIndex) forget(k uint64) {
	x.mu.Lock()
	x.forgetLocked(k)
	x.mu.Unlock()
}

// forgetLocked is forget with x.mu held.
func (x *tagIndex) forgetLocked(k uint64) {
	tags, ok := x.byItem[k]
	if !ok {
		return
	}
	delete(x.byItem, k)
	for _, t := range tags {
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
	return append([]string(nil), x.byItem[k]...)
}

// tagBatch is how many items a tag purge removes per lock hold: the index's locks are never
// held for long, so lookups and stores go on while a tag of 100,000 objects is purged.
const tagBatch = 1024

// purgeTags removes every stored response carrying one of tags and returns how many.
func (s *store) purgeTags(tags []string) int {
	n := 0
	batch := make([]itemRef, 0, tagBatch)
	for _, tag := range tags {
		for k, h := range s.tags.detach(tag) {
			batch = append(batch, itemRef{k: k, h: h})
			if len(batch) == tagBatch {
				n += s.dropItems(batch)
				batch = batch[:0]
			}
		}
	}
	return n + s.dropItems(batch)
}

// itemRef is an item key and the primary hash of its URL.
type itemRef struct{ k, h uint64 }

// dropItems removes items from the tag index, the URL index and both tiers, and returns how
// many the URL index still held.
func (s *store) dropItems(batch []itemRef) int {
	if len(batch) == 0 {
		return 0
	}
	s.tags.mu.Lock()
	for _, it := range batch {
		s.tags.forgetLocked(it.k)
	}
	s.tags.mu.Unlock()
	n := 0
	s.mu.Lock()
	for _, it := range batch {
		rec := s.index[it.h]
		if rec == nil {
			continue
		}
		if _, ok := rec.items[it.k]; ok {
			n++
			delete(rec.items, it.k)
			if len(rec.items) == 0 {
				delete(s.index, it.h)
			}
		}
	}
	s.mu.Unlock()
	for _, it := range batch {
		s.dropTiers(it.k)
	}
	return n
}
