package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdev/fleet/sandbox"
)

const demoImage = "fleet-demo:v1"

func localImageID(t *testing.T, ref string) string {
	t.Helper()
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).Output()
	if err != nil {
		t.Fatalf("%s is not in the local engine (make demo-images builds it): %v", ref, err)
	}
	return strings.TrimSpace(string(out))
}

func removeFromHosts(t *testing.T, ref string) {
	t.Helper()
	for i := 1; i <= hostCount; i++ {
		sb.Exec(context.Background(), sandbox.HostName(i), "docker", "rmi", "-f", ref)
	}
}

func TestImagePush(t *testing.T) {
	id := localImageID(t, demoImage)
	removeFromHosts(t, demoImage)

	r := fleet(t, "push.db", "image", "push", demoImage)
	if r.code != 0 {
		t.Fatalf("push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i := 1; i <= hostCount; i++ {
		h := sandbox.HostName(i)
		if !strings.Contains(lineOf(r.stdout, h), "loaded") {
			t.Errorf("%s: %q, want loaded", h, lineOf(r.stdout, h))
		}
		got := strings.TrimSpace(hostExec(t, h, "docker", "image", "inspect", "--format", "{{.Id}}", demoImage))
		if got != id {
			t.Errorf("%s has %s as %s, want %s", h, demoImage, got, id)
		}
	}

	t.Run("a second push transfers nothing", func(t *testing.T) {
		r := fleet(t, "push.db", "image", "push", demoImage)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for i := 1; i <= hostCount; i++ {
			line := lineOf(r.stdout, sandbox.HostName(i))
			if f := strings.Fields(line); len(f) < 3 || f[1] != "present" || f[2] != "-" {
				t.Errorf("%q, want present with nothing sent", line)
			}
		}
	})

	t.Run("a push from a file to one host lands only there", func(t *testing.T) {
		tar := filepath.Join(t.TempDir(), "demo.tar")
		if out, err := exec.Command("docker", "save", "-o", tar, "fleet-demo:v2").CombinedOutput(); err != nil {
			t.Fatalf("docker save: %v: %s", err, out)
		}
		removeFromHosts(t, "fleet-demo:v2")
		target := sandbox.HostName(2)
		r := fleet(t, "push.db", "image", "push", "--from-file", tar, "--host", target)
		if r.code != 0 || !strings.Contains(lineOf(r.stdout, target), "loaded") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if n := strings.Count(r.stdout, "node"); n != 1 {
			t.Errorf("pushed to %d machines, want 1:\n%s", n, r.stdout)
		}
		for i := 1; i <= hostCount; i++ {
			h := sandbox.HostName(i)
			code, _, _ := sb.Exec(context.Background(), h, "docker", "image", "inspect", "fleet-demo:v2")
			if has := code == 0; has != (h == target) {
				t.Errorf("%s has fleet-demo:v2: %v", h, has)
			}
		}
	})

	t.Run("a missing image is refused before any host is touched", func(t *testing.T) {
		r := fleet(t, "push.db", "image", "push", "fleet-demo:does-not-exist")
		if r.code == 0 || !strings.Contains(r.stderr, "not in the local Docker engine") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("an unknown host is refused", func(t *testing.T) {
		r := fleet(t, "push.db", "image", "push", demoImage, "--host", "nosuchhost")
		if r.code == 0 || !strings.Contains(r.stderr, "nosuchhost") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
}
