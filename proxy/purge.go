package proxy

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/proxy/wire"
)

// Purge fan-out ([proxy.purge]): a purge the cache accepted goes up to every parent, is
// applied here, then goes down to every peer — top-down, so no cache refills from one that
// still holds the object. Each forwarded purge is a PURGE request to the other cache's proxy
// listener (origin-form, the URL's Host, as its reverse routes expect), marked with
// cache.PurgeMarker: "up" purges are passed on (up to that cache's parents, down to its
// peers), "down" purges are only applied. Up purges carry the Via chain, so a cycle of parents
// ends in a 508 at the first repeat; down purges end where they arrive. The receiver checks its
// own cache.purge_allow.

// purgeFanout is the proxy's cache.PurgeFanout.
type purgeFanout struct {
	parents, peers []string
	timeout        time.Duration
	d              *dialer
	via            string // this hop's Via entry
	log            *slog.Logger
}

// newPurgeFanout builds the fan-out, or returns nil when there is nobody to tell.
func newPurgeFanout(cfg config.ProxyConfig, d *dialer, log *slog.Logger) *purgeFanout {
	if len(cfg.Parents.Servers) == 0 && len(cfg.Purge.Peers) == 0 {
		return nil
	}
	return &purgeFanout{parents: cfg.Parents.Servers, peers: cfg.Purge.Peers, timeout: cfg.Purge.Timeout,
		d: d, via: "1.1 " + cfg.ViaPseudonym, log: log}
}

// Fanout forwards t up, runs local, forwards t down, within the configured timeout.
func (f *purgeFanout) Fanout(t cache.PurgeTarget, local func()) cache.PurgeReport {
	var rep cache.PurgeReport
	if t.Arrived == cache.PurgeDown {
		local()
		return rep
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	via := append(append([]string(nil), t.Via...), f.via)
	f.send(ctx, f.parents, func(addr string) []byte { return purgeRequest(routedTo(t, addr), cache.PurgeUp, via) }, &rep)
	local()
	f.send(ctx, f.peers, func(addr string) []byte { return purgeRequest(routedTo(t, addr), cache.PurgeDown, nil) }, &rep)
	return rep
}

// routedTo gives a purge without a URL (an admin tag purge that named no host) the other
// cache's address as its Host: its routes must then match that (host = "*" does).
func routedTo(t cache.PurgeTarget, addr string) cache.PurgeTarget {
	if t.URL == nil {
		t.URL = &url.URL{Scheme: "http", Host: addr, Path: "/"}
	}
	return t
}

// purgeRequest renders the PURGE sent for t in direction dir, with via when set.
func purgeRequest(t cache.PurgeTarget, dir string, via []string) []byte {
	target := t.URL.RequestURI()
	if target == "" || target[0] != '/' {
		target = "/" + strings.TrimPrefix(target, "/")
	}
	b := wire.AppendRequestLine(nil, "PURGE", target)
	b = wire.AppendField(b, "Host", t.URL.Host)
	marker := dir
	if t.Prefix {
		marker += ", prefix"
	}
	b = wire.AppendField(b, cache.PurgeMarker, marker)
	if len(t.Tags) > 0 {
		b = wire.AppendField(b, "Surrogate-Key", strings.Join(t.Tags, " ")) // tags are visible ASCII without spaces
	}
	if t.Soft {
		b = wire.AppendField(b, cache.SoftPurgeField, "1")
	}
	for _, v := range via {
		b = wire.AppendField(b, "Via", v)
	}
	b = wire.AppendField(b, "User-Agent", "outpost-purge")
	return append(b, "Connection: close\r\n\r\n"...)
}

// send delivers req(addr) to every address at once and waits for their answers (or ctx's end).
func (f *purgeFanout) send(ctx context.Context, addrs []string, req func(addr string) []byte, rep *cache.PurgeReport) {
	if len(addrs) == 0 {
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f.deliver(ctx, addr, req(addr))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Failed = append(rep.Failed, addr+": "+err.Error())
				f.log.Warn("purge not forwarded", "peer", addr, "err", err)
				return
			}
			rep.Forwarded++
		}()
	}
	wg.Wait()
}

// deliver sends one PURGE to addr: 200 (purged) and 404 (nothing stored there) are success.
func (f *purgeFanout) deliver(ctx context.Context, addr string, req []byte) error {
	nc, err := f.d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := nc.Write(req); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	var head wire.ResponseHead
	if err := head.Read(bufio.NewReaderSize(nc, 4<<10), wire.Limits{MaxBytes: maxResponseHead}); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if head.Status != 200 && head.Status != 404 {
		return fmt.Errorf("status %d", head.Status)
	}
	return nil
}

// peerCache is what the proxy tells a cache that can take part in a hierarchy (cache.Cache).
type peerCache interface {
	SetName(name string)
	SetPurgeFanout(f cache.PurgeFanout)
}

// keyRuleTaker is a cache that applies the routes' cache-key rules to URLs given without a
// request (cache.Cache: purge by URL, /cache/explain).
type keyRuleTaker interface {
	SetKeyRules(f func(u *url.URL) *cache.KeyRules)
}

// joinHierarchy names the cache after the proxy (its Cache-Status member) and gives it the
// purge fan-out.
func (s *Server) joinHierarchy() {
	if kc, ok := s.opts.Cache.(keyRuleTaker); ok {
		kc.SetKeyRules(func(u *url.URL) *cache.KeyRules { return s.live.Load().routes.keyRulesFor(u) }) // the running routes' rules
	}
	pc, ok := s.opts.Cache.(peerCache)
	if !ok {
		return
	}
	pc.SetName(s.cfg.ViaPseudonym)
	if f := newPurgeFanout(s.cfg, s.dialer, s.log); f != nil {
		pc.SetPurgeFanout(f)
	}
}
