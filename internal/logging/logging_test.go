package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-proxy/outpost/internal/config"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name        string
		cfg         config.LogConfig
		debugShown  bool
		jsonEncoded bool
	}{
		{"text info", config.LogConfig{Level: "info", Format: "text"}, false, false},
		{"text debug", config.LogConfig{Level: "debug", Format: "text"}, true, false},
		{"json warn", config.LogConfig{Level: "warn", Format: "json"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(tt.cfg, &buf)
			l.Debug("dbg")
			l.Error("listening", "component", "proxy")
			out := buf.String()
			if strings.Contains(out, "dbg") != tt.debugShown {
				t.Errorf("debug shown = %v, want %v: %s", !tt.debugShown, tt.debugShown, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var m map[string]any
			isJSON := json.Unmarshal([]byte(lines[len(lines)-1]), &m) == nil
			if isJSON != tt.jsonEncoded || !strings.Contains(out, "component") {
				t.Errorf("json = %v, want %v: %s", isJSON, tt.jsonEncoded, out)
			}
		})
	}
}
