// Package logging builds the process's slog logger from the [log] section.
package logging

import (
	"io"
	"log/slog"

	"github.com/outpost-proxy/outpost/internal/config"
)

// New returns a logger writing to w in the configured format at the configured level.
func New(cfg config.LogConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level(cfg.Level)}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func level(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
