package admin

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"os"
	"strings"

	"github.com/outpost-proxy/outpost/internal/config"
)

// The admin listener's bearer token (admin.token_file). With a token set, the endpoints that
// change state or expose the process — every method but GET, HEAD and OPTIONS (POST /reload,
// POST /cache/purge, POST /mail/flush, ...) and everything under /debug/pprof/ — need
// "Authorization: Bearer <token>", and are refused with 401 without it. Read-only endpoints
// (/healthz, /readyz, /metrics, the dashboard, GET status pages) stay open, as Prometheus
// scrapes expect. config.AdminConfig makes the token mandatory off loopback.

// LoadToken reads the token from path: the file's first line, trimmed; an unreadable or empty
// file is a configuration error naming admin.token_file.
func LoadToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", config.Errorf("admin.token_file", "%v", err)
	}
	tok, _, _ := strings.Cut(string(data), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", config.Errorf("admin.token_file", "%s holds no token", path)
	}
	if len(tok) < 16 {
		return "", config.Errorf("admin.token_file", "%s: the token is shorter than 16 characters", path)
	}
	return tok, nil
}

// RequireToken makes the guarded endpoints need the bearer token (called before Serve).
func (s *Server) RequireToken(token string) { s.token = []byte(token) }

// guarded reports whether r needs the token: any change, and the profiler.
func guarded(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return strings.HasPrefix(r.URL.Path, "/debug/pprof") || r.URL.Path == "/reload"
	}
	return true
}

// authorized reports whether r carries the token (constant time).
func (s *Server) authorized(r *http.Request) bool {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), s.token) == 1
}

// guard refuses guarded requests without the token with 401 (RFC 6750 §3).
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.token) > 0 && guarded(r) && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost admin"`)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "401 Unauthorized: this endpoint needs Authorization: Bearer <admin.token_file>", http.StatusUnauthorized)
			s.logger.Warn("admin: refused without a valid token", "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ReloadFunc re-reads and applies the configuration; it returns the errors that made it keep
// the running one (none: applied).
type ReloadFunc func() []error

// reloadResult is POST /reload's answer.
type reloadResult struct {
	OK     bool     `json:"ok"`
	Errors []string `json:"errors"`
}

// MountReload serves POST /reload: {"ok": true, "errors": []} when the new configuration was
// applied, else 422 with every error (each naming its key) and the old configuration serving.
func (s *Server) MountReload(reload ReloadFunc) {
	s.mux.HandleFunc("POST /reload", func(w http.ResponseWriter, _ *http.Request) {
		res := reloadResult{OK: true, Errors: []string{}}
		for _, err := range reload() {
			res.OK = false
			res.Errors = append(res.Errors, err.Error())
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !res.OK {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		_ = json.NewEncoder(w).Encode(res)
	})
}

// AuthorizeRequest adds the bearer token from tokenFile (admin.token_file) to req, for the
// commands that call a running server's admin listener; nothing when tokenFile is empty.
func AuthorizeRequest(req *http.Request, tokenFile string) error {
	if tokenFile == "" {
		return nil
	}
	tok, err := LoadToken(tokenFile)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}
