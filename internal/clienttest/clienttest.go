// Package clienttest runs the real command-line clients (curl, lftp, swaks, python3 ...) that
// end-to-end tests drive: it skips a test whose client is not installed, naming the Debian
// package to install, and runs a client under a deadline with its output in any failure.
// Only tests import it.
package clienttest

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Need returns the path of prog, or skips the test saying which Debian package provides it.
func Need(t testing.TB, prog, debianPkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s)", prog, debianPkg)
	}
	return p
}

// Run runs name with args, killing it after timeout, and returns its standard output. A
// failure (non-zero exit, timeout) fails the test with the command line, stdout and stderr.
func Run(t testing.TB, timeout time.Duration, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}
