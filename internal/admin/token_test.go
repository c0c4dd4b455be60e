package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

const testToken = "s3cret-token-0123456789"

// startGuarded runs an admin server with the token, a purge endpoint and a reload that fails
// when fail is set.
func startGuarded(t *testing.T, token string, fail *bool) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cache/purge", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "purged") })
	s := New("127.0.0.1:0", mux, prometheus.NewRegistry(), nil, slog.New(slog.DiscardHandler))
	if token != "" {
		s.RequireToken(token)
	}
	s.MountReload(func() []error {
		if *fail {
			return []error{errors.New("config: proxy.routes[0].origins: needs at least one origin URL"), errors.New("config: proxy.auth_users_file: open x: no such file")}
		}
		return nil
	})
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return "http://" + strings.TrimPrefix(s.Addrs()[0], "tcp ")
}

// TestAdminToken: with admin.token_file set, /reload, POST /cache/purge and /debug/pprof/ are
// 401 without the token (or with a wrong one) and served with it; read-only endpoints stay open.
func TestAdminToken(t *testing.T) {
	fail := false
	base := startGuarded(t, testToken, &fail)
	tests := []struct {
		name, method, path, auth string
		status                   int
	}{
		{"reload without token", "POST", "/reload", "", 401},
		{"reload wrong token", "POST", "/reload", "Bearer nope", 401},
		{"reload basic scheme", "POST", "/reload", "Basic " + testToken, 401},
		{"reload with token", "POST", "/reload", "Bearer " + testToken, 200},
		{"purge without token", "POST", "/cache/purge", "", 401},
		{"purge with token", "POST", "/cache/purge", "Bearer " + testToken, 200},
		{"pprof without token", "GET", "/debug/pprof/", "", 401},
		{"pprof cmdline without token", "GET", "/debug/pprof/cmdline", "", 401},
		{"pprof with token", "GET", "/debug/pprof/", "bearer " + testToken, 200},
		{"healthz open", "GET", "/healthz", "", 200},
		{"metrics open", "GET", "/metrics", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestAdminNoToken: without a token on loopback nothing is guarded (the default demo).
func TestAdminNoToken(t *testing.T) {
	fail := false
	base := startGuarded(t, "", &fail)
	for _, p := range []string{"/reload", "/cache/purge"} {
		resp, err := http.Post(base+p, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("POST %s = %d, want 200", p, resp.StatusCode)
		}
	}
}

// TestReloadEndpoint: POST /reload answers {ok, errors}; a rejected configuration is 422 with
// every error.
func TestReloadEndpoint(t *testing.T) {
	fail := false
	base := startGuarded(t, "", &fail)
	post := func() (int, reloadResult) {
		resp, err := http.Post(base+"/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res reloadResult
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, res
	}
	if code, res := post(); code != 200 || !res.OK || len(res.Errors) != 0 {
		t.Fatalf("good reload = %d %+v", code, res)
	}
	fail = true
	code, res := post()
	if code != http.StatusUnprocessableEntity || res.OK || len(res.Errors) != 2 || !strings.Contains(res.Errors[0], "proxy.routes[0].origins") {
		t.Fatalf("bad reload = %d %+v", code, res)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, want, err string
	}{
		{"ok", write("ok", testToken+"\n"), testToken, ""},
		{"empty", write("empty", "\n\n"), "", "admin.token_file"},
		{"short", write("short", "abc\n"), "", "shorter than 16"},
		{"missing", filepath.Join(dir, "nope"), "", "admin.token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadToken(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("LoadToken = %q, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("LoadToken = %q, %v", got, err)
			}
		})
	}
}

func TestAuthorizeRequest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(p, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://127.0.0.1:1/reload", nil)
	if err := AuthorizeRequest(req, ""); err != nil || req.Header.Get("Authorization") != "" {
		t.Fatalf("no token file: %v %q", err, req.Header.Get("Authorization"))
	}
	if err := AuthorizeRequest(req, p); err != nil || req.Header.Get("Authorization") != "Bearer "+testToken {
		t.Fatalf("token file: %v %q", err, req.Header.Get("Authorization"))
	}
}
