// Package e2e tests fleet end to end: the real binary against real Docker
// hosts reached over real SSH, started as a sandbox on the local engine.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdev/fleet/sandbox"
)

// hostCount is the size of the shared sandbox.
const hostCount = 10

var (
	fleetBin string
	sb       *sandbox.Sandbox
	stateDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "fleet-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	stateDir = tmp
	fleetBin = filepath.Join(tmp, "fleet")
	build := exec.Command("go", "build", "-o", fleetBin, "../cmd/fleet")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build fleet:", err)
		return 1
	}
	// Unique per run: CI may share the engine with leftovers of other runs.
	name := fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().Unix()%100000)
	dir := filepath.Join(tmp, "sandbox")
	// FLEET_E2E_SANDBOX=NAME:DIR reuses a sandbox (made by `fleet sandbox
	// up`) and leaves it up: quicker when running one test again.
	keep := false
	if v := os.Getenv("FLEET_E2E_SANDBOX"); v != "" {
		var ok bool
		if name, dir, ok = strings.Cut(v, ":"); !ok {
			fmt.Fprintln(os.Stderr, "FLEET_E2E_SANDBOX wants NAME:DIR, got", v)
			return 1
		}
		keep = true
	}
	sb, err = sandbox.New(name, dir, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if !keep {
			if err := sb.Down(context.Background()); err != nil {
				fmt.Fprintln(os.Stderr, "sandbox down:", err)
			}
		}
		sb.Close()
	}()
	if _, err := sb.Up(ctx, hostCount); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox up:", err)
		return 1
	}
	return m.Run()
}

// result is one run of the fleet binary.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// fleet runs the binary against the shared sandbox with state file state
// (relative to the test's state directory).
func fleet(t *testing.T, state string, args ...string) result {
	t.Helper()
	return fleetInv(t, sb.InventoryPath(), state, args...)
}

func fleetInv(t *testing.T, inv, state string, args ...string) result {
	t.Helper()
	cmd := exec.Command(fleetBin, args...)
	cmd.Env = append(os.Environ(),
		"FLEET_INVENTORY="+inv,
		"FLEET_STATE="+filepath.Join(stateDir, state),
		"HOME="+stateDir, // no stray ~/.ssh files from the machine
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run fleet %v: %v", args, err)
	}
	return r
}

// nodeJSON is one item of `fleet get nodes -o json`.
type nodeJSON struct {
	Name          string            `json:"name"`
	Address       string            `json:"address"`
	Status        string            `json:"status"`
	Reason        string            `json:"reason"`
	Error         string            `json:"error"`
	DockerVersion string            `json:"dockerVersion"`
	CPUs          float64           `json:"cpus"`
	Memory        int64             `json:"memory"`
	Containers    int               `json:"containers"`
	Labels        map[string]string `json:"labels"`
}

func getNodes(t *testing.T, state string, extra ...string) (map[string]nodeJSON, result) {
	t.Helper()
	r := fleet(t, state, append([]string{"get", "nodes", "-o", "json"}, extra...)...)
	if r.code != 0 {
		t.Fatalf("get nodes: exit %d: %s", r.code, r.stderr)
	}
	var doc struct {
		Items []nodeJSON `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("get nodes -o json: %v\n%s", err, r.stdout)
	}
	out := map[string]nodeJSON{}
	for _, n := range doc.Items {
		out[n.Name] = n
	}
	return out, r
}

// hostExec runs argv on a sandbox host and fails the test unless it exits 0.
func hostExec(t *testing.T, host string, argv ...string) string {
	t.Helper()
	code, out, err := sb.Exec(context.Background(), host, argv...)
	if err != nil || code != 0 {
		t.Fatalf("%s: %s: exit %d: %v: %s", host, strings.Join(argv, " "), code, err, out)
	}
	return out
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
