package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// configCommand is `outpost config check|print`.
func (c *cli) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Validate or print the effective configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the configuration (exit 0 when valid, 2 when not)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, err := c.load(); err != nil {
				return err
			}
			src := c.configFile
			if src == "" {
				src = "embedded default configuration"
			}
			fmt.Fprintf(c.stdout, "%s: ok\n", src)
			return nil
		},
	}, &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration as TOML, secrets masked",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			out, err := cfg.TOML()
			if err != nil {
				return err
			}
			_, err = c.stdout.Write(out)
			return err
		},
	})
	return cmd
}
