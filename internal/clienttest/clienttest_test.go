package clienttest

import (
	"testing"
	"time"
)

// TestNeedSkipsMissingClient: a missing program skips (never fails) the test that needs it.
func TestNeedSkipsMissingClient(t *testing.T) {
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Need(t, "outpost-no-such-client", "no-such-package")
		t.Error("Need returned for a missing program")
	})
	if !skipped {
		t.Fatal("test was not skipped")
	}
}

// TestRunOutput: Run returns the client's standard output.
func TestRunOutput(t *testing.T) {
	sh := Need(t, "sh", "dash")
	if got := string(Run(t, 10*time.Second, sh, "-c", "echo out; echo err >&2")); got != "out\n" {
		t.Fatalf("Run = %q, want %q", got, "out\n")
	}
}
