package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdev/fleet/sandbox"
)

func TestGetNodes_AllReady(t *testing.T) {
	nodes, _ := getNodes(t, "ready.db")
	if len(nodes) != hostCount {
		t.Fatalf("got %d nodes, want %d", len(nodes), hostCount)
	}
	for i := 1; i <= hostCount; i++ {
		name := sandbox.HostName(i)
		n, ok := nodes[name]
		if !ok {
			t.Fatalf("node %s missing from %v", name, nodes)
		}
		if n.Status != "Ready" {
			t.Errorf("%s: status %s (%s: %s), want Ready", name, n.Status, n.Reason, n.Error)
			continue
		}
		// What fleet reports must be what the host's own engine says.
		info := hostExec(t, name, "docker", "info", "--format", "{{.NCPU}} {{.MemTotal}} {{.ServerVersion}}")
		f := strings.Fields(info)
		cpus, _ := strconv.ParseFloat(f[0], 64)
		mem, _ := strconv.ParseInt(f[1], 10, 64)
		if n.CPUs != cpus || n.Memory != mem || n.DockerVersion != f[2] {
			t.Errorf("%s: fleet says cpus=%g memory=%d docker=%s; host says %s", name, n.CPUs, n.Memory, n.DockerVersion, info)
		}
		if n.Labels["zone"] == "" {
			t.Errorf("%s: labels from the inventory missing: %v", name, n.Labels)
		}
	}
	t.Run("table output has a header and one line per node", func(t *testing.T) {
		r := fleet(t, "ready.db", "get", "nodes")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != hostCount+1 || !strings.HasPrefix(lines[0], "NAME") {
			t.Fatalf("exit %d, output:\n%s", r.code, r.stdout)
		}
	})
	t.Run("yaml output carries the same items", func(t *testing.T) {
		r := fleet(t, "ready.db", "get", "nodes", "-o", "yaml")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "items:") || strings.Count(r.stdout, "status: Ready") != hostCount {
			t.Fatalf("exit %d, output:\n%s", r.code, r.stdout)
		}
	})
	t.Run("an unknown output format is refused", func(t *testing.T) {
		r := fleet(t, "ready.db", "get", "nodes", "-o", "xml")
		if r.code == 0 || !strings.Contains(r.stderr, "xml") {
			t.Fatalf("exit %d, stderr: %s", r.code, r.stderr)
		}
	})
}

// A killed machine is NotReady; the others stay Ready and are not held up.
func TestGetNodes_KilledHost(t *testing.T) {
	ctx := context.Background()
	victim := sandbox.HostName(hostCount)
	if err := sb.Kill(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Start(context.Background(), victim); err != nil {
			t.Errorf("restart %s: %v", victim, err)
		}
	})
	nodes, r := getNodes(t, "killed.db", "--dial-timeout", "1s")
	checkOneDown(t, nodes, victim, "unreachable")
	// A liveness bound, not a benchmark: far above the 1 s dial timeout,
	// far below a hang.
	if r.took > 20*time.Second {
		t.Errorf("get nodes took %s with one dead host and a 1s dial timeout", r.took)
	}
	if err := sb.Start(ctx, victim); err != nil {
		t.Fatal(err)
	}
	eventually(t, victim+" Ready again", func() bool {
		nodes, _ := getNodes(t, "killed.db")
		return nodes[victim].Status == "Ready"
	})
}

// A hung machine (processes frozen: TCP still answers, SSH does not) costs
// at most its own timeout.
func TestGetNodes_PausedHost(t *testing.T) {
	ctx := context.Background()
	victim := sandbox.HostName(1)
	if err := sb.Pause(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Unpause(context.Background(), victim) })
	nodes, r := getNodes(t, "paused.db", "--dial-timeout", "1s")
	checkOneDown(t, nodes, victim, "unreachable (timed out)")
	if r.took > 20*time.Second {
		t.Errorf("get nodes took %s with one hung host and a 1s dial timeout", r.took)
	}
	if err := sb.Unpause(ctx, victim); err != nil {
		t.Fatal(err)
	}
	nodes, _ = getNodes(t, "paused.db")
	if nodes[victim].Status != "Ready" {
		t.Fatalf("%s after unpause: %+v", victim, nodes[victim])
	}
}

// A partitioned machine keeps running but fleet cannot reach it.
func TestGetNodes_PartitionedHost(t *testing.T) {
	ctx := context.Background()
	victim := sandbox.HostName(2)
	if err := sb.Partition(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Heal(context.Background(), victim) })
	hosts, err := sb.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if h.Name == victim && (!h.Partitioned || h.State != "running") {
			t.Fatalf("sandbox status of %s: %+v, want running and partitioned", victim, h)
		}
	}
	nodes, _ := getNodes(t, "partition.db", "--dial-timeout", "1s")
	checkOneDown(t, nodes, victim, "unreachable")
	if err := sb.Heal(ctx, victim); err != nil {
		t.Fatal(err)
	}
	nodes, _ = getNodes(t, "partition.db")
	if nodes[victim].Status != "Ready" {
		t.Fatalf("%s after heal: %+v", victim, nodes[victim])
	}
}

func checkOneDown(t *testing.T, nodes map[string]nodeJSON, victim, reasonPrefix string) {
	t.Helper()
	for name, n := range nodes {
		if name == victim {
			if n.Status != "NotReady" || !strings.HasPrefix(n.Reason, reasonPrefix) {
				t.Errorf("%s: status %s reason %q (%s), want NotReady %q", name, n.Status, n.Reason, n.Error, reasonPrefix)
			}
			continue
		}
		if n.Status != "Ready" {
			t.Errorf("%s: status %s (%s), want Ready while only %s is down", name, n.Status, n.Error, victim)
		}
	}
}

// A machine whose host key changed is refused, naming both fingerprints,
// whether the known key came from known_hosts or was pinned in the state.
func TestGetNodes_ChangedHostKey(t *testing.T) {
	victim := sandbox.HostName(2)
	// An inventory without known_hosts makes fleet pin keys on first contact.
	noKH := filepath.Join(stateDir, "inventory-tofu.yaml")
	inv, err := os.ReadFile(sb.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	tofu := strings.Replace(string(inv), "knownHosts:\n    - known_hosts\n", "", 1)
	tofu = strings.Replace(tofu, "identityFile: id_ed25519", "identityFile: "+filepath.Join(sb.Dir, sandbox.KeyFile), 1)
	if tofu == string(inv) {
		t.Fatalf("could not strip knownHosts from the inventory:\n%s", inv)
	}
	if err := os.WriteFile(noKH, []byte(tofu), 0o644); err != nil {
		t.Fatal(err)
	}
	r := fleetInv(t, noKH, "tofu.db", "get", "nodes")
	if r.code != 0 || strings.Count(r.stdout, " Ready ") != hostCount {
		t.Fatalf("first contact should pin and succeed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	oldFP := strings.Fields(hostExec(t, victim, "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"))[1]

	rotateHostKeys(t, victim)
	newFP := strings.Fields(hostExec(t, victim, "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"))[1]
	if oldFP == newFP {
		t.Fatal("host key did not change")
	}

	for _, tc := range []struct {
		name, inv, state, source string
	}{
		{"a key from known_hosts", sb.InventoryPath(), "kh.db", "known_hosts"},
		{"a key pinned in the state file", noKH, "tofu.db", "state file"},
	} {
		t.Run(tc.name+" that no longer matches is refused with both fingerprints", func(t *testing.T) {
			r := fleetInv(t, tc.inv, tc.state, "get", "nodes", "-o", "wide")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			line := lineOf(r.stdout, victim)
			if !strings.Contains(line, "NotReady") || !strings.Contains(line, "host key mismatch") {
				t.Errorf("%s line: %q", victim, line)
			}
			msg := lineOf(r.stderr, victim+":")
			for _, want := range []string{oldFP, newFP, tc.source} {
				if !strings.Contains(msg, want) {
					t.Errorf("error for %s lacks %q: %s", victim, want, msg)
				}
			}
			for i := 1; i <= hostCount; i++ {
				if n := sandbox.HostName(i); n != victim && !strings.Contains(lineOf(r.stdout, n), " Ready ") {
					t.Errorf("%s should stay Ready: %q", n, lineOf(r.stdout, n))
				}
			}
		})
	}
	t.Run("forget-key lets the next contact pin the new key", func(t *testing.T) {
		r := fleetInv(t, noKH, "tofu.db", "node", "forget-key", victim)
		if r.code != 0 || !strings.Contains(r.stdout, "forgot") {
			t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		r = fleetInv(t, noKH, "tofu.db", "get", "nodes")
		if !strings.Contains(lineOf(r.stdout, victim), " Ready ") {
			t.Fatalf("after forget-key:\n%s", r.stdout)
		}
	})
}

// rotateHostKeys gives host new SSH host keys, restoring the old ones when
// the test ends.
func rotateHostKeys(t *testing.T, host string) {
	t.Helper()
	hostExec(t, host, "sh", "-c", "mkdir -p /root/oldkeys && cp -a /etc/ssh/ssh_host_* /root/oldkeys/ && rm /etc/ssh/ssh_host_* && ssh-keygen -A")
	reloadSSHD(t, host)
	t.Cleanup(func() {
		hostExec(t, host, "sh", "-c", "cp -a /root/oldkeys/ssh_host_* /etc/ssh/ && rm -rf /root/oldkeys")
		reloadSSHD(t, host)
	})
}

// reloadSSHD makes sshd re-read its keys (SIGHUP re-executes it) and waits
// until it listens again.
func reloadSSHD(t *testing.T, host string) {
	t.Helper()
	hostExec(t, host, "pkill", "-HUP", "-f", "sshd -D")
	eventually(t, "sshd on "+host+" to listen again", func() bool {
		code, out, _ := sb.Exec(context.Background(), host, "sh", "-c", "ss -Hltn 'sport = :22'")
		return code == 0 && strings.Contains(out, "LISTEN")
	})
}

func lineOf(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return fmt.Sprintf("<no line starting with %q>", prefix)
}
