package config

import (
	"errors"
	"strings"
	"testing"
)

func TestRuntimeSection(t *testing.T) {
	tests := []struct {
		name, text string
		env        []string
		key        string // the key the error must name; "" = loads
		reason     string
		gcPercent  int
		limit      ByteSize
	}{
		{name: "defaults", gcPercent: 100},
		{name: "set both", text: "[runtime]\ngc_percent = 400\nmemory_limit = \"2GiB\"\n", gcPercent: 400, limit: 2 << 30},
		{name: "off with a limit", text: "[runtime]\ngc_percent = -1\nmemory_limit = \"512MiB\"\n", gcPercent: -1, limit: 512 << 20},
		{name: "env", env: []string{"OUTPOST_RUNTIME_GC_PERCENT=150"}, gcPercent: 150},
		{name: "zero percent", text: "[runtime]\ngc_percent = 0\n", key: "runtime.gc_percent", reason: "between 1 and 10000"},
		{name: "below off", text: "[runtime]\ngc_percent = -5\n", key: "runtime.gc_percent", reason: "between 1 and 10000"},
		{name: "huge percent", text: "[runtime]\ngc_percent = 20000\n", key: "runtime.gc_percent", reason: "between 1 and 10000"},
		{name: "not a number", text: "[runtime]\ngc_percent = \"lots\"\n", key: "runtime.gc_percent", reason: ""},
		{name: "off without a limit", text: "[runtime]\ngc_percent = -1\n", key: "runtime.gc_percent", reason: "needs runtime.memory_limit"},
		{name: "negative limit", text: "[runtime]\nmemory_limit = -1\n", key: "runtime.memory_limit", reason: "negative"},
		{name: "tiny limit", text: "[runtime]\nmemory_limit = \"1MiB\"\n", key: "runtime.memory_limit", reason: "at least 16MiB"},
		{name: "limit with bad unit", text: "[runtime]\nmemory_limit = \"2 lots\"\n", key: "runtime.memory_limit", reason: "unknown unit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.text, tt.env...)
			if tt.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Runtime.GCPercent != tt.gcPercent || c.Runtime.MemoryLimit != tt.limit {
					t.Fatalf("got %+v, want gc_percent %d memory_limit %d", c.Runtime, tt.gcPercent, tt.limit)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key {
				t.Fatalf("error %v, want one naming %s", err, tt.key)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}
