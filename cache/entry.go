package cache

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outpost-proxy/outpost/proxy/wire"
)

// entry is one stored response. It is immutable once built: a refresh (304) or a new response
// builds a new entry, so readers never see a half-written object.
type entry struct {
	key       string   // primary key (scheme://host/path?query), checked against hash collisions
	secondary string   // Vary-selected request values ("" without Vary)
	item      uint64   // memory/disk key
	vary      []string // canonical Vary field names
	status    int
	header    http.Header // stored end-to-end fields: no hop-by-hop, Age, Content-Length
	head      []byte      // status line + header + Content-Length, CRLF-terminated lines
	body      []byte      // immutable payload; nil when only the disk tier holds it
	size      int64       // payload length (the complete length for a partial entry)
	partial   []byteRange // byte ranges held when incomplete (RFC 9111 §3.3); nil when complete
	etag      string
	lastMod   string
	timing    timing
	policy    policy
	heuristic bool
	used      *atomic.Int64 // last use, unix seconds; shared by the entry's copies and its disk file
	tags      []string      // purge tags from cache.tag_header (tags.go)
	purged    *atomic.Int64 // soft purge: freshness lifetime cap + 1 in ns, 0 = none; shared by the copies (softpurge.go)
	seq       uint64        // store order (store.seq) when fetched; 0 for entries read at start-up; tag purges ban older ones
}

// touch records a use of the entry (for the disk tier's LRU order), writing at most once a
// second so that hits on a popular object do not contend on it.
func (e *entry) touch(now time.Time) {
	if e.used == nil {
		return
	}
	if s := now.Unix(); e.used.Load() != s {
		e.used.Store(s)
	}
}

// notStored are the fields a cache never keeps: the hop-by-hop ones (RFC 9110 §7.6.1, wire's
// one list) plus the framing and age fields the cache recomputes.
var notStored = append(wire.HopByHop(), hdrContentLength, hdrAge)

// storedHeader copies the fields a cache keeps (RFC 9111 §3.1): without hop-by-hop fields,
// fields named in Connection, Age and framing, the targeted field meant for Outpost, and the
// fields a qualified no-cache or private names (never sent without revalidation, §5.2.2.4,
// §5.2.2.7). A response without Date gets the time of receipt (RFC 9110 §6.6.1).
func storedHeader(h http.Header, d *respDirectives, stripCDN bool, received time.Time) http.Header {
	out := h.Clone()
	for _, line := range h[hdrConnection] {
		for _, f := range strings.Split(line, ",") {
			out.Del(strings.TrimSpace(f))
		}
	}
	for _, f := range notStored {
		delete(out, f)
	}
	delete(out, hdrOutpostCC)
	if stripCDN {
		delete(out, hdrCDNCacheControl)
	}
	for _, f := range d.noCacheFields {
		delete(out, f)
	}
	for _, f := range d.privateFields {
		delete(out, f)
	}
	if len(out[hdrDate]) == 0 {
		out[hdrDate] = []string{received.UTC().Format(http.TimeFormat)}
	}
	return out
}

// bodyAllowed reports whether a response with this status carries content (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// serializeHead renders the status line and fields once (names sorted, values sanitised),
// for WriteStored.
func serializeHead(status int, h http.Header, size int64) []byte {
	b := make([]byte, 0, 64+wire.HeaderSize(h))
	b = wire.AppendStatusLine(b, status)
	b = wire.AppendHeader(b, h, true, nil)
	if bodyAllowed(status) {
		b = wire.AppendContentLength(b, size)
	}
	return b
}

// cost is the entry's memory charge: head, body, key and an estimate of the parsed header.
func (e *entry) cost() int64 {
	n := int64(len(e.head)+len(e.key)+len(e.secondary)) + int64(len(e.body)) + 512
	for _, t := range e.tags {
		n += int64(len(t)) + 64 // the tag index's share
	}
	for k, vs := range e.header {
		n += int64(len(k)) + 48
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// build fills the derived fields (validators, head) of an entry whose header, status and size
// are set.
func (e *entry) build() *entry {
	e.etag = e.header.Get(hdrETag)
	e.lastMod = e.header.Get(hdrLastModified)
	e.head = serializeHead(e.status, e.header, e.size)
	return e
}

// withBody returns a copy of e holding body in memory.
func (e *entry) withBody(body []byte) *entry {
	c := *e
	c.body = body
	return &c
}
