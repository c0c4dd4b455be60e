package cache

import (
	"net/url"
	"strings"
)

// A cache in a hierarchy (edges below a parent tier) names itself in Cache-Status and passes
// the purges it accepts on to the other caches (the proxy's [proxy.purge], proxy/purge.go).

// PurgeMarker is the request field of a purge one cache forwarded to another: "up" when it
// came from a cache below (an edge to its parent), "down" from a cache above or beside; with
// "prefix" it removes every URL under the target. A purge that carries it is still checked
// against cache.purge_allow; it only says how far the purge has gone.
const PurgeMarker = "Outpost-Purge"

// Purge directions in PurgeMarker and PurgeTarget.Arrived.
const (
	PurgeFromClient = ""     // a client's PURGE or the admin's POST /cache/purge
	PurgeUp         = "up"   // forwarded by a cache below
	PurgeDown       = "down" // forwarded by a cache above or a peer
)

// PurgeTarget is one accepted purge.
type PurgeTarget struct {
	// URL is the absolute URL (scheme, host, path and query) or, with Prefix, the URL prefix.
	URL *url.URL
	// Prefix removes every stored URL that starts with URL.
	Prefix bool
	// Tags, when set, purge every object carrying one of them (tags.go) instead of URL, which
	// then only routes the forwarded PURGE (nil: an admin purge that named no host; the
	// fan-out then addresses each cache by its own address).
	Tags []string
	// Soft marks the objects stale instead of removing them (softpurge.go).
	Soft bool
	// Arrived is how the purge reached this cache (PurgeFromClient, PurgeUp, PurgeDown).
	Arrived string
	// Via is the request's Via field values (the caches a forwarded purge passed).
	Via []string
}

// PurgeReport says where a purge was forwarded.
type PurgeReport struct {
	// Forwarded counts the caches that accepted it.
	Forwarded int `json:"forwarded"`
	// Failed names the caches that did not ("host:port: why").
	Failed []string `json:"failed,omitempty"`
}

// PurgeFanout forwards a purge this cache accepted. Fanout runs local, which removes the
// object here, at the moment the hierarchy needs it — after the caches above have dropped it,
// before those below do, so that no cache refills from one that still holds it — and returns
// when every cache answered or its time ran out.
type PurgeFanout interface {
	Fanout(t PurgeTarget, local func()) PurgeReport
}

// peering is the cache's place in a hierarchy: its Cache-Status name and purge fan-out. Both
// are set before the cache serves (SetName, SetPurgeFanout) and read-only afterwards.
type peering struct {
	name   string // Cache-Status member name; "" = "outpost"
	fanout PurgeFanout
}

// SetName sets the cache's name in Cache-Status (RFC 9211: one member per cache, so each tier
// of a hierarchy must be told apart; the proxy's via_pseudonym). Call it before serving.
func (c *Cache) SetName(name string) { c.peering.name = name }

// SetPurgeFanout makes accepted purges reach the other caches through f. Call it before
// serving.
func (c *Cache) SetPurgeFanout(f PurgeFanout) { c.peering.fanout = f }

// statusName is the cache's Cache-Status member name.
func (c *Cache) statusName() string {
	if c.peering.name == "" {
		return "outpost"
	}
	return c.peering.name
}

// purgeEverywhere removes t here (local) and, with a fan-out, from the other caches.
func (c *Cache) purgeEverywhere(t PurgeTarget, local func()) *PurgeReport {
	if c.peering.fanout == nil {
		local()
		return nil
	}
	rep := c.peering.fanout.Fanout(t, local)
	return &rep
}

// parsePurgeMarker reads PurgeMarker's values: the direction (up, down or "") and prefix.
// Unknown tokens are ignored; a field with both directions counts as down (never forwarded).
func parsePurgeMarker(values []string) (dir string, prefix bool) {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			switch strings.ToLower(strings.TrimSpace(tok)) {
			case PurgeDown:
				dir = PurgeDown
			case PurgeUp:
				if dir == "" {
					dir = PurgeUp
				}
			case "prefix":
				prefix = true
			}
		}
	}
	return dir, prefix
}

// purgeAnswer is the JSON body of a purge's answer: the responses removed here, and where the
// purge was forwarded when there is a fan-out.
type purgeAnswer struct {
	Purged int      `json:"purged"`
	Key    string   `json:"key,omitempty"`
	Prefix *bool    `json:"prefix,omitempty"`
	Tags   []string `json:"tags,omitempty"`
	Soft   bool     `json:"soft,omitempty"`
	*PurgeReport
}
