package proxy

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
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
