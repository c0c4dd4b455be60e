// Package config loads Outpost's configuration: viper reads TOML, environment variables
// (OUTPOST_<SECTION>_<KEY>) and flags at the edge, and hands plain, validated structs inward.
//
// Each section lives in its own file with its struct, its defaults and its validation. Unknown
// keys and bad values are errors that name the dotted key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is the whole configuration of one outpost process.
type Config struct {
	// DataDir holds the disk cache, mailboxes, the mail queue and the FTP and web roots.
	DataDir string `mapstructure:"data_dir"`
	// GracePeriod bounds how long shutdown waits for in-flight work.
	GracePeriod time.Duration `mapstructure:"grace_period"`

	Log     LogConfig     `mapstructure:"log"`
	Runtime RuntimeConfig `mapstructure:"runtime"`
	Admin   AdminConfig   `mapstructure:"admin"`
	Proxy   ProxyConfig   `mapstructure:"proxy"`
	Cache   CacheConfig   `mapstructure:"cache"`
	DNS     DNSConfig     `mapstructure:"dns"`
	Web     WebConfig     `mapstructure:"web"`
	FTP     FTPConfig     `mapstructure:"ftp"`
	Mail    MailConfig    `mapstructure:"mail"`
}

// Default returns the built-in defaults: every key has one, so environment overrides work for
// every key even when the file does not mention it.
func Default() Config {
	return Config{
		DataDir:     "./var",
		GracePeriod: 10 * time.Second,
		Log:         defaultLog(),
		Runtime:     defaultRuntime(),
		Admin:       defaultAdmin(),
		Proxy:       defaultProxy(),
		Cache:       defaultCache(),
		DNS:         defaultDNS(),
		Web:         defaultWeb(),
		FTP:         defaultFTP(),
		Mail:        defaultMail(),
	}
}

// Validate checks every section and returns the first problem of each, naming its key
// (joined: a reload logs each one).
func (c *Config) Validate() error {
	if strings.TrimSpace(c.DataDir) == "" {
		return errorf("data_dir", "must not be empty")
	}
	if err := CheckNonNegative("grace_period", c.GracePeriod); err != nil {
		return err
	}
	var errs []error
	for _, v := range []func() error{
		c.Log.validate, c.Runtime.validate, c.Admin.validate, c.Proxy.validate, c.Cache.validate,
		c.DNS.validate, c.Web.validate, c.FTP.validate, c.Mail.validate,
	} {
		if err := v(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Admin.Enabled && c.Admin.TLS && (!c.Proxy.Enabled || len(c.Proxy.TLS.Certificates) == 0 && !c.Proxy.TLS.Demo) {
		errs = append(errs, errorf("admin.tls", "needs the proxy's certificates: proxy.enabled and [[proxy.tls.certificates]] (or proxy.tls.demo)"))
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// Source says where to read configuration from.
type Source struct {
	// File is a TOML file; empty means the embedded example configuration (Default).
	File string
	// Default is the embedded example configuration used when File is empty.
	Default []byte
	// Env is the environment, as os.Environ returns it; nil means os.Environ().
	Env []string
	// Flags are command-line flags bound to keys by FlagKeys.
	Flags *pflag.FlagSet
	// FlagKeys maps a flag name to the dotted key it sets.
	FlagKeys map[string]string
}

// Load reads, merges and validates configuration: built-in defaults, then the file (or the
// embedded example), then OUTPOST_* environment variables, then flags.
func Load(src Source) (*Config, error) {
	v := viper.New()
	v.SetConfigType("toml")
	setDefaults(v, "", reflect.ValueOf(Default()))
	if src.File != "" {
		data, err := os.ReadFile(src.File)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("config: %s: %w", src.File, err)
		}
	} else if len(src.Default) > 0 {
		if err := v.ReadConfig(bytes.NewReader(src.Default)); err != nil {
			return nil, fmt.Errorf("config: embedded default: %w", err)
		}
	}
	if err := applyEnv(v, src.Env); err != nil {
		return nil, err
	}
	if src.Flags != nil {
		for name, key := range src.FlagKeys {
			if f := src.Flags.Lookup(name); f != nil && f.Changed {
				v.Set(key, f.Value.String())
			}
		}
	}
	var c Config
	err := v.UnmarshalExact(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.TextUnmarshallerHookFunc(),
		durationHook,
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, decodeError(err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// applyEnv sets every known key that has an OUTPOST_<KEY> variable, with dots as underscores.
func applyEnv(v *viper.Viper, env []string) error {
	if env == nil {
		env = os.Environ()
	}
	vars := map[string]string{}
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OUTPOST_") {
			vars[k] = val
		}
	}
	if len(vars) == 0 {
		return nil
	}
	known := map[string]string{}
	for _, key := range v.AllKeys() {
		known["OUTPOST_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
	}
	for name, val := range vars {
		key, ok := known[name]
		if !ok {
			return errorf(name, "environment variable names no configuration key")
		}
		v.Set(key, val)
	}
	return nil
}

var (
	invalidKeysRe = regexp.MustCompile(`'([^']*)' has invalid keys: ([^\n]+)`)
	fieldErrRe    = regexp.MustCompile(`'([^']+)'`)
)

// decodeError turns mapstructure's report into an *Error naming the first bad key.
func decodeError(err error) error {
	msg := err.Error()
	if m := invalidKeysRe.FindStringSubmatch(msg); m != nil {
		key := strings.TrimSpace(strings.SplitN(m[2], ",", 2)[0])
		if m[1] != "" {
			key = m[1] + "." + key
		}
		return &Error{Key: key, Reason: "unknown key (see config.example.toml for the keys there are)"}
	}
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	first := strings.TrimSpace(strings.TrimPrefix(lines[len(lines)-1], "* "))
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(l, "* ")), "'") {
			first = strings.TrimSpace(strings.TrimPrefix(l, "* "))
			break
		}
	}
	if m := fieldErrRe.FindStringSubmatch(first); m != nil {
		reason := strings.TrimSpace(strings.Replace(first, m[0], "", 1))
		return &Error{Key: m[1], Reason: strings.TrimLeft(reason, ": ")}
	}
	return fmt.Errorf("config: %w", errors.Unwrap(err))
}

// setDefaults registers every leaf of the defaults struct with viper under its dotted key.
func setDefaults(v *viper.Viper, prefix string, rv reflect.Value) {
	rt := rv.Type()
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		fv := rv.Field(i)
		if fv.Kind() == reflect.Struct && !isLeafStruct(fv.Type()) {
			setDefaults(v, key+".", fv)
			continue
		}
		v.SetDefault(key, fv.Interface())
	}
}

// isLeafStruct reports struct types that are values, not sections.
func isLeafStruct(t reflect.Type) bool {
	return t == reflect.TypeOf(time.Time{})
}

// durationHook decodes "30s"-style strings into time.Duration, naming the bad value.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) || from.Kind() != reflect.String {
		return data, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration (want e.g. 500ms, 30s, 5m)", data)
	}
	return d, nil
}
