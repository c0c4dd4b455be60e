package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ProxyConfig is the [proxy] section: the HTTP/1.0 and HTTP/1.1 forward and reverse proxy.
type ProxyConfig struct {
	// Enabled starts the component in `outpost up`.
	Enabled bool `mapstructure:"enabled"`
	// Listen holds the listen addresses.
	Listen []string `mapstructure:"listen"`
	// FTP is the ftp:// gateway ([proxy.ftp], owned by the origin/FTP work).
	FTP FTPGatewayConfig `mapstructure:"ftp"`

	// ViaPseudonym is the name the proxy puts in Via ("1.1 <pseudonym>") and recognises there to
	// detect forwarding loops.
	ViaPseudonym string `mapstructure:"via_pseudonym"`
	// Forward accepts forward-proxy requests (absolute-form targets and CONNECT).
	Forward bool `mapstructure:"forward"`
	// MaxConnections caps simultaneous client connections (0 = unlimited).
	MaxConnections int `mapstructure:"max_connections"`
	// ReadHeaderTimeout bounds reading one request's header once its first byte arrived.
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	// ReadTimeout bounds each read of a request body (progress timeout, not a total).
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// WriteTimeout bounds each write to the client (progress timeout, not a total).
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long between requests.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// MaxRequestsPerConnection closes a connection after this many requests (0 = unlimited).
	MaxRequestsPerConnection int `mapstructure:"max_requests_per_connection"`
	// MaxHeaderBytes caps a request's line and header fields (431 beyond).
	MaxHeaderBytes ByteSize `mapstructure:"max_header_bytes"`
	// MaxHeaderFields caps the number of header field lines of a request (431 beyond).
	MaxHeaderFields int `mapstructure:"max_header_fields"`
	// MaxBodySize caps a request body (413 beyond; 0 = unlimited).
	MaxBodySize ByteSize `mapstructure:"max_body_size"`
	// RequestBuffer is how much of a chunked request body is read and checked before anything
	// is sent upstream; bodies that fit are forwarded with a Content-Length, larger ones stream.
	RequestBuffer ByteSize `mapstructure:"request_buffer"`
	// PipelineWindow is how many pipelined requests of one connection are worked on at once.
	PipelineWindow int `mapstructure:"pipeline_window"`
	// TunnelIdleTimeout closes a CONNECT tunnel with no traffic either way for this long.
	TunnelIdleTimeout time.Duration `mapstructure:"tunnel_idle_timeout"`
	// ConnectPorts lists the ports CONNECT may reach (403 otherwise).
	ConnectPorts []int `mapstructure:"connect_ports"`
	// AllowTrace lets TRACE through (answered locally at Max-Forwards: 0); off means 405.
	AllowTrace bool `mapstructure:"allow_trace"`
	// XForwardedFor appends the client address to X-Forwarded-For on upstream requests.
	XForwardedFor bool `mapstructure:"x_forwarded_for"`
	// Forwarded appends an RFC 7239 Forwarded element (for, proto, host) on upstream requests.
	Forwarded bool `mapstructure:"forwarded"`
	// Allow lists the client networks (CIDR) that may use the forward proxy and CONNECT.
	Allow []string `mapstructure:"allow"`
	// AuthUsersFile is an htpasswd file with bcrypt hashes; when set, forward and CONNECT
	// requests need Proxy-Authorization: Basic (407 otherwise).
	AuthUsersFile string `mapstructure:"auth_users_file"`
	// AuthRealm is the realm named in Proxy-Authenticate.
	AuthRealm string `mapstructure:"auth_realm"`
	// DenyHosts lists destination hosts forward requests may not reach: "host", "*.suffix"
	// or ".suffix" (the domain and its subdomains).
	DenyHosts []string `mapstructure:"deny_hosts"`
	// DenyPorts lists destination ports forward requests may not reach.
	DenyPorts []int `mapstructure:"deny_ports"`
	// Resolve overrides name resolution for upstream connections: "name=ip" entries.
	Resolve []string `mapstructure:"resolve"`

	// Upstream configures the connection pools towards origins.
	Upstream ProxyUpstreamConfig `mapstructure:"upstream"`
	// Routes are the reverse-proxy routes ([[proxy.routes]]).
	Routes []ProxyRoute `mapstructure:"routes"`
	// AccessLog configures the per-request log.
	AccessLog ProxyAccessLogConfig `mapstructure:"access_log"`
	// PAC configures the proxy auto-config file served at /proxy.pac.
	PAC ProxyPACConfig `mapstructure:"pac"`
	// Parents is the parent tier ([proxy.parents], parents.go).
	Parents ProxyParentsConfig `mapstructure:"parents"`
	// Purge is purge fan-out to parents and peers ([proxy.purge], parents.go).
	Purge ProxyPurgeConfig `mapstructure:"purge"`
	// TLS is the TLS listeners and their certificates ([proxy.tls], tls.go).
	TLS ProxyTLSConfig `mapstructure:"tls"`
	// HTTP2 is HTTP/2 on the TLS listeners ([proxy.http2], tls.go).
	HTTP2 ProxyHTTP2Config `mapstructure:"http2"`
}

// ProxyUpstreamConfig is [proxy.upstream]: the origin connection pools.
type ProxyUpstreamConfig struct {
	// ConnectTimeout bounds establishing a connection to an origin.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// ResponseHeaderTimeout bounds waiting for an origin's response header (504 beyond).
	ResponseHeaderTimeout time.Duration `mapstructure:"response_header_timeout"`
	// ReadTimeout cuts an upstream exchange whose request upload or response body makes no
	// progress for this long (0 = no idle limit once the response header arrived).
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// IdleConnTimeout closes pooled origin connections idle this long.
	IdleConnTimeout time.Duration `mapstructure:"idle_conn_timeout"`
	// MaxIdleConnsPerHost caps pooled idle connections per origin.
	MaxIdleConnsPerHost int `mapstructure:"max_idle_conns_per_host"`
	// MaxConnsPerHost caps connections per origin (0 = unlimited).
	MaxConnsPerHost int `mapstructure:"max_conns_per_host"`
	// FailTimeout is how long a route origin that failed to connect is skipped.
	FailTimeout time.Duration `mapstructure:"fail_timeout"`
}

// ProxyRoute is one [[proxy.routes]] entry: requests in origin form whose Host matches go to
// the route's origins.
type ProxyRoute struct {
	// Host is an exact host name, "*.suffix" (any subdomain) or "*" (the default route). A
	// host with a port ("example.org:8080") matches only that port.
	Host string `mapstructure:"host"`
	// PathPrefix restricts the route to paths starting with it ("" or "/" = all).
	PathPrefix string `mapstructure:"path_prefix"`
	// Origins are the origin base URLs (http or https), e.g. "http://127.0.0.1:8081".
	Origins []string `mapstructure:"origins"`
	// Balance is "round_robin" (default) or "least_conn".
	Balance string `mapstructure:"balance"`
	// RewriteHost sends the origin's host in Host instead of the client's.
	RewriteHost bool `mapstructure:"rewrite_host"`
	// Health is the active health check of the route's origins ([proxy.routes.health]).
	Health ProxyRouteHealth `mapstructure:"health"`
	// CacheKey is the route's cache-key rules ([proxy.routes.cache_key], cachekey.go).
	CacheKey CacheKeyConfig `mapstructure:"cache_key"`
}

// ProxyAccessLogConfig is [proxy.access_log].
type ProxyAccessLogConfig struct {
	// Format is "squid" (Squid's native format) or "combined" (with cache code, upstream and
	// duration appended).
	Format string `mapstructure:"format"`
	// Destination is "stderr", "stdout", "off" or a file path (appended to).
	Destination string `mapstructure:"destination"`
}

// ProxyPACConfig is [proxy.pac].
type ProxyPACConfig struct {
	// Enabled serves /proxy.pac for requests addressed to the proxy itself.
	Enabled bool `mapstructure:"enabled"`
	// Proxy is the host:port the PAC file tells browsers to use; empty means the Host the
	// PAC file was requested with.
	Proxy string `mapstructure:"proxy"`
	// Direct lists host patterns browsers reach without the proxy ("*.example.org", "host").
	Direct []string `mapstructure:"direct"`
	// FallbackDirect lets browsers go direct when the proxy is unreachable.
	FallbackDirect bool `mapstructure:"fallback_direct"`
	// HTTPSProxy is a TLS listener's host:port the PAC file names first ("HTTPS host:port"),
	// before the plain proxy; empty: none.
	HTTPSProxy string `mapstructure:"https_proxy"`
}

func defaultProxy() ProxyConfig {
	return ProxyConfig{
		Enabled:                  true,
		Listen:                   []string{"127.0.0.1:8080"},
		FTP:                      defaultFTPGateway(),
		ViaPseudonym:             "outpost",
		Forward:                  true,
		MaxConnections:           10000,
		ReadHeaderTimeout:        10 * time.Second,
		ReadTimeout:              60 * time.Second,
		WriteTimeout:             60 * time.Second,
		IdleTimeout:              120 * time.Second,
		MaxRequestsPerConnection: 0,
		MaxHeaderBytes:           32 << 10,
		MaxHeaderFields:          100,
		MaxBodySize:              1 << 30,
		RequestBuffer:            64 << 10,
		PipelineWindow:           16,
		TunnelIdleTimeout:        5 * time.Minute,
		ConnectPorts:             []int{443},
		XForwardedFor:            true,
		Allow: []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
			"192.168.0.0/16", "fc00::/7"},
		AuthRealm: "Outpost proxy",
		Upstream: ProxyUpstreamConfig{
			ConnectTimeout:        10 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ReadTimeout:           60 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   64,
			FailTimeout:           10 * time.Second,
		},
		AccessLog: ProxyAccessLogConfig{Format: "squid", Destination: "stderr"},
		PAC:       ProxyPACConfig{Enabled: true, FallbackDirect: true},
		Parents:   defaultParents(),
		Purge:     defaultPurge(),
		TLS:       defaultProxyTLS(),
		HTTP2:     defaultProxyHTTP2(),
	}
}

func (c *ProxyConfig) validate() error {
	if !c.Enabled {
		return nil
	}
	if err := c.FTP.validate(); err != nil {
		return err
	}
	if len(c.Listen) == 0 {
		return errorf("proxy.listen", "needs at least one address")
	}
	for i, a := range c.Listen {
		if err := CheckHostPort(fmt.Sprintf("proxy.listen[%d]", i), a); err != nil {
			return err
		}
	}
	if p := c.ViaPseudonym; p == "" || strings.ContainsAny(p, " ,\t\r\n()") {
		return errorf("proxy.via_pseudonym", "%q must be a non-empty token (no spaces, commas or parentheses)", p)
	}
	if c.PAC.Proxy != "" {
		if err := CheckHostPort("proxy.pac.proxy", c.PAC.Proxy); err != nil {
			return err
		}
	}
	if c.PAC.HTTPSProxy != "" {
		if err := CheckHostPort("proxy.pac.https_proxy", c.PAC.HTTPSProxy); err != nil {
			return err
		}
	}
	var errs []error // every check's first problem (and every bad route): a reload logs each
	for _, chk := range []func() error{c.validateLimits, c.validateLists, c.Upstream.validate,
		c.AccessLog.validate, c.validateRoutes, c.Parents.validate, c.Purge.validate,
		c.TLS.validate, c.HTTP2.validate} {
		if err := chk(); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrors(errs)
}

// joinErrors is errors.Join that returns a single error as itself.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// validateLimits checks the timeouts and sizes.
func (c *ProxyConfig) validateLimits() error {
	for key, d := range map[string]time.Duration{
		"proxy.read_header_timeout": c.ReadHeaderTimeout, "proxy.read_timeout": c.ReadTimeout,
		"proxy.write_timeout": c.WriteTimeout, "proxy.idle_timeout": c.IdleTimeout,
		"proxy.tunnel_idle_timeout": c.TunnelIdleTimeout,
	} {
		if err := CheckPositive(key, d); err != nil {
			return err
		}
	}
	if c.MaxHeaderBytes < 1024 {
		return errorf("proxy.max_header_bytes", "must be at least 1KiB, got %v", c.MaxHeaderBytes)
	}
	if err := CheckPositive("proxy.max_header_fields", c.MaxHeaderFields); err != nil {
		return err
	}
	if c.PipelineWindow < 1 || c.PipelineWindow > 1024 {
		return errorf("proxy.pipeline_window", "must be between 1 and 1024, got %d", c.PipelineWindow)
	}
	for key, v := range map[string]int{"proxy.max_connections": c.MaxConnections,
		"proxy.max_requests_per_connection": c.MaxRequestsPerConnection} {
		if err := CheckNonNegative(key, v); err != nil {
			return err
		}
	}
	if err := CheckNonNegative("proxy.max_body_size", c.MaxBodySize); err != nil {
		return err
	}
	return CheckNonNegative("proxy.request_buffer", c.RequestBuffer)
}

// validateLists checks ACL networks, ports and resolve overrides.
func (c *ProxyConfig) validateLists() error {
	if _, err := ParsePrefixes("proxy.allow", c.Allow); err != nil {
		return err
	}
	for key, ports := range map[string][]int{"proxy.connect_ports": c.ConnectPorts, "proxy.deny_ports": c.DenyPorts} {
		for i, p := range ports {
			if p < 1 || p > 65535 {
				return errorf(fmt.Sprintf("%s[%d]", key, i), "%d is not a port", p)
			}
		}
	}
	for i, h := range c.DenyHosts {
		if strings.TrimSpace(h) == "" || strings.ContainsAny(h, " /") {
			return errorf(fmt.Sprintf("proxy.deny_hosts[%d]", i), "%q is not a host pattern", h)
		}
	}
	for i, r := range c.Resolve {
		name, addr, ok := strings.Cut(r, "=")
		if !ok || name == "" || addr == "" {
			return errorf(fmt.Sprintf("proxy.resolve[%d]", i), "%q is not name=ip", r)
		}
	}
	return nil
}

// validateRoutes checks each [[proxy.routes]] entry, reporting the first problem of each.
func (c *ProxyConfig) validateRoutes() error {
	var errs []error
	for i := range c.Routes {
		if err := c.Routes[i].validate(fmt.Sprintf("proxy.routes[%d]", i)); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrors(errs)
}

// validate checks one route; key is "proxy.routes[i]".
func (r *ProxyRoute) validate(key string) error {
	if r.Host == "" || strings.ContainsAny(r.Host, " /") {
		return errorf(key+".host", "%q is not a host, *.suffix or *", r.Host)
	}
	if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
		return errorf(key+".path_prefix", "%q must start with /", r.PathPrefix)
	}
	if len(r.Origins) == 0 {
		return errorf(key+".origins", "needs at least one origin URL")
	}
	for j, o := range r.Origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errorf(fmt.Sprintf("%s.origins[%d]", key, j), "%q is not an http(s)://host[:port] URL", o)
		}
	}
	switch r.Balance {
	case "", "round_robin", "least_conn":
	default:
		return errorf(key+".balance", "%q is not round_robin or least_conn", r.Balance)
	}
	if err := r.CacheKey.validate(key + ".cache_key"); err != nil {
		return err
	}
	return r.Health.validate(key + ".health")
}

func (c *ProxyUpstreamConfig) validate() error {
	for key, d := range map[string]time.Duration{
		"proxy.upstream.connect_timeout": c.ConnectTimeout, "proxy.upstream.response_header_timeout": c.ResponseHeaderTimeout,
		"proxy.upstream.idle_conn_timeout": c.IdleConnTimeout,
	} {
		if err := CheckPositive(key, d); err != nil {
			return err
		}
	}
	if err := CheckNonNegative("proxy.upstream.read_timeout", c.ReadTimeout); err != nil {
		return err
	}
	if err := CheckNonNegative("proxy.upstream.fail_timeout", c.FailTimeout); err != nil {
		return err
	}
	if err := CheckNonNegative("proxy.upstream.max_idle_conns_per_host", c.MaxIdleConnsPerHost); err != nil {
		return err
	}
	return CheckNonNegative("proxy.upstream.max_conns_per_host", c.MaxConnsPerHost)
}

func (c *ProxyAccessLogConfig) validate() error {
	if c.Format != "squid" && c.Format != "combined" {
		return errorf("proxy.access_log.format", "%q is not squid or combined", c.Format)
	}
	if strings.TrimSpace(c.Destination) == "" {
		return errorf("proxy.access_log.destination", "must be stderr, stdout, off or a file path")
	}
	return nil
}
