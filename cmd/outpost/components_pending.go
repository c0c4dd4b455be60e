//go:build !wiring

package main

import (
	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/internal/component"
	"github.com/outpost-proxy/outpost/internal/config"
)

// Temporary while the components are written: only the admin listener runs.
func buildComponents(*config.Config, component.Env, func(string, bool) bool, *suite) ([]component.Component, error) {
	return nil, nil
}

func (c *cli) mailCommand() *cobra.Command {
	return c.upCommand("mail", "Run the mail servers (SMTP, POP3, IMAP) alone", []string{"mail"})
}

func addExtraCommands(*cobra.Command) {}
