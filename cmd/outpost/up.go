package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/internal/admin"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/internal/logging"
)

// upCommand runs components: all enabled ones (only == nil) or the named ones.
func (c *cli) upCommand(use, short string, only []string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.serve(cmd.Context(), only)
		},
	}
}

// serve loads the configuration, starts the suite and runs it until the context ends.
func (c *cli) serve(ctx context.Context, only []string) error {
	cfg, err := c.load()
	if err != nil {
		return err
	}
	logger := logging.New(cfg.Log, c.stderr)
	applyRuntime(cfg.Runtime, logger)
	s, err := startSuite(ctx, cfg, only, logger)
	if err != nil {
		return err
	}
	reload := func() []error { return c.reloadFrom(s, logger) }
	if s.admin != nil {
		s.admin.MountReload(reload)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, reload)
	return s.run(ctx)
}

// reloadOnHUP reloads on SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, reload func() []error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload()
		}
	}
}

// reloadFrom re-reads the configuration and hands it to the suite (SIGHUP and POST /reload).
// It returns the errors that made it keep the running configuration, each logged.
func (c *cli) reloadFrom(s *suite, logger *slog.Logger) []error {
	cfg, err := c.load()
	if err != nil {
		errs := splitErrors(err)
		for _, e := range errs {
			logger.Error("reload rejected: configuration invalid, keeping the running one", "err", e)
		}
		s.reloads.WithLabelValues("rejected").Inc()
		return errs
	}
	errs := s.reload(cfg, logger)
	result := "ok"
	if len(errs) > 0 {
		result = "rejected"
	}
	s.reloads.WithLabelValues(result).Inc()
	return errs
}

// splitErrors lists the errors a joined error holds (err itself otherwise).
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

// suite is a running set of components behind one admin listener.
type suite struct {
	cfg   *config.Config
	group *component.Group
	admin *admin.Server // nil when [admin] is off
	// reloaders take a new configuration on SIGHUP and POST /reload, in two steps (reload).
	reloaders []reloader
	reloadMu  sync.Mutex             // one reload at a time
	reloads   *prometheus.CounterVec // outpost_reloads_total{result}: ok, rejected
	// tlsConfig is the proxy's TLS configuration (its certificates), nil without one (tls.go).
	tlsConfig *tls.Config
}

// reloader is one component's reload: prepare checks and builds what the new configuration
// changes and returns apply, which swaps it in. A component that cannot prepare apart
// (oneStep: the DNS server) applies in prepare, atomically, and is run after every other
// component has prepared.
type reloader struct {
	name    string
	oneStep bool
	prepare func(*config.Config) (apply func(), err error)
}

// startSuite builds the enabled components (or only the named ones), binds every listener and
// returns the suite ready to run. A bind failure shuts down what was bound and is returned.
func startSuite(ctx context.Context, cfg *config.Config, only []string, logger *slog.Logger) (*suite, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	reg := prometheus.NewRegistry() // the components' metrics, which the dashboard samples
	runtimeReg := prometheus.NewRegistry()
	runtimeReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	env := component.Env{Logger: logger, Metrics: reg, Admin: mux, DataDir: cfg.DataDir}

	s := &suite{cfg: cfg, reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_reloads_total",
		Help: "Configuration reloads (SIGHUP, POST /reload) by result: ok, or rejected (the running configuration kept)."}, []string{"result"})}
	s.reloads.WithLabelValues("ok")
	s.reloads.WithLabelValues("rejected")
	reg.MustRegister(s.reloads)
	want := func(name string, enabled bool) bool {
		if only == nil {
			return enabled
		}
		return slices.Contains(only, name)
	}
	built, err := buildComponents(cfg, env, want, s)
	if err != nil {
		return nil, usageError{err}
	}
	var cs []component.Component
	if cfg.Admin.Enabled {
		adm := admin.New(cfg.Admin.Listen, mux, prometheus.Gatherers{reg, runtimeReg}, func() bool { return s.group.Ready() }, logger.With("component", "admin"))
		if cfg.Admin.TokenFile != "" {
			tok, err := admin.LoadToken(cfg.Admin.TokenFile)
			if err != nil {
				return nil, usageError{err}
			}
			adm.RequireToken(tok)
		}
		s.admin = adm
		if cfg.Admin.Dashboard {
			adm.MountDashboard(admin.DashboardOptions{Interval: cfg.Admin.DashboardInterval, Window: cfg.Admin.DashboardWindow, Gatherer: reg})
		}
		if err := adminTLS(cfg, adm, s.tlsConfig); err != nil {
			return nil, usageError{err}
		}
		cs = append(cs, adm)
	}
	cs = append(cs, built...)
	s.group = component.NewGroup(logger, cs...)
	if err := s.group.Listen(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// run serves until ctx is done (SIGINT/SIGTERM) or a component fails, then shuts down within
// the grace period.
func (s *suite) run(ctx context.Context) error {
	err := s.group.Run(ctx, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), s.cfg.GracePeriod)
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown did not finish within grace_period %s: %w", s.cfg.GracePeriod, err)
	}
	return err
}

// reload passes a new configuration to every component that can take one: all of them
// prepare it first, and only when none rejects it is it applied, so a bad configuration
// leaves every component on the running one. Keys outside the reloaded sections are logged,
// as needing a restart. It returns the errors of the components that rejected it.
func (s *suite) reload(cfg *config.Config, logger *slog.Logger) []error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	// The running components named after their sections (proxy, cache, dns) reload those and
	// log their own restart-only keys; a change anywhere else needs a restart.
	reloaded := map[string]bool{}
	for _, r := range s.reloaders {
		reloaded[r.name] = true
	}
	for _, key := range config.ChangedKeys("", *s.cfg, *cfg) {
		section, _, _ := strings.Cut(key, ".")
		if !reloaded[section] || key == "dns.enabled" {
			logger.Warn("reload: this key changes on restart only; the running value stays", "key", key)
		}
	}
	ordered := slices.Clone(s.reloaders)
	slices.SortStableFunc(ordered, func(a, b reloader) int { return boolInt(a.oneStep) - boolInt(b.oneStep) })
	var applies []func()
	var errs []error
	for _, r := range ordered {
		if len(errs) > 0 && r.oneStep {
			break // a one-step component would apply: not once another has rejected
		}
		apply, err := r.prepare(cfg)
		if err != nil {
			errs = append(errs, splitErrors(err)...)
			continue
		}
		applies = append(applies, apply)
	}
	if len(errs) > 0 {
		logger.Error("reload rejected, the running configuration keeps serving", "errors", len(errs))
		return errs
	}
	for _, apply := range applies {
		apply()
	}
	logger.Info("reloaded", "components", len(s.reloaders))
	return nil
}

// boolInt is 1 for true (sorting one-step reloaders last).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
