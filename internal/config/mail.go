package config

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// MailConfig is the [mail] section: SMTP hosts, the queue and relay client, POP3 and IMAP, all
// over one Maildir store under <data_dir>/mail.
type MailConfig struct {
	// Enabled starts the mail servers in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Users are the mailbox owners ([[mail.users]]): a full address and a bcrypt password hash.
	// They log in to SMTP AUTH, POP3 and IMAP as the local part (when unique) or the address.
	Users []MailUser `mapstructure:"users"`
	// TLSCert and TLSKey are PEM files enabling STARTTLS (SMTP, IMAP) and STLS (POP3). Empty:
	// no TLS is offered.
	TLSCert string `mapstructure:"tls_cert"`
	TLSKey  string `mapstructure:"tls_key"`
	// AllowInsecureAuth permits AUTH/LOGIN/USER+PASS on connections without TLS, from loopback
	// clients only (the demo); others must use TLS first whatever this says. When false and no
	// certificate is configured, nobody can log in.
	AllowInsecureAuth bool `mapstructure:"allow_insecure_auth"`
	// MaxAuthFailures closes a connection after this many failed logins.
	MaxAuthFailures int `mapstructure:"max_auth_failures"`

	SMTP MailSMTPConfig `mapstructure:"smtp"`
	POP3 MailPOP3Config `mapstructure:"pop3"`
	IMAP MailIMAPConfig `mapstructure:"imap"`
}

// MailUser is one mailbox owner.
type MailUser struct {
	// Address is the full address, e.g. "alice@outpost.test"; its domain must be served by
	// one of the SMTP hosts.
	Address string `mapstructure:"address"`
	// PasswordHash is a bcrypt hash ("$2a$10$...") of the user's password.
	PasswordHash string `mapstructure:"password_hash"`
}

// MailSMTPConfig is [mail.smtp]: the SMTP hosts and the queue shared by them.
type MailSMTPConfig struct {
	// Hosts are the SMTP listeners ([[mail.smtp.hosts]]); each is a separate mail host that
	// delivers locally for its own domains and relays everything else through the queue.
	Hosts []MailSMTPHost `mapstructure:"hosts"`
	// RelayNetworks are client networks (CIDR) allowed to relay to non-local domains without
	// AUTH. Empty: only authenticated users may relay.
	RelayNetworks []string `mapstructure:"relay_networks"`
	// MaxMessageSize is the SIZE limit (552 beyond it).
	MaxMessageSize ByteSize `mapstructure:"max_message_size"`
	// MaxRecipients is the recipients limit per message (452 beyond it).
	MaxRecipients int `mapstructure:"max_recipients"`
	// MaxLineLength is the longest command or text line accepted (500 5.4.0 beyond it).
	MaxLineLength int `mapstructure:"max_line_length"`
	// MaxConnections bounds concurrent connections per host.
	MaxConnections int `mapstructure:"max_connections"`
	// ReadTimeout and WriteTimeout bound each command/reply exchange.
	ReadTimeout  time.Duration `mapstructure:"read_timeout"`
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// QueueLifetime is how long a message may stay queued before a bounce (RFC 3464) is sent.
	QueueLifetime time.Duration `mapstructure:"queue_lifetime"`
	// RetryInitial is the first retry delay; each further retry doubles it up to RetryMax.
	RetryInitial time.Duration `mapstructure:"retry_initial"`
	RetryMax     time.Duration `mapstructure:"retry_max"`
	// QueueWorkers bounds concurrent deliveries.
	QueueWorkers int `mapstructure:"queue_workers"`
	// QueueMinFree is the free space the queue's file system must keep: below it (plus the
	// SIZE a client declares) RCPT is answered 452 4.3.1, as Postfix's queue_minfree. 0: no
	// check (a write that fails still gets 452 4.3.1).
	QueueMinFree ByteSize `mapstructure:"queue_min_free"`
	// Resolver is the DNS server (host:port) the relay client asks for MX and A/AAAA records.
	Resolver string `mapstructure:"resolver"`
	// RelayPort is the destination port for relayed mail (25 on the Internet).
	RelayPort int `mapstructure:"relay_port"`
	// RelayTimeout bounds one relay attempt (connect, dialogue and data).
	RelayTimeout time.Duration `mapstructure:"relay_timeout"`
	// EnforceSenderLogin refuses (553 5.7.1, like Postfix's reject_sender_login_mismatch) a
	// MAIL FROM address that an authenticated user does not own; the null sender stays allowed.
	EnforceSenderLogin bool `mapstructure:"enforce_sender_login"`
}

// MailSMTPHost is one SMTP listener and the mail domains it is the final destination for.
type MailSMTPHost struct {
	// Listen is the listen address.
	Listen string `mapstructure:"listen"`
	// Hostname is the name in the greeting, Received headers and bounces.
	Hostname string `mapstructure:"hostname"`
	// Domains are delivered to local mailboxes; other domains are relayed.
	Domains []string `mapstructure:"domains"`
}

// MailPOP3Config is [mail.pop3].
type MailPOP3Config struct {
	// Enabled starts the POP3 server.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the listen address.
	Listen string `mapstructure:"listen"`
	// IdleTimeout closes a connection idle this long (RFC 1939 asks for at least 10 minutes).
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// MaxConnections bounds concurrent connections.
	MaxConnections int `mapstructure:"max_connections"`
}

// MailIMAPConfig is [mail.imap].
type MailIMAPConfig struct {
	// Enabled starts the IMAP server.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the listen address.
	Listen string `mapstructure:"listen"`
	// MaxConnections bounds concurrent connections. (Read timeouts are go-imap's fixed ones:
	// 30 s within a command, 35 min between commands and in IDLE, per RFC 3501 5.4.)
	MaxConnections int `mapstructure:"max_connections"`
}

func defaultMail() MailConfig {
	return MailConfig{
		Enabled:           true,
		AllowInsecureAuth: true,
		MaxAuthFailures:   3,
		SMTP: MailSMTPConfig{
			Hosts:          []MailSMTPHost{{Listen: "127.0.0.1:2525", Hostname: "outpost.test", Domains: []string{"outpost.test"}}},
			RelayNetworks:  []string{},
			MaxMessageSize: 10 << 20,
			MaxRecipients:  100,
			MaxLineLength:  2000,
			MaxConnections: 200,
			ReadTimeout:    5 * time.Minute,
			WriteTimeout:   time.Minute,
			QueueLifetime:  5 * 24 * time.Hour,
			RetryInitial:   time.Minute,
			RetryMax:       time.Hour,
			QueueWorkers:   4,
			QueueMinFree:   1 << 20,
			Resolver:       "127.0.0.1:53",
			RelayPort:      25,
			RelayTimeout:   5 * time.Minute,

			EnforceSenderLogin: true,
		},
		POP3: MailPOP3Config{Enabled: true, Listen: "127.0.0.1:1110", IdleTimeout: 10 * time.Minute, MaxConnections: 200},
		IMAP: MailIMAPConfig{Enabled: true, Listen: "127.0.0.1:1143", MaxConnections: 200},
	}
}

func (c *MailConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errorf("mail.tls_cert", "tls_cert and tls_key must be set together")
	}
	if err := CheckPositive("mail.max_auth_failures", c.MaxAuthFailures); err != nil {
		return err
	}
	if err := c.SMTP.validate(); err != nil {
		return err
	}
	if err := c.validateUsers(); err != nil {
		return err
	}
	if c.POP3.Enabled {
		if err := CheckHostPort("mail.pop3.listen", c.POP3.Listen); err != nil {
			return err
		}
		if err := CheckPositive("mail.pop3.max_connections", c.POP3.MaxConnections); err != nil {
			return err
		}
		if err := CheckPositive("mail.pop3.idle_timeout", c.POP3.IdleTimeout); err != nil {
			return err
		}
	}
	if c.IMAP.Enabled {
		if err := CheckHostPort("mail.imap.listen", c.IMAP.Listen); err != nil {
			return err
		}
		if err := CheckPositive("mail.imap.max_connections", c.IMAP.MaxConnections); err != nil {
			return err
		}
	}
	return nil
}

// LocalDomains lists every domain some SMTP host delivers locally, lowercased.
func (c *MailConfig) LocalDomains() map[string]bool {
	out := map[string]bool{}
	for _, h := range c.SMTP.Hosts {
		for _, d := range h.Domains {
			out[strings.ToLower(d)] = true
		}
	}
	return out
}

func (c *MailConfig) validateUsers() error {
	domains := c.LocalDomains()
	seen := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("mail.users[%d]", i)
		a, err := mail.ParseAddress(u.Address)
		if err != nil || a.Address != u.Address || a.Name != "" {
			return errorf(key+".address", "%q is not a plain mail address (want local@domain)", u.Address)
		}
		local, domain, _ := strings.Cut(strings.ToLower(u.Address), "@")
		if !domains[domain] || local == "" || strings.ContainsAny(local, "/\\") || strings.HasPrefix(local, ".") {
			return errorf(key+".address", "%q: domain %q is not served by any [[mail.smtp.hosts]] or the local part is unusable", u.Address, domain)
		}
		if seen[strings.ToLower(u.Address)] {
			return errorf(key+".address", "%q is listed twice", u.Address)
		}
		seen[strings.ToLower(u.Address)] = true
		if !strings.HasPrefix(u.PasswordHash, "$2") || len(u.PasswordHash) < 59 {
			return errorf(key+".password_hash", "must be a bcrypt hash ($2a$...), e.g. from `htpasswd -nbBC 10 user pass`")
		}
	}
	return nil
}

func (c *MailSMTPConfig) validate() error {
	if len(c.Hosts) == 0 {
		return errorf("mail.smtp.hosts", "at least one SMTP host is needed when mail is enabled")
	}
	seen := map[string]int{}
	for i, h := range c.Hosts {
		key := fmt.Sprintf("mail.smtp.hosts[%d]", i)
		if err := CheckHostPort(key+".listen", h.Listen); err != nil {
			return err
		}
		if strings.TrimSpace(h.Hostname) == "" || strings.ContainsAny(h.Hostname, " \t\r\n<>[]") {
			return errorf(key+".hostname", "%q is not a host name", h.Hostname)
		}
		for _, d := range h.Domains {
			d = strings.ToLower(d)
			if d == "" || strings.ContainsAny(d, " @/\\") || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
				return errorf(key+".domains", "%q is not a domain", d)
			}
			if j, dup := seen[d]; dup {
				return errorf(key+".domains", "%q is already served by mail.smtp.hosts[%d]", d, j)
			}
			seen[d] = i
		}
	}
	if _, err := ParsePrefixes("mail.smtp.relay_networks", c.RelayNetworks); err != nil {
		return err
	}
	for key, v := range map[string]int64{
		"mail.smtp.max_message_size": int64(c.MaxMessageSize), "mail.smtp.max_recipients": int64(c.MaxRecipients),
		"mail.smtp.max_line_length": int64(c.MaxLineLength), "mail.smtp.max_connections": int64(c.MaxConnections),
		"mail.smtp.queue_workers": int64(c.QueueWorkers), "mail.smtp.read_timeout": int64(c.ReadTimeout),
		"mail.smtp.write_timeout": int64(c.WriteTimeout), "mail.smtp.queue_lifetime": int64(c.QueueLifetime),
		"mail.smtp.retry_initial": int64(c.RetryInitial), "mail.smtp.retry_max": int64(c.RetryMax),
		"mail.smtp.relay_timeout": int64(c.RelayTimeout),
	} {
		if err := CheckPositive(key, v); err != nil {
			return err
		}
	}
	if err := CheckNonNegative("mail.smtp.queue_min_free", int64(c.QueueMinFree)); err != nil {
		return err
	}
	if c.MaxLineLength < 512 {
		return errorf("mail.smtp.max_line_length", "must be at least 512 (RFC 5321 4.5.3.1), got %d", c.MaxLineLength)
	}
	if c.RetryMax < c.RetryInitial {
		return errorf("mail.smtp.retry_max", "must not be less than retry_initial")
	}
	if err := CheckHostPort("mail.smtp.resolver", c.Resolver); err != nil {
		return err
	}
	if c.RelayPort <= 0 || c.RelayPort > 65535 {
		return errorf("mail.smtp.relay_port", "%d is not a port", c.RelayPort)
	}
	return nil
}
