package web

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-proxy/outpost/internal/component"
)

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAccessLogAndMetrics checks that a request is logged and counted by route and class.
func TestAccessLogAndMetrics(t *testing.T) {
	var logs lockedBuffer
	env := component.Test(t.TempDir())
	env.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	env.Metrics = reg
	cfg := testConfig()
	cfg.AccessLog = true
	s, err := New(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(context.Background()); err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	base := "http://" + strings.TrimPrefix(s.Addrs()[0], "tcp ")
	get(t, "GET", base+"/bytes/2k", nil)
	get(t, "GET", base+"/status/503", nil)
	get(t, "GET", base+"/nope", nil)
	for _, want := range []string{`uri=/bytes/2k`, `status=200`, `bytes=2048`, `route=bytes`, `uri=/status/503`, `status=503`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("access log lacks %s:\n%s", want, logs.String())
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for route, class := range map[string]string{"bytes": "2xx", "status": "5xx", "static": "4xx"} {
		found := false
		for _, mf := range mfs {
			if mf.GetName() != "outpost_web_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["route"] == route && labels["code"] == class && m.GetCounter().GetValue() == 1 {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("no outpost_web_requests_total{route=%q,code=%q} = 1", route, class)
		}
	}
}
