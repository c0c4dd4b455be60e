package bench

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

// NewLabCommand returns `outpost lab`: the CDN across emulated regions in network namespaces.
// binary is the outpost executable the servers run as (the running one). version is shown in
// the HTML report. Its option errors, and a machine without root or network namespaces, are
// *UsageError (exit status 2).
func NewLabCommand(binary, version string) *cobra.Command {
	o := LabOptions{Binary: binary, Delays: DefaultLabDelays()}
	var out outputFlags
	var size, bandwidth string
	var cleanStale bool
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the CDN across emulated regions: separate edge, parent, origin and DNS processes in network namespaces (root)",
		Long: `Builds network namespaces joined by veth links — three client regions, three edges, one parent,
one origin (HTTP and FTP) and the authoritative DNS — with every link's RTT emulated by a delay
line, starts each server as its own outpost process with its own configuration, and measures:
the edge each region is steered to, the demo page's cold and warm load times next to the model,
origin requests per object, failover when an edge dies, and how many tiers still serve an
object after one PURGE. Everything it made is removed on exit, on Ctrl-C and on error.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cleanStale {
				removed, err := CleanStaleLabs()
				for _, p := range removed {
					fmt.Fprintf(cmd.OutOrStdout(), "removed the namespaces of dead run %s*\n", p)
				}
				return err
			}
			var err error
			if o.Delays.EdgeBandwidth, err = ParseBandwidth("--bandwidth", bandwidth); err != nil {
				return err
			}
			if size != "" {
				if o.ObjectSize, err = ParseSize("--size", size); err != nil {
					return err
				}
			}
			o.Progress = cmd.ErrOrStderr()
			res, err := RunLab(cmd.Context(), o)
			if res != nil {
				if werr := labOutput(cmd, res, out); werr != nil && err == nil {
					err = werr
				}
				if err == nil && !res.Leftover.Zero() {
					err = fmt.Errorf("lab: clean-up left %+v", res.Leftover)
				}
			}
			return err
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	cmd.Annotations = map[string]string{versionKey: version}
	f := cmd.Flags()
	d := &o.Delays
	f.DurationVar(&d.NearEdge, "near", d.NearEdge, "RTT between a region and its near edge")
	f.DurationVar(&d.NextEdge, "next", d.NextEdge, "RTT between a region and its next-nearest edge")
	f.DurationVar(&d.FarEdge, "far", d.FarEdge, "RTT between a region and its farthest edge")
	f.DurationVar(&d.EdgeParent, "edge-parent", d.EdgeParent, "RTT between an edge and the parent")
	f.DurationVar(&d.ParentOrigin, "parent-origin", d.ParentOrigin, "RTT between the parent and the origin")
	f.DurationVar(&d.EdgeOrigin, "edge-origin", 0, "RTT of an edge's direct path to the origin (0: edge-parent + parent-origin)")
	f.StringVar(&bandwidth, "bandwidth", "", "cap every region ↔ edge link at `RATE` per direction (8Mbit = bits/s, 1MiB = bytes/s)")
	f.DurationVar(&o.Health.Interval, "health-interval", time.Second, "the DNS's health check interval")
	f.DurationVar(&o.Health.Timeout, "health-timeout", 500*time.Millisecond, "one health check's timeout")
	f.IntVar(&o.Health.Fall, "health-fall", 2, "failed checks before an edge is down")
	f.IntVar(&o.Health.Rise, "health-rise", 2, "passed checks before an edge is up again")
	f.IntVar(&o.PageObjects, "objects", 10, "objects embedded in the demo page /page/N")
	f.StringVar(&size, "size", "", "size of each object (default: the origin's page_object_size)")
	f.IntVar(&o.WarmRuns, "warm-runs", 5, "warm page loads per region (the median is reported)")
	f.IntVar(&o.FailRegion, "fail-region", 1, "region whose near edge is stopped in the failover phase")
	f.StringVar(&o.ParentTier, "parent-tier", "auto", "edges use the parent: auto (when this outpost accepts [proxy.parents]), on, off")
	f.BoolVar(&o.Keep, "keep", false, "keep the run directory (configurations and logs)")
	f.BoolVar(&cleanStale, "clean-stale", false, "only remove what runs killed without clean-up (SIGKILL) left, and exit; live runs are never touched")
	out.add(cmd)
	return cmd
}

// labOutput prints the result as a table or JSON, and writes the HTML report when asked.
func labOutput(cmd *cobra.Command, res *LabResult, out outputFlags) error {
	if out.report != "" {
		rep := newReport(cmd, "outpost lab")
		if err := addLabSections(rep, res); err != nil {
			return err
		}
		if err := rep.WriteFile(out.report); err != nil {
			return err
		}
	}
	if out.json {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	return WriteLab(cmd.OutOrStdout(), res)
}

// WriteLab writes the result as text tables.
func WriteLab(w io.Writer, res *LabResult) error {
	fmt.Fprintf(w, "lab %s*   parent tier: %s\n\n", res.Prefix, res.ParentTier)
	for _, t := range []*Table{LabRegionTable(res), LabLinkTable(res), LabEventTable(res)} {
		if err := writeTable(w, t); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	for _, n := range res.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	l := res.Leftover
	_, err := fmt.Fprintf(w, "leftover: %d namespaces, %d links, %d processes · %.1fs in all\n", l.Namespaces, l.Links, l.Processes, res.Seconds)
	return err
}
