package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	outpost "github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/bench"
	"github.com/outpost-proxy/outpost/internal/config"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // a component failed: a port taken, a server error
	exitUsage   = 2 // bad flags or configuration
)

// usageError marks errors that exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// flagKeys maps the common flags to the configuration keys they set.
var flagKeys = map[string]string{
	"data-dir":     "data_dir",
	"log-level":    "log.level",
	"log-format":   "log.format",
	"admin-listen": "admin.listen",
	"proxy-listen": "proxy.listen",
	"dns-listen":   "dns.listen",
	"web-listen":   "web.listen",
	"ftp-listen":   "ftp.listen",
}

// cli holds what every subcommand shares: streams and the config source.
type cli struct {
	stdout, stderr io.Writer
	configFile     string
	flags          *pflag.FlagSet
}

// load reads the configuration from --config (or the embedded default), the environment and
// the common flags. Its errors are usage errors (exit 2).
func (c *cli) load() (*config.Config, error) {
	cfg, err := config.Load(config.Source{
		File:     c.configFile,
		Default:  outpost.ExampleConfig,
		Flags:    c.flags,
		FlagKeys: flagKeys,
	})
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// run executes the outpost command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "outpost:", err)
	var ue usageError
	if errors.As(err, &ue) || bench.IsUsage(err) || isFlagError(err) {
		return exitUsage
	}
	return exitFailure
}

// rootCommand builds the command tree.
func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "outpost",
		Short:         "A caching HTTP proxy and CDN toolkit: proxy, GeoDNS, origins, mail, FTP, bench",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&c.configFile, "config", "", "TOML configuration file (default: the embedded example configuration)")
	pf.String("data-dir", "", "data directory (data_dir)")
	pf.String("log-level", "", "log level: debug, info, warn, error (log.level)")
	pf.String("log-format", "", "log format: text, json (log.format)")
	pf.String("admin-listen", "", "admin listener address (admin.listen)")
	pf.String("proxy-listen", "", "proxy listen addresses, comma-separated (proxy.listen)")
	pf.String("dns-listen", "", "DNS listen address (dns.listen)")
	pf.String("web-listen", "", "web origin listen address (web.listen)")
	pf.String("ftp-listen", "", "FTP listen address (ftp.listen)")
	c.flags = pf

	root.AddCommand(
		c.upCommand("up", "Run every enabled component in one process", nil),
		c.upCommand("proxy", "Run the caching proxy alone", []string{"proxy"}),
		c.dnsCommand(),
		c.upCommand("origin", "Run the HTTP origin alone", []string{"web"}),
		c.upCommand("ftp", "Run the FTP server alone", []string{"ftp"}),
		c.mailCommand(),
		c.configCommand(),
		versionCommand(),
		c.reloadCommand(),
	)
	addExtraCommands(root)
	return root
}

// isFlagError reports cobra's own argument errors, which carry no type.
func isFlagError(err error) bool {
	var pe *pflag.NotExistError
	if errors.As(err, &pe) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
