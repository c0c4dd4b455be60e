package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/outpost-proxy/outpost/bench"
)

// newLabCmd is `outpost lab`: the CDN across emulated regions in network namespaces, every
// server a separate process of this same binary. Without root or network namespaces it is a
// usage error (exit status 2).
func newLabCmd() *cobra.Command {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return bench.NewLabCommand(self, versionString())
}
