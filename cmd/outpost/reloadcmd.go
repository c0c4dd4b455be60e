package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/internal/admin"
)

// reloadCommand is `outpost reload`: it asks the running suite, through POST /reload on the
// admin listener (with admin.token_file's token), to re-read its configuration file. Exit 0
// when applied; exit 2 with every error when the file was rejected (the running configuration
// kept); exit 1 when no server answered.
func (c *cli) reloadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make the running suite re-read its configuration (POST /reload; like kill -HUP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			if !cfg.Admin.Enabled {
				return usageError{errors.New("reload: the admin listener is disabled ([admin] enabled = false); send SIGHUP instead")}
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, "http://"+cfg.Admin.Listen+"/reload", nil)
			if err != nil {
				return fmt.Errorf("reload: %w", err)
			}
			if err := admin.AuthorizeRequest(req, cfg.Admin.TokenFile); err != nil {
				return usageError{err}
			}
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			if err != nil {
				return fmt.Errorf("reload: is outpost running? %w", err)
			}
			defer resp.Body.Close()
			var res struct {
				OK     bool     `json:"ok"`
				Errors []string `json:"errors"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
				return fmt.Errorf("reload: admin endpoint answered %s", resp.Status)
			}
			if !res.OK {
				return usageError{fmt.Errorf("reload rejected, the running configuration keeps serving:\n  %s", strings.Join(res.Errors, "\n  "))}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), "reloaded")
			return err
		},
	}
}
