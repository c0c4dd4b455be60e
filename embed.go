// Package outpost holds the files the outpost binary embeds: the example configuration, which is
// also the default configuration that `outpost up` runs when no file is given.
package outpost

import _ "embed"

// ExampleConfig is config.example.toml: every key documented, and the demo suite's settings.
//
//go:embed config.example.toml
var ExampleConfig []byte
