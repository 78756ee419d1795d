package main

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// toolset holds the absolute paths of the programs the benchmark runs
// and the versions it reports.
type toolset struct {
	nginx, haproxy, wrk, taskset string
	nginxVersion, haproxyVersion string
	wrkVersion                   string
}

// needed maps each program to the Debian package that has it.
var needed = []struct{ prog, pkg string }{
	{"nginx", "nginx-light"},
	{"haproxy", "haproxy"},
	{"wrk", "wrk"},
	{"taskset", "util-linux"},
}

// ensureTools finds nginx, haproxy, wrk and taskset, installing the
// missing ones with apt-get. It never starts or stops a system service:
// Debian's packages may enable one, but the benchmark runs its own
// processes from its own configs.
func ensureTools(ctx context.Context) (toolset, error) {
	var pkgs []string
	for _, n := range needed {
		if _, err := findProg(n.prog); err != nil {
			pkgs = append(pkgs, n.pkg)
		}
	}
	if len(pkgs) > 0 {
		if err := install(ctx, pkgs); err != nil {
			return toolset{}, err
		}
	}
	var ts toolset
	for _, n := range needed {
		p, err := findProg(n.prog)
		if err != nil {
			return toolset{}, fmt.Errorf("%s is missing (package %s): %w", n.prog, n.pkg, err)
		}
		switch n.prog {
		case "nginx":
			ts.nginx = p
		case "haproxy":
			ts.haproxy = p
		case "wrk":
			ts.wrk = p
		case "taskset":
			ts.taskset = p
		}
	}
	// nginx -v and wrk -v print to stderr, and wrk -v exits 1.
	ts.nginxVersion = version(ts.nginx, "-v", "nginx/")
	ts.haproxyVersion = version(ts.haproxy, "-v", "version ")
	ts.wrkVersion = version(ts.wrk, "-v", "wrk ")
	return ts, nil
}

// findProg is exec.LookPath that also looks in the sbin directories,
// where Debian puts nginx and haproxy but which a non-login PATH may lack.
func findProg(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// install runs apt-get for pkgs and logs what it set up. nginx-light is
// a transitional package on newer Debian releases and gone on some: then
// it installs nginx.
func install(ctx context.Context, pkgs []string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing packages %s and not root: install them with apt-get", strings.Join(pkgs, " "))
	}
	log.Printf("bench-lb: missing tools; apt-get update")
	if out, err := apt(ctx, "apt-get", "update"); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, tail(out, 20))
	}
	for i, p := range pkgs {
		if p == "nginx-light" {
			if out, err := apt(ctx, "apt-cache", "show", "nginx-light"); err != nil || !bytes.Contains(out, []byte("Package: nginx-light")) {
				pkgs[i] = "nginx"
			}
		}
	}
	log.Printf("bench-lb: apt-get install -y --no-install-recommends %s", strings.Join(pkgs, " "))
	out, err := apt(ctx, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...)
	if err != nil {
		return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(pkgs, " "), err, tail(out, 20))
	}
	var set []string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, "Setting up "); ok {
			set = append(set, strings.TrimSuffix(strings.TrimSpace(s), " ..."))
		}
	}
	log.Printf("bench-lb: installed %s", strings.Join(set, ", "))
	return nil
}

// apt runs an apt command to the end even if ctx is cancelled: killing
// dpkg halfway leaves the machine's package database broken.
func apt(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(context.WithoutCancel(ctx), name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}

// version runs prog with flag and returns the word after marker in its
// output, or "?".
func version(prog, flag, marker string) string {
	out, _ := exec.Command(prog, flag).CombinedOutput()
	_, after, ok := strings.Cut(string(out), marker)
	if !ok {
		return "?"
	}
	f := strings.Fields(after)
	if len(f) == 0 {
		return "?"
	}
	// Debian's revision ("2.6.12-1+deb12u4", "debian/4.1.0-3+b2") is not
	// part of the upstream version.
	v, _, _ := strings.Cut(strings.TrimPrefix(f[0], "debian/"), "-")
	return v
}

// tail is the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
