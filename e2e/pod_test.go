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
	// The sandbox's process dies. This pod has a memory volume, so the
	// engine leaves the sandbox down (a pod without one would have it
	// brought back by the engine's restart policy, in a new network
	// namespace, and the pass would see it started after its
	// containers): either way its containers are cut off from the pod's
	// port until a pass starts them again in the sandbox's new namespace.
	sandboxState := func() string {
		return hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.Status}} {{.State.StartedAt}}", name("POD"))
	}
	before := sandboxState()
	hostExec(t, p.Node, "kill", "-9", strings.TrimSpace(hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.Pid}}", name("POD"))))
	eventually(t, "the sandbox gone or started again", func() bool { return sandboxState() != before })
	if r := fleet(t, state, "reconcile"); r.code != 0 || !strings.Contains(r.stdout, "restart default/"+p.Name) {
		t.Errorf("reconcile after the sandbox died: exit %d, want the pod restarted\n%s%s", r.code, r.stdout, r.stderr)
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

const rebootManifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: reboot}
data: {GREETING: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reboot}
spec:
  replicas: 1
  template:
    spec:
      initContainers:
      - name: memo
        image: fleet-demo:v1
        command: ["/demo", "write", "/mem/note", "written by init"]
        volumeMounts: [{name: mem, mountPath: /mem}]
      containers:
      - name: app
        image: fleet-demo:v1
        volumeMounts: [{name: config, mountPath: /etc/app}, {name: mem, mountPath: /mem}]
      volumes:
      - {name: config, configMap: {name: reboot}}
      - {name: mem, emptyDir: {medium: Memory}}
`

// A machine that reboots comes back with its pods' memory volumes empty:
// the next pass starts the pod's sandbox, writes its ConfigMap files and
// runs its init containers again before its containers start, as
// Kubernetes does for a new sandbox.
func TestPod_Reboot(t *testing.T) {
	const state = "reboot.db"
	m := writeManifest(t, "reboot.yaml", rebootManifest)
	t.Cleanup(func() { fleet(t, state, "delete", "-f", m) })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := onePod(t, state, "reboot")
	read := func(path string) string {
		code, out, err := sb.Exec(t.Context(), p.Node, "docker", "exec", p.ContainerID, "/demo", "read", path)
		if err != nil || code != 0 {
			return fmt.Sprintf("(exit %d: %v: %s)", code, err, out)
		}
		return out
	}
	if got := read("/etc/app/GREETING"); got != "hello" {
		t.Fatalf("before the reboot /etc/app/GREETING = %q", got)
	}
	if err := sb.Kill(t.Context(), p.Node); err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(t.Context(), p.Node); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod running again with its files", func() bool {
		fleet(t, state, "reconcile")
		pods := getPodsJSON(t, state, "reboot")
		return len(pods) == 1 && pods[0].Status == "Running" && read("/etc/app/GREETING") == "hello"
	})
	if got := read("/mem/note"); got != "written by init" {
		t.Errorf("after the reboot the memory emptyDir holds %q, want what the init container wrote again", got)
	}
	if q := onePod(t, state, "reboot"); q.Name != p.Name {
		t.Errorf("the pod was replaced (%s → %s); its sandbox should have been restarted in place", p.Name, q.Name)
	}
}

// A pod without memory volumes keeps the engine's restart policy: when
// its sandbox's process dies, the engine brings the sandbox back in a new
// network namespace, and a pass sees it started after the pod's
// containers (SandboxChanged) and restarts them in it.
func TestPod_SandboxRestartedByTheEngine(t *testing.T) {
	const state = "podsb.db"
	m := writeManifest(t, "duo2.yaml", strings.NewReplacer("{name: duo}", "{name: duo2}", "app: duo", "app: duo2").Replace(
		sidecarManifest[:strings.Index(sidecarManifest, "        volumeMounts")]+
			"      - name: sidecar\n        image: fleet-demo:v2\n        env: [{name: ADDR, value: \":9090\"}]\n"))
	t.Cleanup(func() { fleet(t, state, "delete", "-f", m) })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := onePod(t, state, "duo2")
	name := func(c string) string { return fmt.Sprintf("fleet_default_%s_%s", p.Name, c) }
	started := hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.StartedAt}}", name("POD"))
	hostExec(t, p.Node, "kill", "-9", strings.TrimSpace(hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.Pid}}", name("POD"))))
	eventually(t, "the engine restarting the sandbox", func() bool {
		return hostExec(t, p.Node, "docker", "inspect", "-f", "{{.State.Status}} {{.State.StartedAt}}", name("POD")) != "running "+started
	})
	// The pod's port, published on the new sandbox, has nobody behind it.
	nodes, _ := getNodes(t, state)
	url := func() string {
		port := hostExec(t, p.Node, "docker", "inspect", "-f", `{{(index (index .NetworkSettings.Ports "8080/tcp") 0).HostPort}}`, name("POD"))
		return "http://" + nodes[p.Node].Address + ":" + strings.TrimSpace(port) + "/"
	}
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url()); err == nil {
		resp.Body.Close()
		t.Errorf("the pod's port answered %s before the pass restarted its containers in the new sandbox", resp.Status)
	}
	eventually(t, "a pass restarting the pod in the new sandbox", func() bool {
		return strings.Contains(fleet(t, state, "reconcile").stdout, "restart default/"+p.Name)
	})
	if body := getBody(t, url()); !strings.Contains(body, "version v1") {
		t.Errorf("after the pass, the pod's port answered %q, want the app", body)
	}
	if ev := fleet(t, state, "get", "events").stdout; !strings.Contains(ev, "SandboxChanged") {
		t.Errorf("no SandboxChanged event:\n%s", ev)
	}
	hostExec(t, p.Node, "docker", "exec", name("sidecar"), "/demo", "check", "http://127.0.0.1:8080/")
	if got := hostExec(t, p.Node, "docker", "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", name("POD")); strings.TrimSpace(got) != "unless-stopped" {
		t.Errorf("the sandbox of a pod without memory volumes has restart policy %q", got)
	}
}
