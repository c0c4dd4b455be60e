package main

import (
	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/bench"
)

// newBenchCmd is `outpost bench` (scorecard, http, cache, dns, delay, compare). Its flag and option
// errors wrap *bench.UsageError: map them to exit status 2 with bench.IsUsage(err).
func newBenchCmd() *cobra.Command { return bench.NewCommand(versionString()) }
