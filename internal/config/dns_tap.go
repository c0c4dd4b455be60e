package config

import (
	"fmt"
	"slices"
	"strings"
)

// DNSDnstapConfig is query logging in dnstap format ([dns.dnstap]): Frame Streams of dnstap
// protobuf messages to a Unix socket collector (such as dnstap-ldns, golang-dnstap's `dnstap`
// or fstrm_capture) or to a file, as Knot, BIND and Unbound write them.
type DNSDnstapConfig struct {
	// Enabled turns dnstap logging on.
	Enabled bool `mapstructure:"enabled"`
	// Destination is "unix:/path/to/socket" for a collector listening on a Unix socket, or a
	// file path (an existing file is renamed to *.1 first). Relative paths are under data_dir.
	Destination string `mapstructure:"destination"`
	// Identity is the dnstap identity field ("" = the host name).
	Identity string `mapstructure:"identity"`
	// Version is the dnstap version field ("" = "outpost").
	Version string `mapstructure:"version"`
	// Messages are the message types logged: "auth_query" and/or "auth_response".
	Messages []string `mapstructure:"messages"`
	// QueueSize is how many queries (each with its response) wait for the writer; when the
	// queue is full further ones are dropped and counted, so answers never wait for the log.
	QueueSize int `mapstructure:"queue_size"`
}

// DNSTapMessages are the dnstap message types dns.dnstap.messages accepts.
var DNSTapMessages = []string{"auth_query", "auth_response"}

// MaxDNSTapQueue bounds dns.dnstap.queue_size.
const MaxDNSTapQueue = 1 << 20

func defaultDNSTap() DNSDnstapConfig {
	return DNSDnstapConfig{Destination: "dnstap.fstrm", Messages: []string{"auth_query", "auth_response"}, QueueSize: 8192}
}

// TapSocket returns the socket path of a "unix:" destination, and whether it is one.
func (d *DNSDnstapConfig) TapSocket() (string, bool) {
	return strings.CutPrefix(d.Destination, "unix:")
}

// Logs reports whether message type kind ("auth_query", "auth_response") is logged.
func (d *DNSDnstapConfig) Logs(kind string) bool {
	return slices.Contains(d.Messages, kind)
}

func (d *DNSDnstapConfig) validate() error {
	if !d.Enabled {
		return nil
	}
	path, socket := d.TapSocket()
	if strings.TrimSpace(path) == "" {
		return errorf("dns.dnstap.destination", "needs \"unix:/path\" or a file path, got %q", d.Destination)
	}
	if socket && len(path) > 107 {
		return errorf("dns.dnstap.destination", "Unix socket path longer than 107 bytes: %q", path)
	}
	if len(d.Identity) > 255 || len(d.Version) > 255 {
		return errorf("dns.dnstap.identity", "identity and version must be at most 255 bytes")
	}
	if len(d.Messages) == 0 {
		return errorf("dns.dnstap.messages", "needs at least one of %s", strings.Join(DNSTapMessages, ", "))
	}
	seen := map[string]bool{}
	for i, m := range d.Messages {
		key := fmt.Sprintf("dns.dnstap.messages[%d]", i)
		if !slices.Contains(DNSTapMessages, m) {
			return errorf(key, "%q is not a message type (%s)", m, strings.Join(DNSTapMessages, ", "))
		}
		if seen[m] {
			return errorf(key, "%q appears twice", m)
		}
		seen[m] = true
	}
	if d.QueueSize < 1 || d.QueueSize > MaxDNSTapQueue {
		return errorf("dns.dnstap.queue_size", "must be 1..%d, got %d", MaxDNSTapQueue, d.QueueSize)
	}
	return nil
}

// What an AXFR carries for a steered name (dns.dynamic[].transfer).
const (
	TransferAll     = "all"     // every edge of the pool (the default)
	TransferEdges   = "edges"   // the fixed set transfer_edges
	TransferExclude = "exclude" // nothing: the secondary does not know the name's addresses
)

// validateTransfer checks a steered name's transfer view against the configured edges.
func (d *DNSDynamicConfig) validateTransfer(key string, edges map[string]bool) error {
	switch d.Transfer {
	case "", TransferAll, TransferExclude:
		if len(d.TransferEdges) > 0 {
			return errorf(key+".transfer_edges", "only with transfer = %q", TransferEdges)
		}
		return nil
	case TransferEdges:
		return checkEdgeList(key+".transfer_edges", d.TransferEdges, edges)
	}
	return errorf(key+".transfer", "must be %s, %s or %s, got %q", TransferAll, TransferEdges, TransferExclude, d.Transfer)
}
