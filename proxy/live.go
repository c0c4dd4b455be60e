package proxy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-proxy/outpost/internal/config"
)

// Live reload. What a reload may change — the routes with their origin pools and health
// checks, the forward policy (ACL, users file, deny lists, CONNECT ports) and the PAC settings
// — lives in one immutable value, live, that the server publishes with one atomic store. Each
// request loads it once, at admit, and keeps it to its end (slot.lv, the pool it was bound
// to), so a reload never changes a request half way and never touches a connection:
// established connections, pipelined requests and transfers in flight carry on under the
// configuration they started with, the next request takes the new one.
//
// The TLS certificates are reloaded with the rest (reloadCertificates), two-step as well.
//
// Pools are carried over: a new route whose pool spec (origins, balance, rewrite_host, health)
// equals an old route's shares that pool's client (its idle connections) and its origins (their
// passive and active health, their checkers). Clients no new pool uses are drained: their idle
// connections close, and connections of exchanges still running close when they end. Checkers
// of origins no longer configured stop.
//
// Everything else in [proxy] needs a restart (listen, limits and timeouts, upstream, parents,
// purge, access_log, ftp, resolve, via_pseudonym, tls.listen, tls.handshake_timeout, http2);
// a reload that changes it logs each such key and keeps the running value.

// live is one configuration's routes, pools and policy. Immutable once published.
type live struct {
	cfg    config.ProxyConfig // the running configuration: startup values but for reloadableKeys
	policy *policy
	routes *routeTable
}

// reloadableKeys are the [proxy] keys a reload applies (the certificates through
// reloadCertificates).
var reloadableKeys = []string{"proxy.routes", "proxy.allow", "proxy.auth_users_file", "proxy.auth_realm",
	"proxy.deny_hosts", "proxy.deny_ports", "proxy.connect_ports", "proxy.forward", "proxy.allow_trace",
	"proxy.pac", "proxy.tls.certificates", "proxy.tls.demo"}

// reloadable reports whether a changed key is applied by a reload.
func reloadable(key string) bool {
	for _, k := range reloadableKeys {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// withReloadable returns base (the startup configuration) with next's reloadable keys.
func withReloadable(base, next config.ProxyConfig) config.ProxyConfig {
	base.Routes, base.Allow, base.AuthUsersFile, base.AuthRealm = next.Routes, next.Allow, next.AuthUsersFile, next.AuthRealm
	base.DenyHosts, base.DenyPorts, base.ConnectPorts = next.DenyHosts, next.DenyPorts, next.ConnectPorts
	base.Forward, base.AllowTrace, base.PAC = next.Forward, next.AllowTrace, next.PAC
	base.TLS.Certificates, base.TLS.Demo = next.TLS.Certificates, next.TLS.Demo
	return base
}

// buildLive builds the routes, pools and policy of cfg, carrying over prev's pools (nil: the
// first). Every problem is returned (joined), each naming its key; nothing is started.
func (s *Server) buildLive(cfg config.ProxyConfig, prev *live) (*live, error) {
	lv := &live{cfg: cfg}
	var errs []error
	var err error
	if lv.policy, err = newPolicy(cfg); err != nil {
		errs = append(errs, err)
	}
	var prevRoutes *routeTable
	if prev != nil {
		prevRoutes = prev.routes
	}
	if lv.routes, err = newRouteTable(cfg, s.dialer, prevRoutes); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, rt := range lv.routes.routes {
		rt.pool.bg.srv = s
		rt.pool.parents = s.tier
	}
	return lv, nil
}

// PrepareReload builds what cfg changes without applying it: on success, apply publishes it
// (and starts and stops health checkers, drains unused pools); on failure the running
// configuration is untouched and err lists every problem, each naming its key. Keys that need
// a restart are logged and keep their running values. Reloads are meant to be serialised (the
// suite does); an apply whose configuration was replaced by another reload since it was
// prepared does nothing and counts as rejected.
func (s *Server) PrepareReload(cfg config.ProxyConfig) (apply func(), err error) {
	prev := s.live.Load()
	for _, key := range config.ChangedKeys("proxy", prev.cfg, cfg) {
		if !reloadable(key) {
			s.log.Warn("proxy: reload: this key changes on restart only; the running value stays", "key", key)
		}
	}
	lv, err := s.buildLive(withReloadable(s.cfg, cfg), prev)
	applyCerts := func() {}
	if err == nil {
		applyCerts, err = s.reloadCertificates(cfg)
	}
	if err != nil {
		s.m.reloads.WithLabelValues("rejected").Inc()
		for _, e := range splitErrors(err) {
			s.log.Error("proxy: reload rejected, the previous configuration keeps serving", "err", e)
		}
		return nil, fmt.Errorf("proxy: reload: %w", err)
	}
	return func() {
		if s.publish(prev, lv) {
			applyCerts()
		}
	}, nil
}

// reloadCertificates loads the certificates of cfg's [proxy.tls] (tls.go loadCertificates:
// the files are read again, so a renewed certificate at the same path is picked up), so that a
// bad one rejects the whole reload naming its key; the apply it returns makes them the ones
// new handshakes get, on the TLS listeners and the admin listener's, together with the rest
// of the reload (connections already established keep theirs). A proxy that started without
// certificates has no TLS listener to give them to: that needs a restart.
func (s *Server) reloadCertificates(cfg config.ProxyConfig) (apply func(), err error) {
	if s.certs.cur.Load() == nil {
		return func() {}, nil
	}
	set, demo, err := loadCertificates(cfg.TLS, s.env.DataDir)
	if err != nil {
		return nil, err
	}
	return func() {
		s.certs.cur.Store(set)
		s.mu.Lock()
		s.demo = demo
		s.mu.Unlock()
	}, nil
}

// Reload applies cfg at once (PrepareReload, then apply).
func (s *Server) Reload(cfg config.ProxyConfig) error {
	apply, err := s.PrepareReload(cfg)
	if err != nil {
		return err
	}
	apply()
	return nil
}

// publish makes lv the running configuration, if prev still is: its checkers start, prev's
// pools and origins that lv does not carry over are drained and stopped. It reports whether
// lv was published.
func (s *Server) publish(prev, lv *live) bool {
	if !s.live.CompareAndSwap(prev, lv) { // another reload was applied since this one was prepared
		s.m.reloads.WithLabelValues("rejected").Inc()
		s.log.Error("proxy: reload not applied: another reload was applied after it was prepared")
		return false
	}
	lv.routes.startChecks(s)
	keptClients := map[*client]bool{}
	keptOrigins := map[*origin]bool{}
	for _, rt := range lv.routes.routes {
		keptClients[rt.pool.cl] = true
		for _, o := range rt.pool.origins {
			keptOrigins[o] = true
		}
	}
	for _, rt := range prev.routes.routes {
		if !keptClients[rt.pool.cl] {
			rt.pool.cl.drain()
		}
		for _, o := range rt.pool.origins {
			if !keptOrigins[o] {
				o.stopCheck()
			}
		}
	}
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("proxy: configuration reloaded", "routes", len(lv.routes.routes))
	return true
}

// splitErrors returns the errors a joined error holds (err itself otherwise).
func splitErrors(err error) []error {
	var j interface{ Unwrap() []error }
	if !errors.As(err, &j) {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, splitErrors(e)...)
	}
	return out
}
