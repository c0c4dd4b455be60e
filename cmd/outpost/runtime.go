package main

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/outpost-proxy/outpost/internal/config"
)

// applyRuntime sets the garbage collector from [runtime] (gc_percent, memory_limit). A GOGC or
// GOMEMLIMIT environment variable wins over its key: the Go runtime has applied it already.
func applyRuntime(rc config.RuntimeConfig, logger *slog.Logger) {
	if v, ok := os.LookupEnv("GOGC"); ok {
		logger.Info("GOGC is set: runtime.gc_percent ignored", "GOGC", v)
	} else {
		debug.SetGCPercent(rc.GCPercent)
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		logger.Info("GOMEMLIMIT is set: runtime.memory_limit ignored", "GOMEMLIMIT", v)
	} else if rc.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(rc.MemoryLimit))
	}
}
