package config

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// FTPConfig is the [ftp] section: the RFC 959 origin server.
type FTPConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen is the control connection's listen address.
	Listen string `mapstructure:"listen"`
	// Root holds one directory per user (and "anonymous"); empty means <data_dir>/ftp. Missing
	// user roots are created, and the anonymous one is seeded with the demo pub/ tree.
	Root string `mapstructure:"root"`
	// Banner is the text of the 220 greeting.
	Banner string `mapstructure:"banner"`
	// Users are the accounts that may log in with a password.
	Users []FTPUser `mapstructure:"users"`
	// Anonymous allows read-only "anonymous"/"ftp" logins (any password) to <root>/anonymous.
	Anonymous bool `mapstructure:"anonymous"`
	// PublicHost is the IPv4 address announced in PASV replies; empty means the address the
	// client connected to.
	PublicHost string `mapstructure:"public_host"`
	// PassivePortMin and PassivePortMax bound the passive data ports; 0 and 0 mean any free
	// port chosen by the kernel.
	PassivePortMin int `mapstructure:"passive_port_min"`
	// PassivePortMax is the top of the passive port range (inclusive).
	PassivePortMax int `mapstructure:"passive_port_max"`
	// ActiveMode allows PORT/EPRT (the server connects to the client's address only).
	ActiveMode bool `mapstructure:"active_mode"`
	// IdleTimeout closes control connections idle this long (whole seconds).
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// DataTimeout bounds opening a data connection (whole seconds).
	DataTimeout time.Duration `mapstructure:"data_timeout"`
	// MaxConnections caps simultaneous control connections.
	MaxConnections int `mapstructure:"max_connections"`
	// MaxConnectionsPerIP caps simultaneous control connections from one address.
	MaxConnectionsPerIP int `mapstructure:"max_connections_per_ip"`
	// LoginFailureDelay is how long a failed PASS waits before its 530 reply.
	LoginFailureDelay time.Duration `mapstructure:"login_failure_delay"`
	// MaxLoginFailures failed logins from one address within lockout_duration lock it out.
	MaxLoginFailures int `mapstructure:"max_login_failures"`
	// LockoutDuration is how long a locked-out address is refused (and the failure window).
	LockoutDuration time.Duration `mapstructure:"lockout_duration"`
	// MaxUploadSize caps one stored file (STOR/APPE, resumed or not); 0 = unlimited.
	MaxUploadSize ByteSize `mapstructure:"max_upload_size"`
}

// FTPUser is one [[ftp.users]] account.
type FTPUser struct {
	// Name is the login name.
	Name string `mapstructure:"name"`
	// PasswordHash is a bcrypt hash (htpasswd -nbB, or `outpost` tooling).
	PasswordHash string `mapstructure:"password_hash"`
	// Home is the user's root relative to ftp.root; empty means the user's name.
	Home string `mapstructure:"home"`
	// ReadOnly refuses every command that changes the file system.
	ReadOnly bool `mapstructure:"read_only"`
}

func defaultFTP() FTPConfig {
	return FTPConfig{
		Enabled:             true,
		Listen:              "127.0.0.1:2121",
		Banner:              "Outpost FTP server ready",
		Anonymous:           true,
		ActiveMode:          true,
		IdleTimeout:         5 * time.Minute,
		DataTimeout:         30 * time.Second,
		MaxConnections:      200,
		MaxConnectionsPerIP: 20,
		LoginFailureDelay:   time.Second,
		MaxLoginFailures:    5,
		LockoutDuration:     5 * time.Minute,
		MaxUploadSize:       1 << 30,
	}
}

func (c *FTPConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	if err := CheckHostPort("ftp.listen", c.Listen); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if err := c.validatePassive(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := range c.Users {
		key := fmt.Sprintf("ftp.users[%d]", i)
		if err := c.Users[i].validate(key); err != nil {
			return err
		}
		if seen[c.Users[i].Name] {
			return errorf(key+".name", "duplicate user %q", c.Users[i].Name)
		}
		seen[c.Users[i].Name] = true
	}
	return nil
}

// validateLimits checks the section's timeouts and limits.
func (c *FTPConfig) validateLimits() error {
	for key, d := range map[string]time.Duration{
		"ftp.idle_timeout": c.IdleTimeout, "ftp.data_timeout": c.DataTimeout,
	} {
		if d < time.Second {
			return errorf(key, "must be at least 1s, got %v", d)
		}
	}
	for key, v := range map[string]int64{
		"ftp.max_connections": int64(c.MaxConnections), "ftp.max_connections_per_ip": int64(c.MaxConnectionsPerIP),
		"ftp.max_login_failures": int64(c.MaxLoginFailures),
	} {
		if err := CheckPositive(key, v); err != nil {
			return err
		}
	}
	for key, v := range map[string]int64{
		"ftp.login_failure_delay": int64(c.LoginFailureDelay), "ftp.lockout_duration": int64(c.LockoutDuration),
		"ftp.max_upload_size": int64(c.MaxUploadSize),
	} {
		if err := CheckNonNegative(key, v); err != nil {
			return err
		}
	}
	return nil
}

// validatePassive checks the passive port range and the announced address.
func (c *FTPConfig) validatePassive() error {
	if c.PassivePortMin < 0 || c.PassivePortMax > 65535 || c.PassivePortMin > c.PassivePortMax {
		return errorf("ftp.passive_port_min", "range %d-%d is not within 0-65535 and ordered", c.PassivePortMin, c.PassivePortMax)
	}
	if c.PassivePortMin == 0 && c.PassivePortMax != 0 {
		return errorf("ftp.passive_port_min", "must be set when passive_port_max is (or both 0 for any port)")
	}
	if c.PublicHost != "" {
		a, err := netip.ParseAddr(c.PublicHost)
		if err != nil || !a.Is4() {
			return errorf("ftp.public_host", "%q is not an IPv4 address", c.PublicHost)
		}
	}
	return nil
}

// validate checks one user entry.
func (u *FTPUser) validate(key string) error {
	name := strings.ToLower(u.Name)
	if u.Name == "" || strings.ContainsAny(u.Name, "/\\ \t\r\n\x00") {
		return errorf(key+".name", "%q is not a valid user name", u.Name)
	}
	if name == "anonymous" || name == "ftp" {
		return errorf(key+".name", "%q is reserved for anonymous login (see ftp.anonymous)", u.Name)
	}
	if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
		return errorf(key+".password_hash", "is not a bcrypt hash: %v", err)
	}
	if u.Home != "" {
		clean := path.Clean("/" + u.Home)
		if clean == "/" || strings.Contains(u.Home, "..") || strings.ContainsAny(u.Home, "\\\x00") {
			return errorf(key+".home", "%q must be a relative directory below ftp.root", u.Home)
		}
	}
	return nil
}
