package cache

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

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

// TestReloadKnobs: Reload applies the policy settings, logs the keys that need a restart, and
// a bad purge_allow keeps the running settings.
func TestReloadKnobs(t *testing.T) {
	cfg := config.Default().Cache
	cfg.DiskEnabled = false
	var logged lockedBuffer
	env := component.Test(t.TempDir())
	env.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	c, err := New(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next := cfg
	next.StaleMax, next.Collapse, next.HeuristicFraction = time.Minute, false, 0.5
	next.PurgeAllow = []string{"192.0.2.0/24"}
	next.MemorySize = cfg.MemorySize * 2
	if err := c.Reload(next); err != nil {
		t.Fatal(err)
	}
	k := c.knobs()
	if k.cfg.StaleMax != time.Minute || k.cfg.Collapse || k.heur.fraction != 0.5 || len(k.purgeAllow) != 1 {
		t.Errorf("knobs after reload: %+v", k)
	}
	if !strings.Contains(logged.String(), "key=cache.memory_size") {
		t.Errorf("the restart-only key was not logged:\n%s", logged.String())
	}
	bad := next
	bad.PurgeAllow = []string{"not-a-network"}
	if err := c.Reload(bad); err == nil || !strings.Contains(err.Error(), "cache.purge_allow") {
		t.Fatalf("bad purge_allow: %v", err)
	}
	if c.knobs() != k {
		t.Error("a rejected reload changed the settings")
	}
}
