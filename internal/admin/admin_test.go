package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /component/thing", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "mounted") })
	s := New("127.0.0.1:0", mux, reg, ready.Load, slog.New(slog.DiscardHandler))
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Shutdown(context.Background())
	base := "http://" + strings.TrimPrefix(s.Addrs()[0], "tcp ")

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, path string
		ready      bool
		status     int
		body       string
	}{
		{"healthz", "/healthz", false, 200, "ok"},
		{"readyz before ready", "/readyz", false, 503, "not ready"},
		{"readyz when ready", "/readyz", true, 200, "ready"},
		{"metrics", "/metrics", true, 200, "outpost_test_total 1"},
		{"pprof", "/debug/pprof/", true, 200, "goroutine"},
		{"component endpoint", "/component/thing", true, 200, "mounted"},
		{"unknown", "/nope", true, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			status, body := get(tt.path)
			if status != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, status, body, tt.status, tt.body)
			}
		})
	}
}

func TestListenError(t *testing.T) {
	s := New("127.0.0.1:bad", http.NewServeMux(), prometheus.NewRegistry(), nil, slog.New(slog.DiscardHandler))
	if err := s.Listen(context.Background()); err == nil || !strings.Contains(err.Error(), "127.0.0.1:bad") {
		t.Errorf("Listen error %v does not name the address", err)
	}
}
