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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go c.reloadOnHUP(ctx, hup, s, logger)
	return s.run(ctx)
}

// reloadOnHUP re-reads the configuration on SIGHUP and hands it to the components that reload.
func (c *cli) reloadOnHUP(ctx context.Context, hup <-chan os.Signal, s *suite, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			cfg, err := c.load()
			if err != nil {
				logger.Error("reload rejected: configuration invalid, keeping the running one", "err", err)
				continue
			}
			s.reload(cfg, logger)
		}
	}
}

// suite is a running set of components behind one admin listener.
type suite struct {
	cfg   *config.Config
	group *component.Group
	// reloaders are components that take a new configuration on SIGHUP.
	reloaders []func(*config.Config) error
	// tlsConfig is the proxy's TLS configuration (its certificates), nil without one (tls.go).
	tlsConfig *tls.Config
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

	s := &suite{cfg: cfg}
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

// reload passes a new configuration to every component that can take one.
func (s *suite) reload(cfg *config.Config, logger *slog.Logger) {
	for _, r := range s.reloaders {
		if err := r(cfg); err != nil {
			logger.Error("reload rejected, the old state keeps serving", "err", err)
			return
		}
	}
	logger.Info("reloaded", "components", len(s.reloaders))
}
