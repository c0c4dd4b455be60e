package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/dnsredirect/geodb"
)

// newGeodbCmd is `outpost geodb`: tools for the MaxMind-format databases the GeoDNS reads.
func newGeodbCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "geodb",
		Short: "Build GeoLite2-shaped .mmdb databases for the GeoDNS",
	}
	var csvPath, out, kind string
	build := &cobra.Command{
		Use:   "build --csv nets.csv --out demo.mmdb [--type city|asn]",
		Short: "Write a GeoLite2-City- or ASN-shaped database from a CSV",
		Long: "Reads a CSV of cidr,country,continent,latitude,longitude,asn,organisation (a header\n" +
			"line and # comments are allowed; --csv - or no --csv uses the embedded demo regions)\n" +
			"and writes a MaxMind DB that dnsredirect (and mmdblookup) can read.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := csvPath
			if path == "-" {
				path = ""
			}
			if err := geodb.BuildFile(geodb.Kind(kind), path, geodb.DemoCSV, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s database %s\n", kind, out)
			return nil
		},
	}
	build.Flags().StringVar(&csvPath, "csv", "", "CSV of networks (empty or - : the embedded demo regions)")
	build.Flags().StringVar(&out, "out", "", "output .mmdb file")
	build.Flags().StringVar(&kind, "type", "city", "database shape: city or asn")
	_ = build.MarkFlagRequired("out")
	cmd.AddCommand(build)
	return cmd
}
