package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/cache"
	"github.com/outpost-proxy/outpost/dnsredirect"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/origin/ftp"
	"github.com/outpost-proxy/outpost/origin/web"
	"github.com/outpost-proxy/outpost/proxy"
	"github.com/outpost-proxy/outpost/proxy/ftpgw"
)

// buildComponents constructs the wanted components in start order: origins and DNS first, the
// proxy last (so it stops first). Reloadable components register with s.
func buildComponents(cfg *config.Config, env component.Env, want func(name string, enabled bool) bool, s *suite) ([]component.Component, error) {
	var cs []component.Component
	if want("web", cfg.Web.Enabled) {
		w, err := web.New(cfg.Web, env.Named("web"))
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		cs = append(cs, w)
	}
	if want("ftp", cfg.FTP.Enabled) {
		f, err := ftp.New(cfg.FTP, env.Named("ftp"))
		if err != nil {
			return nil, fmt.Errorf("ftp: %w", err)
		}
		cs = append(cs, f)
	}
	if want("mail", cfg.Mail.Enabled) {
		mcs, err := mailComponents(cfg.Mail, env.Named("mail"))
		if err != nil {
			return nil, fmt.Errorf("mail: %w", err)
		}
		cs = append(cs, mcs...)
	}
	if want("dns", cfg.DNS.Enabled) {
		d, err := dnsredirect.New(cfg.DNS, env.Named("dns"))
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		s.reloaders = append(s.reloaders, reloader{name: "dns", oneStep: true, prepare: func(c *config.Config) (func(), error) {
			return func() {}, d.Reload(c.DNS)
		}})
		cs = append(cs, d)
	}
	if want("proxy", cfg.Proxy.Enabled) {
		p, err := buildProxy(cfg, env, s)
		if err != nil {
			return nil, err
		}
		s.tlsConfig = tlsConfigOf(p)
		cs = append(cs, p)
	}
	return cs, nil
}

// buildProxy constructs the proxy with its cache and ftp:// gateway when they are enabled, and
// registers their reloads with s.
func buildProxy(cfg *config.Config, env component.Env, s *suite) (component.Component, error) {
	var opts proxy.Options
	var closers []io.Closer
	if cfg.Cache.Enabled {
		c, err := cache.New(cfg.Cache, env.Named("cache"))
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		opts.Cache = c
		s.reloaders = append(s.reloaders, reloader{name: "cache", prepare: func(n *config.Config) (func(), error) {
			if _, err := config.ParsePrefixes("cache.purge_allow", n.Cache.PurgeAllow); err != nil {
				return nil, err
			}
			return func() { _ = c.Reload(n.Cache) }, nil
		}})
	}
	if cfg.Proxy.FTP.Enabled {
		gw, err := ftpgw.New(cfg.Proxy.FTP, env.Named("ftpgw").Logger)
		if err != nil {
			return nil, fmt.Errorf("proxy.ftp: %w", err)
		}
		opts.FTP = gw
		closers = append(closers, gw)
	}
	p, err := proxy.New(cfg.Proxy, env.Named("proxy"), opts)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.reloaders = append(s.reloaders, reloader{name: "proxy", prepare: func(n *config.Config) (func(), error) {
		return p.PrepareReload(n.Proxy)
	}})
	return closeAfter{p, closers}, nil
}

// closeAfter is a component that closes helpers it does not own itself (the ftp:// gateway's
// idle FTP sessions) once it has shut down. The proxy closes its cache itself.
type closeAfter struct {
	component.Component
	closers []io.Closer
}

// Shutdown shuts the component down, then closes the helpers.
func (c closeAfter) Shutdown(ctx context.Context) error {
	err := c.Component.Shutdown(ctx)
	for _, cl := range c.closers {
		err = errors.Join(err, cl.Close())
	}
	return err
}

// mailCommand is `outpost mail` (run the mail servers) with its queue subcommands.
func (c *cli) mailCommand() *cobra.Command {
	cmd := c.upCommand("mail", "Run the mail servers (SMTP, POP3, IMAP) alone", []string{"mail"})
	cmd.AddCommand(mailSubcommands(c.load)...)
	return cmd
}

// addExtraCommands adds the tools that are not servers.
func addExtraCommands(root *cobra.Command) {
	root.AddCommand(newBenchCmd(), newGeodbCmd(), newLabCmd())
}
