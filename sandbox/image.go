package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/fleetdev/fleet/image"
)

// hostInit is the sandbox host's entrypoint: dockerd in the background,
// sshd in the foreground (Docker's --init reaps what they leave). It runs
// again on every start, so a killed and restarted host comes back whole.
const hostInit = `#!/bin/bash
set -e
mkdir -p /root/.ssh /run/sshd
chmod 700 /root/.ssh
if [ -n "$FLEET_AUTHORIZED_KEY" ]; then
  printf '%s\n' "$FLEET_AUTHORIZED_KEY" > /root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
fi
# Each host makes its own host keys on first start; they persist across
# kill and start because the container's filesystem does.
ssh-keygen -A >/dev/null
rm -f /var/run/docker.pid /run/docker/containerd/containerd.pid
dockerd --log-level=warn >>/var/log/dockerd.log 2>&1 &
exec /usr/sbin/sshd -D -e
`

// sshdConfig lets many connections start at once (benchmarks open one per
// operation), skips reverse DNS, which has no server to ask here, and
// skips PAM: sandbox hosts take only key logins for root, and PAM's
// per-connection modules cost about 50 ms of CPU each on a 2-core machine.
const sshdConfig = `UseDNS no
UsePAM no
MaxStartups 200:30:400
MaxSessions 200
`

// hostPackages are installed into the host image by debootstrap.
var hostPackages = []string{"openssh-server", "docker.io", "iptables", "iproute2", "procps", "ca-certificates"}

// ImageRef is the local tag of the sandbox host image. It names a hash of
// the recipe, so changing the recipe builds a new image.
func ImageRef() string {
	h := sha256.New()
	h.Write([]byte(hostInit))
	h.Write([]byte(sshdConfig))
	h.Write([]byte(strings.Join(hostPackages, ",")))
	return "fleet-sandbox-host:" + hex.EncodeToString(h.Sum(nil))[:12]
}

// EnsureImage builds the host image unless the local engine has it. The
// build needs no container registry: debootstrap fetches Debian packages
// and `docker import` turns the tree into an image. Builds by concurrent
// processes are serialised with a lock file.
func EnsureImage(ctx context.Context, cli *client.Client, log io.Writer) error {
	ref := ImageRef()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("inspect sandbox image %s: %w", ref, err)
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "fleet-sandbox-image.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock sandbox image build: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return nil // another process built it while we waited
	}
	return buildImage(ctx, cli, ref, log)
}

func buildImage(ctx context.Context, cli *client.Client, ref string, log io.Writer) error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return errors.New("build sandbox image: debootstrap is not installed: run `apt-get install debootstrap` (as root)")
	}
	if os.Geteuid() != 0 {
		return errors.New("build sandbox image: debootstrap needs root: run `fleet sandbox up` as root once, or build the image elsewhere")
	}
	tmp, err := os.MkdirTemp("", "fleet-host-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	mirror := os.Getenv("FLEET_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	fmt.Fprintf(log, "building sandbox host image %s with debootstrap (about 90 s, once)\n", ref)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(hostPackages, ","), "bookworm", rootfs, mirror)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build sandbox image: debootstrap: %w\n%s", err, tail(out.String(), 20))
	}
	// Host keys made by the package's install script would be shared by
	// every host; each host makes its own on first start instead.
	keys, _ := filepath.Glob(filepath.Join(rootfs, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		os.Remove(k)
	}
	for _, d := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists"} {
		os.RemoveAll(filepath.Join(rootfs, d))
	}
	if err := os.WriteFile(filepath.Join(rootfs, "usr/local/sbin/fleet-host-init"), []byte(hostInit), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/ssh/sshd_config.d/fleet.conf"), []byte(sshdConfig), 0o644); err != nil {
		return err
	}
	tarCmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", rootfs, "-c", ".")
	stdout, err := tarCmd.StdoutPipe()
	if err != nil {
		return err
	}
	var tarErr bytes.Buffer
	tarCmd.Stderr = &tarErr
	if err := tarCmd.Start(); err != nil {
		return fmt.Errorf("build sandbox image: tar: %w", err)
	}
	resp, err := cli.ImageImport(ctx, dimage.ImportSource{Source: stdout, SourceName: "-"}, ref,
		dimage.ImportOptions{Changes: []string{`CMD ["/usr/local/sbin/fleet-host-init"]`}})
	if err != nil {
		tarCmd.Process.Kill()
		tarCmd.Wait()
		return fmt.Errorf("build sandbox image: import: %w", err)
	}
	defer resp.Close()
	if err := image.ReadProgress(resp); err != nil {
		return fmt.Errorf("build sandbox image: import: %w", err)
	}
	if err := tarCmd.Wait(); err != nil {
		return fmt.Errorf("build sandbox image: tar: %w: %s", err, tarErr.String())
	}
	fmt.Fprintf(log, "built %s\n", ref)
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
