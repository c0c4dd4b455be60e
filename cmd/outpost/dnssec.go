package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/dnsredirect"
)

// dnsCommand is `outpost dns` (run the GeoDNS alone) with its DNSSEC subcommands.
func (c *cli) dnsCommand() *cobra.Command {
	cmd := c.upCommand("dns", "Run the GeoDNS server alone", []string{"dns"})
	cmd.AddCommand(c.dnsDSCommand(), c.dnsRolloverCommand())
	return cmd
}

// dnsDSCommand is `outpost dns ds ZONE`: the records to hand to the parent zone.
func (c *cli) dnsDSCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ds ZONE",
		Short: "Print the DS records of a signed zone for its parent, and the CDS/CDNSKEY records (RFC 7344)",
		Long: "Prints one DS record (SHA-256) per key-signing key of the zone, then the same as CDS and\n" +
			"CDNSKEY records. The zone's keys are generated first if it has none yet, as on first start.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			rrs, err := dnsredirect.DSRecords(cfg.DNS, cfg.DataDir, args[0], time.Now())
			if err != nil {
				return err
			}
			for _, rr := range rrs {
				fmt.Fprintln(cmd.OutOrStdout(), rr.String())
			}
			return nil
		},
	}
}

// dnsRolloverCommand is `outpost dns rollover ZONE`: start a ZSK rollover by pre-publication.
func (c *cli) dnsRolloverCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rollover ZONE",
		Short: "Start a ZSK rollover of a signed zone by pre-publication; the running server follows the schedule",
		Long: "Writes a new zone-signing key, published now and active after the DNSKEY TTL plus the\n" +
			"propagation delay, and retires the current one then; it leaves the key set after the largest\n" +
			"TTL in the zone plus the propagation delay. A running server picks the key files up\n" +
			"(dns.watch_interval, or SIGHUP) and re-signs at each step by itself.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := c.load()
			if err != nil {
				return err
			}
			p, err := dnsredirect.Rollover(cfg.DNS, cfg.DataDir, args[0], time.Now())
			if err != nil {
				return err
			}
			w, stamp := cmd.OutOrStdout(), func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
			fmt.Fprintf(w, "ZSK rollover of %s: key %d replaces %v\n", p.Zone, p.NewTag, p.OldTags)
			fmt.Fprintf(w, "  %s  publish key %d in the DNSKEY RRset\n", stamp(p.Publish), p.NewTag)
			fmt.Fprintf(w, "  %s  key %d signs, %v stop (DNSKEY TTL %s + propagation %s)\n", stamp(p.Activate), p.NewTag, p.OldTags, p.DNSKEYTTL, p.PropagationDelay)
			fmt.Fprintf(w, "  %s  %v leave the DNSKEY RRset (largest TTL %s + propagation %s)\n", stamp(p.Delete), p.OldTags, p.MaxTTL, p.PropagationDelay)
			return nil
		},
	}
}
