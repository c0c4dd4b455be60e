// Command outpost runs the Outpost suite: a caching HTTP proxy, a GeoDNS server, origin servers
// (HTTP, FTP, SMTP/POP3/IMAP) and a benchmarking tool, from one TOML configuration.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
