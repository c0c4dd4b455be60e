package bench

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// This file installs what the comparison needs from Debian packages, and names the versions
// and the commit that were measured.

// requiredTools are the programs the run itself needs, with their packages.
var requiredTools = []serverSpec{
	{binary: "wrk", pkgs: []string{"wrk"}},
	{binary: "h2load", pkgs: []string{"nghttp2-client"}},
	{binary: "taskset", pkgs: []string{"util-linux"}},
}

// lookTool finds an executable on PATH or in the sbin directories (where the servers live and
// which a non-login root shell may not have on PATH).
func lookTool(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := d + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// missingPackages lists, for every program the servers and the run need and do not find,
// the Debian package to install (the first of its alternatives).
func missingPackages(servers []string, look func(string) (string, bool)) (pkgs, alternatives []string) {
	specs := slices.Clone(requiredTools)
	specs = append(specs, serverSpecs["origin"])
	for _, s := range servers {
		specs = append(specs, serverSpecs[s])
	}
	seen := map[string]bool{}
	for _, s := range specs {
		if s.binary == "" || seen[s.binary] {
			continue
		}
		seen[s.binary] = true
		if _, ok := look(s.binary); !ok {
			pkgs = append(pkgs, s.pkgs[0])
			alternatives = append(alternatives, strings.Join(s.pkgs, " or "))
		}
	}
	return pkgs, alternatives
}

// ensurePackages installs the missing packages with apt-get (nothing when all are there). The
// packages' init scripts are kept from starting the system services (policy-rc.d), so the
// only servers running are the ones the run starts itself.
func ensurePackages(ctx context.Context, o CompareOptions) error {
	if err := addSbinToPath(); err != nil {
		return err
	}
	pkgs, alts := missingPackages(o.Servers, lookTool)
	if len(pkgs) == 0 {
		return nil
	}
	if !o.Install {
		return fmt.Errorf("missing %s: install them (apt-get install %s) or drop --install=false", strings.Join(alts, ", "), strings.Join(pkgs, " "))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing %s: run as root to install them, or: sudo apt-get install -y --no-install-recommends %s", strings.Join(alts, ", "), strings.Join(pkgs, " "))
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	fmt.Fprintf(log, "bench compare: installing %s\n", strings.Join(pkgs, " "))
	restore, err := holdServiceStarts()
	if err != nil {
		return err
	}
	defer restore()
	if err := aptInstall(ctx, log, pkgs); err != nil {
		// The package lists may be stale or missing (a fresh container): update once and retry.
		if uerr := runLogged(ctx, log, "apt-get", "update"); uerr != nil {
			return fmt.Errorf("apt-get update: %w", uerr)
		}
		if err := aptInstall(ctx, log, pkgs); err != nil {
			return fmt.Errorf("apt-get install %s: %w", strings.Join(pkgs, " "), err)
		}
	}
	if pkgs, alts = missingPackages(o.Servers, lookTool); len(pkgs) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(alts, ", "))
	}
	return nil
}

func aptInstall(ctx context.Context, log io.Writer, pkgs []string) error {
	args := append([]string{"install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300"}, pkgs...)
	return runLogged(ctx, log, "apt-get", args...)
}

func runLogged(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}

// policyRC is Debian's hook that invoke-rc.d asks before starting a service.
const policyRC = "/usr/sbin/policy-rc.d"

// holdServiceStarts makes invoke-rc.d refuse to start services while packages install (exit
// 101, as Debian's container images do), unless a policy is already in place. The returned
// function removes the policy it added.
func holdServiceStarts() (func(), error) {
	if _, err := os.Stat(policyRC); err == nil {
		return func() {}, nil
	}
	const script = "#!/bin/sh\n# outpost bench compare: no service starts while it installs packages.\nexit 101\n"
	if err := os.WriteFile(policyRC, []byte(script), 0o755); err != nil {
		return nil, fmt.Errorf("hold service starts: %w", err)
	}
	return func() { os.Remove(policyRC) }, nil
}

// addSbinToPath appends the sbin directories to PATH when missing, so the servers (in
// /usr/sbin) start by name.
func addSbinToPath() error {
	path := os.Getenv("PATH")
	parts := strings.Split(path, ":")
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if !slices.Contains(parts, d) {
			path += ":" + d
		}
	}
	return os.Setenv("PATH", path)
}

// peerVersions are the Debian package versions of the servers measured.
func peerVersions(servers []string) map[string]string {
	v := map[string]string{}
	for _, s := range append(slices.Clone(servers), "origin", "wrk", "h2load") {
		spec, ok := serverSpecs[s]
		pkgs := spec.pkgs
		if !ok {
			pkgs = []string{s}
		}
		if s == "h2load" {
			pkgs = []string{"nghttp2-client"}
		}
		for _, p := range pkgs {
			out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", p).Output()
			if err == nil && len(out) > 0 {
				v[s] = p + " " + string(out)
				break
			}
		}
	}
	return v
}

// binaryCommit returns the Outpost binary's version and its VCS revision from its build
// information (or the version given with -ldflags "-X main.version=..."). A binary built
// without either (go run, GOFLAGS=-buildvcs=false) says so, naming
// the commit of the working tree the run was started in, which is where it was most likely
// built from.
func binaryCommit(binary string) (version, commit string) {
	if bi, err := buildinfo.ReadFile(binary); err == nil {
		version = bi.Main.Version
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			case "-ldflags":
				// -ldflags "-X main.version=V", as cmd/outpost documents for release builds.
				if _, v, ok := strings.Cut(s.Value, "main.version="); ok && rev == "" {
					rev = strings.Fields(strings.Trim(v, `'"`) + " ")[0]
				}
			}
		}
		if rev != "" {
			if modified == "true" {
				rev += " (modified)"
			}
			return version, rev
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return version, "unknown (no VCS stamp in the binary, no git work tree here)"
	}
	commit = "not stamped in the binary; the working tree here is at " + strings.TrimSpace(string(out))
	// Modified markdown (the results file being appended to) does not change the binary.
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)*.md").Output(); err == nil && len(st) > 0 {
		commit += " with uncommitted changes"
	}
	return version, commit
}
