package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/fleetdev/fleet/sandbox"
)

const probedManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: probed
spec:
  replicas: 2
  template:
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: fleet-demo:v1
        env:
        - {name: DEMO_UNHEALTHY_AFTER, value: 4s}
        - {name: DEMO_READY_AFTER, value: 1s}
        ports:
        - {name: http, containerPort: 8080}
        startupProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
        livenessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
          failureThreshold: 2
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
      - name: side
        image: fleet-demo:v1
        env:
        - {name: ADDR, value: ":9090"}
        readinessProbe:
          exec: {command: [/demo, check, "http://localhost:9090/ready"]}
          periodSeconds: 1
`

// Probes run from serve through each machine's SSH connection (HTTP and
// TCP to the container's address, exec through Docker); a container failing its
// liveness probe is restarted, then backs off; a container killed on its
// host is started again. Another process sees readiness, restarts and
// reasons.
func TestServe_ProbesAndRestarts(t *testing.T) {
	const state = "health.db"
	startServe(t, state)
	m := writeManifest(t, "probed.yaml", probedManifest)
	t.Cleanup(func() { fleet(t, state, "delete", "deploy/probed") })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, "both pods ready by their HTTP and exec readiness probes", func() bool {
		pods := getPodsJSON(t, state, "probed")
		return len(pods) == 2 && pods[0].Ready && pods[1].Ready
	})
	// Per container, as in Kubernetes: web's restarts leave its pod's
	// other container and its sandbox (the pod's address) alone.
	started := func(p podJSON, c string) string {
		return hostExec(t, p.Node, "docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", "fleet_default_"+p.Name+"_"+c)
	}
	before := map[string]string{}
	for _, p := range getPodsJSON(t, state, "probed") {
		before[p.Name] = started(p, "side") + started(p, "POD")
	}
	t.Run("a failing liveness probe restarts the container, then backs off", func(t *testing.T) {
		var pod podJSON
		eventually(t, "a pod in CrashLoopBackOff after its second liveness failure", func() bool {
			for _, p := range getPodsJSON(t, state, "probed") {
				if p.Status == "CrashLoopBackOff" && p.Restarts >= 2 && !p.Ready {
					pod = p
					return true
				}
			}
			return false
		})
		if now := started(pod, "side") + started(pod, "POD"); now != before[pod.Name] {
			t.Errorf("restarting web restarted its pod's side container or sandbox:\nbefore %s\nafter  %s", before[pod.Name], now)
		}
		ev := fleet(t, state, "get", "events").stdout
		for _, want := range []string{"Liveness probe failed (2/2)", "failed its liveness probe and will be restarted", "back-off 10s restarting failed container web"} {
			if !strings.Contains(ev, want) {
				t.Errorf("events lack %q:\n%s", want, ev)
			}
		}
		d := fleet(t, state, "describe", "pod/"+pod.Name)
		for _, want := range []string{"Status:        CrashLoopBackOff", "Last exit:    code 0", "Log (last 20 lines):", "demo v1 listening on :8080", "Probes:       startup,liveness,readiness"} {
			if !strings.Contains(d.stdout, want) {
				t.Errorf("describe pod lacks %q:\n%s%s", want, d.stdout, d.stderr)
			}
		}
		w := fleet(t, state, "get", "pods", "-o", "wide").stdout
		if !strings.Contains(w, "CrashLoopBackOff") || !strings.Contains(w, "back-off") {
			t.Errorf("get pods -o wide does not show the back-off:\n%s", w)
		}
	})
}

// A container killed with docker kill on its host (Docker's restart
// policy leaves it stopped) is started again by serve, with an event.
func TestServe_ContainerKilled(t *testing.T) {
	const state = "killed.db"
	startServe(t, state)
	m := writeManifest(t, "killed.yaml", web("killed", 2))
	t.Cleanup(func() { fleet(t, state, "delete", "deploy/killed") })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pods := getPodsJSON(t, state, "killed")
	if len(pods) != 2 {
		t.Fatalf("pods %+v", pods)
	}
	victim := pods[0]
	hostExec(t, victim.Node, "docker", "kill", victim.ContainerID)
	eventually(t, "the killed container running again", func() bool {
		for _, p := range getPodsJSON(t, state, "killed") {
			if p.Name == victim.Name && p.Status == "Running" && p.Restarts == 1 && p.ContainerID == victim.ContainerID {
				return true
			}
		}
		return false
	})
	if ev := fleet(t, state, "get", "events").stdout; !strings.Contains(ev, "started again: web (exited with 137)") {
		t.Errorf("no Restarted event for the killed container:\n%s", ev)
	}
}

// A machine cut off from the network (its sshd unreachable, its
// containers still running) is NotReady, its pods show Unknown from
// another process and run again elsewhere; when the cut heals, the
// surplus there is stopped.
func TestServe_Partition(t *testing.T) {
	ctx := context.Background()
	const state = "partition.db"
	startServe(t, state)
	m := writeManifest(t, "part.yaml", web("part", 10))
	t.Cleanup(func() { fleet(t, state, "delete", "deploy/part") })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, before := runningOn(getPodsJSON(t, state, "part"))
	victim := sandbox.HostName(3)
	if before[victim] == 0 {
		t.Fatalf("no replica on %s: %v", victim, before)
	}
	if err := sb.Partition(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Heal(context.Background(), victim) })
	eventually(t, "10 replicas running on the other machines, the cut-off ones Unknown", func() bool {
		pods := getPodsJSON(t, state, "part")
		total, byNode := runningOn(pods)
		unknown := 0
		for _, p := range pods {
			if p.Node == victim && p.Status == "Unknown" {
				unknown++
			}
		}
		return total == 10 && byNode[victim] == 0 && unknown == before[victim]
	})
	nodes := fleet(t, state, "get", "nodes").stdout
	var line string
	for _, l := range strings.Split(nodes, "\n") {
		if strings.HasPrefix(l, victim+" ") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) < 3 || f[1] != "NotReady" || f[2] == "-" {
		t.Errorf("get nodes does not show %s NotReady with since-when:\n%s", victim, nodes)
	}
	if err := sb.Heal(ctx, victim); err != nil {
		t.Fatal(err)
	}
	eventually(t, "exactly 10 replicas, none left on the healed machine", func() bool {
		pods := getPodsJSON(t, state, "part")
		total, byNode := runningOn(pods)
		return len(pods) == 10 && total == 10 && byNode[victim] == 0
	})
}
