package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

const sidecarManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: duo}
spec:
  replicas: 1
  template:
    spec:
      containers:
      - name: app
        image: fleet-demo:v1
        ports: [{name: http, containerPort: 8080}]
        volumeMounts: [{name: shared, mountPath: /shared}, {name: mem, mountPath: /mem}]
      - name: sidecar
        image: fleet-demo:v2
        env: [{name: ADDR, value: ":9090"}]
        volumeMounts: [{name: shared, mountPath: /shared}, {name: mem, mountPath: /mem}]
      volumes:
      - {name: shared, emptyDir: {}}
      - {name: mem, emptyDir: {medium: Memory}}
---
apiVersion: v1
kind: Service
metadata: {name: duo}
spec:
  selector: {app: duo}
  ports: [{name: http, port: 80, targetPort: http}]
`

// A pod of two containers: one machine, one address, one network (the
// sidecar reaches the app on localhost), shared emptyDir volumes (on disk
// and in memory); its port is published once for the pod; deleting it
// removes every container, the sandbox and the volumes.
func TestPod_TwoContainers(t *testing.T) {
	const state = "pod.db"
	m := writeManifest(t, "duo.yaml", sidecarManifest)
	t.Cleanup(func() { fleet(t, state, "delete", "-f", m) })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := onePod(t, state, "duo")
	name := func(c string) string { return fmt.Sprintf("fleet_default_%s_%s", p.Name, c) }
	if out := hostExec(t, p.Node, "docker", "ps", "--filter", "label=fleet.pod="+p.Name, "--format", "{{.Names}}"); strings.Count(out, "\n") != 3 {
		t.Errorf("containers of the pod on %s:\n%s\nwant app, sidecar and the sandbox", p.Node, out)
	}
	// The sidecar reaches the app on localhost, and the app the sidecar.
	hostExec(t, p.Node, "docker", "exec", name("sidecar"), "/demo", "check", "http://127.0.0.1:8080/")
	hostExec(t, p.Node, "docker", "exec", name("app"), "/demo", "check", "http://127.0.0.1:9090/")
	for _, dir := range []string{"/shared", "/mem"} {
		hostExec(t, p.Node, "docker", "exec", name("app"), "/demo", "write", dir+"/note", "from app")
		if got := hostExec(t, p.Node, "docker", "exec", name("sidecar"), "/demo", "read", dir+"/note"); got != "from app" {
			t.Errorf("the sidecar reads %q from %s, want what the app wrote", got, dir)
		}
	}
	// The pod's port, published once, answers from the app.
	endpoint := func() string {
		var addr string
		eventually(t, "the pod's endpoint", func() bool {
			m := regexp.MustCompile(`(\d+\.\d+\.\d+\.\d+:\d+)`).FindStringSubmatch(fleet(t, state, "get", "endpoints").stdout)
			if m != nil {
				addr = m[1]
			}
			return m != nil
		})
		return addr
	}
	addr := endpoint()
	if body := getBody(t, "http://"+addr+"/"); !strings.Contains(body, "version v1") {
		t.Errorf("the pod's port answered %q, want the app (v1)", body)
	}
	if pods := fleet(t, state, "get", "pods", "-o", "wide").stdout; !strings.Contains(pods, "2/2") || !regexp.MustCompile(`\s172\.\d+\.\d+\.\d+\s`).MatchString(pods) {
		t.Errorf("get pods -o wide does not show 2/2 ready and the pod's address:\n%s", pods)
	}
	// The sandbox's process dies and the engine's restart policy brings
	// it back in a new network namespace: the containers, left in the old
	// one, are cut off from the pod's port until a pass starts them again
	// in the new one.
	sandboxStarted := hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.StartedAt}}", name("POD"))
	hostExec(t, p.Node, "kill", "-9", strings.TrimSpace(hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.Pid}}", name("POD"))))
	eventually(t, "the engine restarting the sandbox", func() bool {
		return hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.StartedAt}}", name("POD")) != sandboxStarted
	})
	if r := fleet(t, state, "reconcile"); r.code != 0 || !strings.Contains(r.stdout, "restart default/"+p.Name) {
		t.Errorf("reconcile after the sandbox came back alone: exit %d, want the pod restarted\n%s%s", r.code, r.stdout, r.stderr)
	}
	if ev := fleet(t, state, "get", "events").stdout; !strings.Contains(ev, "SandboxChanged") {
		t.Errorf("no SandboxChanged event:\n%s", ev)
	}
	// A published port without a hostPort is the new sandbox's own.
	if body := getBody(t, "http://"+endpoint()+"/"); !strings.Contains(body, "version v1") {
		t.Errorf("after the pass, the pod's port answered %q, want the app", body)
	}
	hostExec(t, p.Node, "docker", "exec", name("sidecar"), "/demo", "check", "http://127.0.0.1:8080/")
	if r := fleet(t, state, "delete", "-f", m); r.code != 0 {
		t.Fatalf("delete: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := hostExec(t, p.Node, "docker", "ps", "-a", "--filter", "label=fleet.pod="+p.Name, "--format", "{{.Names}}"); out != "" {
		t.Errorf("containers left after delete:\n%s", out)
	}
	if out := hostExec(t, p.Node, "docker", "volume", "ls", "-q", "--filter", "label=fleet.pod="+p.Name); out != "" {
		t.Errorf("volumes left after delete:\n%s", out)
	}
}

// getBody is the body of a GET of url; an error fails the test.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

const initManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: 1
  template:
    spec:
      initContainers:
      - name: prepare
        image: fleet-demo:v1
        command: ["/demo", "write", "/work/ready", "prepared"]
        volumeMounts: [{name: work, mountPath: /work}, {name: mem, mountPath: /mem}]
      - name: memo
        image: fleet-demo:v1
        command: ["/demo", "write", "/mem/note", "kept in memory"]
        volumeMounts: [{name: mem, mountPath: /mem}]
      - name: check
        image: fleet-demo:v1
        command: ["/demo", "read", "%s"]
        volumeMounts: [{name: work, mountPath: /work}]
      containers:
      - name: app
        image: fleet-demo:v1
        volumeMounts: [{name: work, mountPath: /work}, {name: mem, mountPath: /mem}]
      volumes:
      - {name: work, emptyDir: {}}
      - {name: mem, emptyDir: {medium: Memory}}
`

// Init containers run in order, each to completion, before the pod's
// container starts, sharing its volumes; one that fails keeps the pod
// from starting, says why, and backs off.
func TestPod_InitContainers(t *testing.T) {
	const state = "init.db"
	good := writeManifest(t, "init.yaml", fmt.Sprintf(initManifest, "inits", "/work/ready"))
	bad := writeManifest(t, "init-bad.yaml", fmt.Sprintf(initManifest, "badinit", "/work/missing"))
	t.Cleanup(func() { fleet(t, state, "delete", "-f", bad, "-f", good) })
	if r := fleet(t, state, "apply", "-f", good); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := onePod(t, state, "inits")
	if got := hostExec(t, p.Node, "docker", "exec", p.ContainerID, "/demo", "read", "/work/ready"); got != "prepared" {
		t.Errorf("the app reads %q from what the init containers prepared", got)
	}
	// A memory emptyDir keeps what an init container wrote, though no
	// container had it mounted between them (the sandbox holds it).
	if got := hostExec(t, p.Node, "docker", "exec", p.ContainerID, "/demo", "read", "/mem/note"); got != "kept in memory" {
		t.Errorf("the app reads %q from the memory emptyDir an init container wrote", got)
	}
	if out := hostExec(t, p.Node, "docker", "ps", "-a", "--filter", "label=fleet.init=true", "--filter", "label=fleet.pod="+p.Name, "--format", "{{.Names}}"); out != "" {
		t.Errorf("init containers left after they succeeded:\n%s", out)
	}
	ev := fleet(t, state, "get", "events").stdout
	if !strings.Contains(ev, "init container prepare completed") || !strings.Contains(ev, "init container check completed") {
		t.Errorf("events lack the init containers' completion:\n%s", ev)
	}

	if r := fleet(t, state, "apply", "-f", bad, "--wait=false"); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fleet(t, state, "reconcile")
	ev = fleet(t, state, "get", "events").stdout
	if !strings.Contains(ev, "init container check exited with 1") || !strings.Contains(ev, "Init:Error") {
		t.Errorf("events do not say the init container failed:\n%s", ev)
	}
	if pods := getPodsJSON(t, state, "badinit"); len(pods) != 0 {
		t.Errorf("a pod whose init container failed is left: %+v", pods)
	}
}
