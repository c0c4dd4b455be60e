package config

// MailConfig is the [mail] section: SMTP, POP3 and IMAP over one mail store.
type MailConfig struct {
	// Enabled starts the mail servers in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// SMTPListen is the SMTP listener.
	SMTPListen string `mapstructure:"smtp_listen"`
	// POP3Listen is the POP3 listener.
	POP3Listen string `mapstructure:"pop3_listen"`
	// IMAPListen is the IMAP listener.
	IMAPListen string `mapstructure:"imap_listen"`
}

func defaultMail() MailConfig {
	return MailConfig{Enabled: true, SMTPListen: "127.0.0.1:2525", POP3Listen: "127.0.0.1:1110", IMAPListen: "127.0.0.1:1143"}
}

func (c *MailConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	for key, a := range map[string]string{"mail.smtp_listen": c.SMTPListen, "mail.pop3_listen": c.POP3Listen, "mail.imap_listen": c.IMAPListen} {
		if err := CheckHostPort(key, a); err != nil {
			return err
		}
	}
	return nil
}
