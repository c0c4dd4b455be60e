package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	outpost "github.com/outpost-proxy/outpost"
	"github.com/outpost-proxy/outpost/internal/admin"
	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
	"github.com/outpost-proxy/outpost/origin/imap"
	"github.com/outpost-proxy/outpost/origin/mailstore"
	"github.com/outpost-proxy/outpost/origin/pop3"
	"github.com/outpost-proxy/outpost/origin/smtp"
)

// mailComponents builds the mail suite over one store under <data_dir>/mail: the queue runner
// first (so it stops last), then every SMTP host, POP3 and IMAP. The queue's admin endpoints
// (GET /mail/queue, POST /mail/flush) are mounted on env.Admin.
func mailComponents(cfg config.MailConfig, env component.Env) ([]component.Component, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	root := filepath.Join(env.DataDir, "mail")
	store, err := openMailStore(cfg, root)
	if err != nil {
		return nil, err
	}
	tlsConf, err := mailTLS(cfg)
	if err != nil {
		return nil, err
	}
	q, err := newMailQueue(cfg, store, root, env)
	if err != nil {
		return nil, err
	}
	q.RegisterAdmin(env.Admin)
	cs := []component.Component{q}
	hosts, err := smtpHosts(cfg, q, tlsConf, env)
	if err != nil {
		return nil, err
	}
	cs = append(cs, hosts...)
	if cfg.POP3.Enabled {
		p, err := pop3.New(pop3.Options{Listen: cfg.POP3.Listen, Hostname: cfg.SMTP.Hosts[0].Hostname,
			IdleTimeout: cfg.POP3.IdleTimeout, MaxConnections: cfg.POP3.MaxConnections, MaxAuthFailures: cfg.MaxAuthFailures,
			TLS: tlsConf, AllowInsecureAuth: cfg.AllowInsecureAuth, Logger: env.Logger.With("server", "pop3"), Metrics: env.Metrics}, store)
		if err != nil {
			return nil, err
		}
		cs = append(cs, p)
	}
	if cfg.IMAP.Enabled {
		i, err := imap.New(imap.Options{Listen: cfg.IMAP.Listen, MaxConnections: cfg.IMAP.MaxConnections,
			MaxAuthFailures: cfg.MaxAuthFailures, MaxMessageSize: int64(cfg.SMTP.MaxMessageSize), TLS: tlsConf,
			AllowInsecureAuth: cfg.AllowInsecureAuth, Logger: env.Logger.With("server", "imap"), Metrics: env.Metrics}, store)
		if err != nil {
			return nil, err
		}
		cs = append(cs, i)
	}
	return cs, nil
}

// openMailStore opens the Maildir store with the configured users and seeds a welcome message
// into every mailbox the first time.
func openMailStore(cfg config.MailConfig, root string) (*mailstore.Store, error) {
	specs := make([]mailstore.UserSpec, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		specs = append(specs, mailstore.UserSpec{Address: u.Address, PasswordHash: u.PasswordHash})
	}
	dir, err := mailstore.NewDirectory(specs)
	if err != nil {
		return nil, err
	}
	store, err := mailstore.Open(filepath.Join(root, "boxes"), dir)
	if err != nil {
		return nil, err
	}
	for _, u := range dir.Users() {
		// The fixed key makes this idempotent: a restart does not deliver it again.
		msg := fmt.Sprintf("From: Outpost <postmaster@%s>\r\nTo: <%s>\r\nSubject: Welcome to Outpost mail\r\nDate: %s\r\nMessage-ID: <welcome.%s>\r\n\r\nThis mailbox is served by Outpost over SMTP, POP3 and IMAP.\r\n",
			u.Domain, u.Address, time.Now().Format(time.RFC1123Z), u.Address)
		if _, err := store.DeliverOnce(u, "welcome.outpost", strings.NewReader(msg)); err != nil {
			return nil, err
		}
	}
	return store, nil
}

// mailTLS loads the STARTTLS/STLS certificate, if configured.
func mailTLS(cfg config.MailConfig) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, config.Errorf("mail.tls_cert", "%v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// newMailQueue builds the durable queue with the MX relay client.
func newMailQueue(cfg config.MailConfig, store *mailstore.Store, root string, env component.Env) (*smtp.Queue, error) {
	local := map[string]map[string]bool{}
	for _, h := range cfg.SMTP.Hosts {
		local[h.Hostname] = map[string]bool{}
		for _, d := range h.Domains {
			local[h.Hostname][strings.ToLower(d)] = true
		}
	}
	return smtp.NewQueue(store, smtp.QueueOptions{
		Dir: filepath.Join(root, "queue"), Lifetime: cfg.SMTP.QueueLifetime,
		RetryInitial: cfg.SMTP.RetryInitial, RetryMax: cfg.SMTP.RetryMax, Workers: cfg.SMTP.QueueWorkers,
		Relay:        &smtp.MXRelay{Resolver: cfg.SMTP.Resolver, Port: cfg.SMTP.RelayPort, Timeout: cfg.SMTP.RelayTimeout},
		LocalDomains: local, Logger: env.Logger.With("server", "queue"), Metrics: env.Metrics,
		MinFree: queueMinFree(cfg.SMTP.QueueMinFree),
	})
}

// queueMinFree maps mail.smtp.queue_min_free to QueueOptions.MinFree (whose 0 means the default,
// and a negative value no check).
func queueMinFree(v config.ByteSize) int64 {
	if v == 0 {
		return -1
	}
	return int64(v)
}

// smtpHosts builds one SMTP server per [[mail.smtp.hosts]].
func smtpHosts(cfg config.MailConfig, q *smtp.Queue, tlsConf *tls.Config, env component.Env) ([]component.Component, error) {
	nets, err := config.ParsePrefixes("mail.smtp.relay_networks", cfg.SMTP.RelayNetworks)
	if err != nil {
		return nil, err
	}
	all := cfg.LocalDomains()
	var out []component.Component
	for _, h := range cfg.SMTP.Hosts {
		own := map[string]bool{}
		for _, d := range h.Domains {
			own[strings.ToLower(d)] = true
		}
		var other []string
		for d := range all {
			if !own[d] {
				other = append(other, d)
			}
		}
		out = append(out, smtp.NewServer(smtp.HostOptions{
			Listen: h.Listen, Hostname: h.Hostname, Domains: h.Domains, OtherLocal: other, RelayNetworks: nets,
			MaxMessageSize: int64(cfg.SMTP.MaxMessageSize), MaxRecipients: cfg.SMTP.MaxRecipients,
			MaxLineLength: cfg.SMTP.MaxLineLength, MaxConnections: cfg.SMTP.MaxConnections, MaxAuthFailures: cfg.MaxAuthFailures,
			ReadTimeout: cfg.SMTP.ReadTimeout, WriteTimeout: cfg.SMTP.WriteTimeout, TLS: tlsConf,
			AllowInsecureAuth: cfg.AllowInsecureAuth, AllowSenderLoginMismatch: !cfg.SMTP.EnforceSenderLogin,
		}, q, env.Logger.With("server", "smtp")))
	}
	return out, nil
}

// mailSubcommands returns `queue` and `flush`, which the caller adds under `outpost mail`.
// load reads the configuration; when omitted, the root command's --config and common flags are
// read the way every subcommand reads them.
func mailSubcommands(load ...func() (*config.Config, error)) []*cobra.Command {
	loader := func(cmd *cobra.Command) (*config.Config, error) {
		if len(load) > 0 && load[0] != nil {
			return load[0]()
		}
		pf := cmd.Root().PersistentFlags()
		file := ""
		if f := pf.Lookup("config"); f != nil {
			file = f.Value.String()
		}
		return config.Load(config.Source{File: file, Default: outpost.ExampleConfig, Flags: pf, FlagKeys: flagKeys})
	}
	return []*cobra.Command{mailQueueCommand(loader), mailFlushCommand(loader)}
}

// mailQueueCommand is `outpost mail queue`: it reads the queue directory (the server need not
// be running) and prints one line per recipient.
func mailQueueCommand(load func(*cobra.Command) (*config.Config, error)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "List the mail queue: messages, recipients, attempts, next retry, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			envs, err := smtp.ReadQueueDir(filepath.Join(cfg.DataDir, "mail", "queue"))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(envs)
			}
			return printQueue(cmd.OutOrStdout(), envs)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the queue as JSON")
	return cmd
}

// printQueue prints the queue as a table, one row per recipient.
func printQueue(w io.Writer, envs []smtp.Envelope) error {
	if len(envs) == 0 {
		_, err := fmt.Fprintln(w, "Mail queue is empty")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tARRIVED\tSIZE\tFROM\tTO\tSTATE\tATTEMPTS\tNEXT\tLAST ERROR")
	for _, e := range envs {
		from := e.From
		if from == "" {
			from = "<>"
		}
		for _, r := range e.Rcpts {
			next := "-"
			if r.State == smtp.StateQueued {
				next = r.Next.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", e.ID, e.Arrived.Format(time.RFC3339), e.Size, from,
				r.Addr, r.State, r.Attempts, next, r.LastError)
		}
	}
	return tw.Flush()
}

// mailFlushCommand is `outpost mail flush`: it asks the running server, through the admin
// listener, to retry every queued recipient now.
func mailFlushCommand(load func(*cobra.Command) (*config.Config, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "flush",
		Short: "Retry every queued message now (asks the running server via POST /mail/flush)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			if !cfg.Admin.Enabled {
				return fmt.Errorf("mail flush: the admin listener is disabled ([admin] enabled = false)")
			}
			client := &http.Client{Timeout: 10 * time.Second}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, "http://"+cfg.Admin.Listen+"/mail/flush", nil)
			if err != nil {
				return fmt.Errorf("mail flush: %w", err)
			}
			if err := admin.AuthorizeRequest(req, cfg.Admin.TokenFile); err != nil {
				return usageError{err}
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("mail flush: is outpost running? %w", err)
			}
			defer resp.Body.Close()
			var out struct {
				Flushed int `json:"flushed"`
			}
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
				return fmt.Errorf("mail flush: admin endpoint answered %s", resp.Status)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d queued recipient(s) scheduled for immediate retry\n", out.Flushed)
			return err
		},
	}
}
