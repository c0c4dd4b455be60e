package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-proxy/outpost/internal/config"
)

// mode is how a request is served.
type mode uint8

const (
	modeReverse mode = iota // origin-form request matched by a route
	modeForward             // absolute-form request: the URL's own host
	modeConnect             // CONNECT tunnel
	modeLocal               // answered by the proxy itself (PAC, OPTIONS/TRACE at Max-Forwards 0)
)

// String names the mode for logs and metrics.
func (m mode) String() string {
	return [...]string{"reverse", "forward", "connect", "local"}[m]
}

// policy is the forward-proxy policy: who may use it, with which credentials, to reach where.
type policy struct {
	allow        []netip.Prefix
	users        map[string][]byte // user → bcrypt hash
	realm        string
	denyHosts    []string
	denyPorts    map[int]bool
	connectPorts map[int]bool

	mu       sync.Mutex
	verified map[[32]byte]string // accepted Proxy-Authorization values → user (bcrypt is slow)
}

// maxVerified bounds the cache of accepted credentials.
const maxVerified = 4096

// newPolicy builds the policy from configuration, loading the users file.
func newPolicy(cfg config.ProxyConfig) (*policy, error) {
	allow, err := config.ParsePrefixes("proxy.allow", cfg.Allow)
	if err != nil {
		return nil, err
	}
	p := &policy{allow: allow, realm: cfg.AuthRealm, denyPorts: map[int]bool{},
		connectPorts: map[int]bool{}, verified: map[[32]byte]string{}}
	for _, h := range cfg.DenyHosts {
		p.denyHosts = append(p.denyHosts, strings.ToLower(strings.TrimSpace(h)))
	}
	for _, port := range cfg.DenyPorts {
		p.denyPorts[port] = true
	}
	for _, port := range cfg.ConnectPorts {
		p.connectPorts[port] = true
	}
	if cfg.AuthUsersFile != "" {
		if p.users, err = loadUsers(cfg.AuthUsersFile); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// loadUsers reads an htpasswd file of "user:bcrypt-hash" lines ('#' comments allowed).
func loadUsers(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, config.Errorf("proxy.auth_users_file", "%v", err)
	}
	defer f.Close()
	users := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, config.Errorf("proxy.auth_users_file", "%s:%d: not user:hash", path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, config.Errorf("proxy.auth_users_file", "%s:%d: user %q: only bcrypt hashes are supported (htpasswd -B): %v", path, n, user, err)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("proxy: reading %s: %w", path, err)
	}
	return users, nil
}

// allowed reports whether the client address is in the ACL.
func (p *policy) allowed(ip netip.Addr) bool {
	for _, pfx := range p.allow {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// authenticate checks the request's Proxy-Authorization: Basic against the users file. It
// returns the user name, or a 407 refusal with the challenge.
func (p *policy) authenticate(s *slot) (string, *protoError) {
	if p.users == nil {
		return "", nil
	}
	challenge := &protoError{status: http.StatusProxyAuthRequired, msg: "proxy authentication required",
		extra: "Proxy-Authenticate: Basic realm=" + strconv.Quote(p.realm) + ", charset=\"UTF-8\"\r\n"}
	var v string
	if vs := s.Values("Proxy-Authorization"); len(vs) > 0 {
		v = vs[0]
	}
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", challenge
	}
	key := sha256.Sum256([]byte(v))
	p.mu.Lock()
	user, seen := p.verified[key]
	p.mu.Unlock()
	if seen {
		return user, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", challenge
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	hash, known := p.users[user]
	if !ok || !known || bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return "", challenge
	}
	p.mu.Lock()
	if len(p.verified) >= maxVerified {
		clear(p.verified)
	}
	p.verified[key] = user
	p.mu.Unlock()
	return user, nil
}

// deniedHost reports whether the destination host matches the deny list.
func (p *policy) deniedHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.denyHosts {
		switch {
		case strings.HasPrefix(pat, "*."):
			if strings.HasSuffix(host, pat[1:]) {
				return true
			}
		case strings.HasPrefix(pat, "."):
			if host == pat[1:] || strings.HasSuffix(host, pat) {
				return true
			}
		case host == pat:
			return true
		}
	}
	return false
}

// admit applies the policy to s in order — loop detection, classification (route), then for
// forward and CONNECT requests the ACL, authentication, deny lists and CONNECT ports, then
// method rules — and returns the refusal to send, or nil.
func (srv *Server) admit(s *slot) *protoError {
	s.lv = srv.live.Load()
	if viaLoop(s.Values("Via"), srv.cfg.ViaPseudonym) {
		return &protoError{status: http.StatusLoopDetected, msg: "forwarding loop detected: this request already went through " + srv.cfg.ViaPseudonym}
	}
	if perr := srv.classify(s); perr != nil {
		return perr
	}
	if s.mode == modeForward || s.mode == modeConnect {
		if perr := srv.admitForward(s); perr != nil {
			return perr
		}
	}
	return srv.admitMethod(s)
}

// admitForward applies the forward-proxy policy.
func (srv *Server) admitForward(s *slot) *protoError {
	p := s.lv.policy
	if !s.lv.cfg.Forward {
		return &protoError{status: http.StatusForbidden, msg: "forward proxying is disabled on this proxy"}
	}
	if !p.allowed(s.c.ip) {
		return &protoError{status: http.StatusForbidden, msg: "client address " + s.c.ipStr + " may not use this proxy"}
	}
	user, perr := p.authenticate(s)
	if perr != nil {
		return perr
	}
	s.user = user
	var scheme, host string
	var port int
	if s.leanForward() {
		var auth []byte
		scheme, auth = s.leanURL()
		host, port = leanHostPort(transient(auth), scheme)
	} else {
		r := s.request()
		hostport := r.URL.Host
		if r.Method == http.MethodConnect {
			hostport = r.Host
		}
		scheme = r.URL.Scheme
		host, port = targetHostPort(hostport, scheme)
	}
	if !s.c.ip.IsLoopback() && isLocalDestination(host) {
		return &protoError{status: http.StatusForbidden, msg: "clients on other hosts may not reach the proxy's own loopback services"}
	}
	if p.deniedHost(host) || p.denyPorts[port] {
		return &protoError{status: http.StatusForbidden, msg: fmt.Sprintf("destination %s is denied by policy", net.JoinHostPort(host, strconv.Itoa(port)))}
	}
	if s.mode == modeConnect && !p.connectPorts[port] {
		return &protoError{status: http.StatusForbidden, msg: fmt.Sprintf("CONNECT to port %d is not allowed", port)}
	}
	if scheme == "ftp" && (srv.opts.FTP == nil || !srv.cfg.FTP.Enabled) {
		return &protoError{status: http.StatusNotImplemented, msg: "ftp:// URLs are not served: the FTP gateway is disabled on this proxy"}
	}
	if s.mode == modeForward && scheme != "http" && scheme != "https" && scheme != "ftp" {
		return bad("unsupported URL scheme %q", scheme)
	}
	return nil
}

// admitMethod applies the method rules: TRACE off by default, OPTIONS/TRACE at Max-Forwards 0
// answered locally, Expect.
func (srv *Server) admitMethod(s *slot) *protoError {
	method := s.method()
	if method == http.MethodTrace && !s.lv.cfg.AllowTrace {
		return &protoError{status: http.StatusMethodNotAllowed, msg: "TRACE is disabled on this proxy",
			extra: "Allow: " + allowMethods(s.lv.cfg.AllowTrace) + "\r\n"}
	}
	if (method == http.MethodOptions || method == http.MethodTrace) && maxForwards(s.request().Header) == 0 {
		s.mode = modeLocal
	}
	if ex := s.Values("Expect"); ex != nil && !s.proto10 {
		if len(ex) != 1 || !strings.EqualFold(strings.TrimSpace(ex[0]), "100-continue") {
			return &protoError{status: http.StatusExpectationFailed, msg: "only Expect: 100-continue is supported"}
		}
		if s.body != nil {
			s.body.expect = true
		}
	}
	return nil
}

// isLocalDestination reports destinations on the proxy host itself: "localhost", loopback and
// unspecified addresses (names that resolve there are for deny_hosts).
func isLocalDestination(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && (a.Unmap().IsLoopback() || a.IsUnspecified())
}

// targetHostPort returns the destination host and port of a forward or CONNECT request to
// hostport (the URL's host, or CONNECT's authority), the port by scheme when it names none.
func targetHostPort(hostport, scheme string) (string, int) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return strings.Trim(hostport, "[]"), defaultPort(scheme)
	}
	port, _ := strconv.Atoi(portStr)
	return host, port
}

// defaultPort is the port a URL of the scheme names by default.
func defaultPort(scheme string) int {
	switch scheme {
	case "https":
		return 443
	case "ftp":
		return 21
	}
	return 80
}

// leanHostPort is targetHostPort for a lean authority (leanAuthority: no brackets, at most
// one colon, then digits), without SplitHostPort's error for a missing port.
func leanHostPort(auth, scheme string) (string, int) {
	host, portStr, ok := strings.Cut(auth, ":")
	if !ok {
		return host, defaultPort(scheme)
	}
	port, _ := strconv.Atoi(portStr)
	return host, port
}

// classify decides the request's mode and route. Absolute-form is forward proxying (or the PAC
// file when addressed to the proxy itself); origin-form needs a route.
func (srv *Server) classify(s *slot) *protoError {
	if s.req == nil {
		return srv.classifyLean(s)
	}
	r := s.req
	pac := s.lv.cfg.PAC.Enabled && r.URL.Path == pacPath && (r.Method == http.MethodGet || r.Method == http.MethodHead)
	switch {
	case r.Method == http.MethodConnect:
		s.mode = modeConnect
	case r.URL.Scheme != "":
		s.mode, s.pool = modeForward, srv.fwd
		if r.URL.User != nil && r.URL.Scheme != "ftp" {
			return bad("userinfo in an http(s) URL is not accepted (RFC 9110 §4.2.4)")
		}
		if pac && srv.isSelf(r.URL.Host) {
			s.mode = modeLocal
		}
	case r.RequestURI == "*":
		s.mode = modeLocal
	default:
		if r.Host == "" { // HTTP/1.0 without Host: the address the client connected to
			r.Host = s.c.localAddr()
		}
		rt := s.lv.routes.lookup(r.Host, r.URL.Path)
		if pac && (rt == nil || srv.isSelf(r.Host)) {
			s.mode = modeLocal
			return nil
		}
		if rt == nil {
			return bad("no route for host %q: this is a proxy; send absolute-form requests (http://host/path) to use it as a forward proxy", r.Host)
		}
		s.mode, s.pool, s.keys = modeReverse, rt.pool, rt.keys
		r.URL.Scheme, r.URL.Host = "http", strings.ToLower(r.Host) // allocates only for upper case
	}
	return nil
}

// classifyLean is classify for a lean request (leanHead) read from its head: absolute-form is
// forward proxying (or the PAC file addressed to the proxy itself); origin-form takes a reverse
// route by Host and path, or is the PAC file. Its decoded request, should it be built later,
// gets a reverse route's scheme and host then (request).
func (srv *Server) classifyLean(s *slot) *protoError {
	h := s.head
	if s.leanForward() {
		_, auth := s.leanURL()
		_, rest, _ := splitAbsolute(h.Target())
		path := rest
		if i := bytes.IndexByte(rest, '?'); i >= 0 {
			path = rest[:i]
		}
		method := s.method()
		s.mode, s.pool = modeForward, srv.fwd
		if s.lv.cfg.PAC.Enabled && string(path) == pacPath && (method == http.MethodGet || method == http.MethodHead) && srv.isSelf(string(auth)) {
			s.mode = modeLocal
		}
		return nil
	}
	host, target := h.Host(), h.Target()
	path := target
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		path = target[:i]
	}
	method := s.method()
	pac := s.lv.cfg.PAC.Enabled && string(path) == pacPath && (method == http.MethodGet || method == http.MethodHead)
	rt := s.lv.routes.lookup(transient(host), transient(path))
	if pac && (rt == nil || srv.isSelf(string(host))) {
		s.mode = modeLocal
		return nil
	}
	if rt == nil {
		return bad("no route for host %q: this is a proxy; send absolute-form requests (http://host/path) to use it as a forward proxy", host)
	}
	s.mode, s.pool, s.keys = modeReverse, rt.pool, rt.keys
	return nil
}
