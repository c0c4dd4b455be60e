package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDNSSECCommands: `outpost dns ds` prints DS, CDS and CDNSKEY for the demo zone (keys
// generated on first use), `outpost dns rollover` starts a ZSK rollover and refuses a second
// one, and an unsigned or unknown zone is an error.
func TestDNSSECCommands(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"ds", []string{"dns", "ds", "cdn.test"}, exitOK, []string{"\tIN\tDS\t", "\tIN\tCDS\t", "\tIN\tCDNSKEY\t257 3 13 "}},
		{"rollover", []string{"dns", "rollover", "cdn.test"}, exitOK, []string{"ZSK rollover of cdn.test.", "publish key", "leave the DNSKEY RRset"}},
		{"second rollover", []string{"dns", "rollover", "cdn.test"}, exitFailure, []string{"in progress"}},
		{"unsigned zone", []string{"dns", "ds", "outpost.test"}, exitFailure, []string{"is not signed"}},
		{"unknown zone", []string{"dns", "ds", "nowhere.test"}, exitFailure, []string{"no zone nowhere.test."}},
		{"no zone given", []string{"dns", "ds"}, exitUsage, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append(tc.args, "--data-dir", dir, "--log-level", "error")
			if got := run(context.Background(), args, &out, &out); got != tc.code {
				t.Fatalf("exit %d, want %d\n%s", got, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
