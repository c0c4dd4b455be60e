package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// startDashboard serves an admin listener with the dashboard on a registry with one counter.
func startDashboard(t *testing.T) (*Server, string, prometheus.Counter) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_proxy_requests_total", Help: "h"})
	reg.MustRegister(c)
	s := New("127.0.0.1:0", http.NewServeMux(), reg, nil, slog.New(slog.DiscardHandler))
	s.MountDashboard(DashboardOptions{Interval: 20 * time.Millisecond, Window: time.Second})
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, "http://" + strings.TrimPrefix(s.Addrs()[0], "tcp "), c
}

func TestDashboardEndpoints(t *testing.T) {
	_, base, _ := startDashboard(t)
	tests := []struct {
		name, path string
		status     int
		header     string // a header that must be set
		body       string
	}{
		{"page", "/", 200, "Content-Security-Policy", `src="/dashboard/static/app.js"`},
		{"script", "/dashboard/static/app.js", 200, "X-Content-Type-Options", "EventSource"},
		{"stylesheet", "/dashboard/static/style.css", 200, "Content-Security-Policy", "--bg"},
		{"no directory listing of the assets", "/dashboard/static/missing.js", 404, "", ""},
		{"samples", "/dashboard/samples", 200, "Cache-Control", `"interval_ms":20`},
		{"samples since", "/dashboard/samples?since=1", 200, "", `"samples":[`},
		{"samples bad since", "/dashboard/samples?since=soon", 400, "", "sequence number"},
		{"only / itself is the page", "/index.html", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(base + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.body) {
				t.Errorf("GET %s = %d %.200q, want %d containing %q", tt.path, resp.StatusCode, b, tt.status, tt.body)
			}
			if tt.header != "" && resp.Header.Get(tt.header) == "" {
				t.Errorf("GET %s: no %s header", tt.path, tt.header)
			}
		})
	}
}

func TestDashboardNotMounted(t *testing.T) {
	s := New("127.0.0.1:0", http.NewServeMux(), prometheus.NewRegistry(), nil, slog.New(slog.DiscardHandler))
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Shutdown(context.Background())
	resp, err := http.Get("http://" + strings.TrimPrefix(s.Addrs()[0], "tcp ") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET / with the dashboard off = %d, want 404", resp.StatusCode)
	}
}

// openStream opens the event stream and returns a reader of its events.
func openStream(t *testing.T, base string) (*http.Response, func() (event, data string)) {
	t.Helper()
	resp, err := http.Get(base + "/dashboard/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	return resp, func() (event, data string) {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = line[len("data: "):]
			case line == "" && event != "":
				return event, data
			}
		}
	}
}

// TestDashboardStream: the stream starts with the history, then brings each new sample with
// the counter's rate, in sequence.
func TestDashboardStream(t *testing.T) {
	_, base, c := startDashboard(t)
	resp, next := openStream(t, base)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	ev, data := next()
	var h history
	if ev != "history" || json.Unmarshal([]byte(data), &h) != nil || h.IntervalMS != 20 || h.WindowMS != 1000 {
		t.Fatalf("first event %s %s", ev, data)
	}
	seq := h.Seq
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.Add(10)
		ev, data = next()
		var row sample
		if ev != "sample" || json.Unmarshal([]byte(data), &row) != nil {
			t.Fatalf("event %s %s", ev, data)
		}
		if row.Seq <= seq {
			t.Fatalf("sample %d after %d", row.Seq, seq)
		}
		seq = row.Seq
		if row.Vals["proxy.requests"] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rate in the stream; last %s", data)
		}
	}
}

// TestDashboardStreamBound: past maxStreams open streams the next one is refused with 503,
// and Shutdown does not wait for the open ones.
func TestDashboardStreamBound(t *testing.T) {
	s, base, _ := startDashboard(t)
	for range maxStreams {
		_, next := openStream(t, base)
		if ev, _ := next(); ev != "history" {
			t.Fatalf("stream began with %q", ev)
		}
	}
	resp, err := http.Get(base + "/dashboard/stream")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream %d: status %d, want 503", maxStreams+1, resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with %d open streams: %v", maxStreams, err)
	}
	select {
	case <-s.dash.stopped:
	case <-ctx.Done():
		t.Error("the sampler still runs after Shutdown")
	}
}
