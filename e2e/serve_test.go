package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdev/fleet/sandbox"
)

// startServe runs `fleet serve` against the sandbox with state file state
// until the test ends (or stop is called).
func startServe(t *testing.T, state string, args ...string) (stop func() (string, error)) {
	t.Helper()
	cmd := exec.Command(fleetBin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), "FLEET_INVENTORY="+sb.InventoryPath(), "FLEET_STATE="+filepath.Join(stateDir, state), "HOME="+stateDir)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop = func() (string, error) {
		if stopped {
			return log.String(), nil
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return log.String(), err
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			return log.String(), <-done
		}
	}
	t.Cleanup(func() {
		out, _ := stop()
		if t.Failed() {
			t.Logf("fleet serve log:\n%s", out)
		}
	})
	return stop
}

func runningOn(pods []podJSON) (total int, byNode map[string]int) {
	byNode = map[string]int{}
	for _, p := range pods {
		if p.Status == "Running" {
			total++
			byNode[p.Node]++
		}
	}
	return total, byNode
}

// Seed scenario 2: a machine dies; serve moves its replicas, and fences
// them when it comes back.
func TestServe_MachineDiesAndReturns(t *testing.T) {
	ctx := context.Background()
	const state = "serve.db"
	stop := startServe(t, state, "--node-timeout", "2s")
	m := writeManifest(t, "heal.yaml", web("heal", 10))
	t.Cleanup(func() { fleet(t, state, "delete", "deploy/heal") })
	r := fleet(t, state, "apply", "-f", m)
	if r.code != 0 || !strings.Contains(r.stdout, "converged (by serve") {
		t.Fatalf("apply beside serve: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Run("reconcile defers to serve's lease", func(t *testing.T) {
		r := fleet(t, state, "reconcile")
		if r.code != 3 || !strings.Contains(r.stderr, "serve") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})

	victim := sandbox.HostName(4)
	_, before := runningOn(getPodsJSON(t, state, "heal"))
	if before[victim] == 0 {
		t.Fatalf("no replica on %s to lose: %v", victim, before)
	}
	if err := sb.Kill(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Start(context.Background(), victim) })
	eventually(t, "10 replicas running on the other machines", func() bool {
		total, byNode := runningOn(getPodsJSON(t, state, "heal"))
		return total == 10 && byNode[victim] == 0
	})
	ev := fleet(t, state, "get", "events")
	if !strings.Contains(ev.stdout, "NodeNotReady") || !strings.Contains(ev.stdout, "lost with "+victim) {
		t.Errorf("events lack the detection or the replacement:\n%s", ev.stdout)
	}

	if err := sb.Start(ctx, victim); err != nil {
		t.Fatal(err)
	}
	// Docker brings the old containers back with the machine; serve stops
	// them because their replacements run elsewhere.
	eventually(t, "no surplus after the machine returns", func() bool {
		pods := getPodsJSON(t, state, "heal")
		total, byNode := runningOn(pods)
		return len(pods) == 10 && total == 10 && byNode[victim] == 0
	})

	out, err := stop()
	if err != nil {
		t.Fatalf("serve did not exit cleanly on SIGTERM: %v\n%s", err, out)
	}
	r = fleet(t, state, "reconcile")
	if r.code != 0 {
		t.Fatalf("after serve stopped, reconcile: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
