package clienttest

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the path of Debian's chromium (or another build of it), or skips the test
// saying which package provides it.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (Debian package chromium)")
	return ""
}

// HeadlessFlags are the flags every test starts Chromium with: headless as root, with a fresh
// profile in userDataDir, and none of the background connections a closed network refuses.
func HeadlessFlags(userDataDir string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + userDataDir}
}

// ChromiumCommand returns a command running headless Chromium (skipping the test when it is not
// installed) with HeadlessFlags, a fresh profile and home directory of the test's own, then args.
func ChromiumCommand(ctx context.Context, t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, Chromium(t), append(HeadlessFlags(t.TempDir()), args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	return cmd
}
