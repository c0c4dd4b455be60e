package dnsredirect

import (
	"net/netip"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/internal/config"
)

// verdict is what response rate limiting does with one response.
type verdict uint8

const (
	rrlPass verdict = iota
	rrlDrop
	rrlSlip // send truncated (TC) so a real client retries over TCP
)

// rrl limits UDP responses per client network (/24 for IPv4, /56 for IPv6 by default) with a
// token bucket per network, as BIND's and Knot's response rate limiting do. Every slip-th
// limited response is sent truncated instead of dropped.
type rrl struct {
	rate, burst float64
	slip        uint32
	v4, v6      int
	exempt      []netip.Prefix
	perShard    int
	shards      [32]rrlShard
	now         func() time.Time
}

type rrlShard struct {
	mu sync.Mutex
	m  map[netip.Prefix]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time
	limited uint32
}

// newRRL returns the limiter of cfg, or nil when it is off.
func newRRL(cfg config.DNSRRLConfig) *rrl {
	if !cfg.Enabled {
		return nil
	}
	r := &rrl{rate: float64(cfg.ResponsesPerSecond), burst: float64(max(cfg.Burst, 1)), slip: uint32(cfg.Slip),
		v4: cfg.IPv4Prefix, v6: cfg.IPv6Prefix, perShard: max(cfg.TableSize/32, 1), now: time.Now}
	r.exempt, _ = config.ParsePrefixes("dns.rrl.exempt", cfg.Exempt)
	for i := range r.shards {
		r.shards[i].m = map[netip.Prefix]*bucket{}
	}
	return r
}

// check charges one response to client's network.
func (r *rrl) check(client netip.Addr) verdict {
	client = client.Unmap()
	for _, p := range r.exempt {
		if p.Contains(client) {
			return rrlPass
		}
	}
	bits := r.v6
	if client.Is4() {
		bits = r.v4
	}
	net, _ := client.Prefix(bits)
	b := net.Addr().As16()
	sh := &r.shards[(uint(b[0])^uint(b[1])*7^uint(b[2])*31^uint(b[3])*131^uint(b[6])*17)%uint(len(r.shards))]
	now := r.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	bk := sh.m[net]
	if bk == nil {
		if len(sh.m) >= r.perShard {
			for k := range sh.m { // evict an arbitrary network
				delete(sh.m, k)
				break
			}
		}
		bk = &bucket{tokens: r.burst, last: now}
		sh.m[net] = bk
	}
	bk.tokens = min(r.burst, bk.tokens+now.Sub(bk.last).Seconds()*r.rate)
	bk.last = now
	if bk.tokens >= 1 {
		bk.tokens--
		return rrlPass
	}
	bk.limited++
	if r.slip > 0 && bk.limited%r.slip == 0 {
		return rrlSlip
	}
	return rrlDrop
}
