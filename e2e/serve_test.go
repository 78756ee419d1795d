package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdev/fleet/sandbox"
)

// startServe runs `fleet serve` against the sandbox with state file state
// until the test ends (or stop is called).
func startServe(t *testing.T, state string, args ...string) (stop func() (string, error)) {
	stop, _ = startServeProc(t, state, args...)
	return stop
}

func startServeProc(t *testing.T, state string, args ...string) (stop func() (string, error), proc *os.Process) {
	t.Helper()
	stop, proc, _ = startServeLog(t, state, args...)
	return stop, proc
}

// startServeLog is startServeProc with serve's log readable while it runs.
func startServeLog(t *testing.T, state string, args ...string) (stop func() (string, error), proc *os.Process, log *syncBuffer) {
	t.Helper()
	if !slices.Contains(args, "--admin-address") {
		// Leftovers or a neighbour may hold the default port.
		args = append(args, "--admin-address", "127.0.0.1:0")
	}
	cmd := exec.Command(fleetBin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), "FLEET_INVENTORY="+sb.InventoryPath(), "FLEET_STATE="+filepath.Join(stateDir, state), "HOME="+stateDir)
	log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
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
	// Act only once serve holds the lease, or the CLI would do the work.
	eventually(t, "fleet serve to hold the lease", func() bool {
		return strings.Contains(log.String(), "holding the reconcile lease")
	})
	return stop, cmd.Process, log
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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

// A hung machine is handled like a dead one, and a controller killed with
// SIGKILL in the middle of recovering is replaced by a new one that
// converges without duplicates.
func TestServe_HungMachineAndControllerCrash(t *testing.T) {
	ctx := context.Background()
	const state = "serve2.db"
	_, proc := startServeProc(t, state)
	m := writeManifest(t, "hang.yaml", web("hang", 10))
	t.Cleanup(func() { fleet(t, state, "delete", "deploy/hang") })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, before := runningOn(getPodsJSON(t, state, "hang"))
	victim := ""
	for i := 2; i <= hostCount && victim == ""; i++ {
		if before[sandbox.HostName(i)] > 0 {
			victim = sandbox.HostName(i)
		}
	}
	if err := sb.Pause(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Unpause(context.Background(), victim) })
	eventually(t, "the hung machine to be noticed", func() bool {
		return strings.Contains(fleet(t, state, "get", "events").stdout, "NodeNotReady")
	})
	// Mid-recovery: the controller dies without a word.
	proc.Kill()
	startServe(t, state) // waits out the dead one's lease, then acts
	eventually(t, "10 replicas running on the other machines", func() bool {
		total, byNode := runningOn(getPodsJSON(t, state, "hang"))
		return total == 10 && byNode[victim] == 0
	})
	if err := sb.Unpause(ctx, victim); err != nil {
		t.Fatal(err)
	}
	eventually(t, "exactly 10 replicas once the machine answers again", func() bool {
		pods := getPodsJSON(t, state, "hang")
		total, _ := runningOn(pods)
		return len(pods) == 10 && total == 10
	})
}
