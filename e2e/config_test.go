package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const configManifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  GREETING: %s
  MODE: dev
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData:
  password: s3cr3t-%s
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cfg}
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        envFrom:
        - {prefix: CFG_, configMapRef: {name: app-config}}
        env:
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: app-config, key: GREETING}}
        - name: DB_PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cfgfiles}
spec:
  replicas: 1
  template:
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        volumeMounts:
        - {name: config, mountPath: /etc/app}
        - {name: creds, mountPath: /run/creds}
      volumes:
      - {name: config, configMap: {name: app-config}}
      - name: creds
        secret:
          secretName: db
          items: [{key: password, path: db/password, mode: 0400}]
`

// containerEnv is the environment Docker gave each of owner's pods.
func containerEnv(t *testing.T, state, owner string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range getPodsJSON(t, state, owner) {
		out[p.Name] = hostExec(t, p.Node, "docker", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", p.ContainerID)
	}
	return out
}

// A ConfigMap and a Secret reach the containers as environment variables
// (by key and with envFrom) and as files with their modes (a secret file
// is not in the container's environment); the Secret's value is in no
// listing, event, diff or the state file; editing the ConfigMap rolls the Deployment; a
// reference to a missing Secret is refused at apply with file:line.
func TestConfig_ConfigMapAndSecret(t *testing.T) {
	const state = "config.db"
	manifest := func(name, greeting, secret string) string {
		return writeManifest(t, name, fmt.Sprintf(configManifest, greeting, secret))
	}
	v1 := manifest("cfg-v1.yaml", "hello", "XYZ")
	t.Cleanup(func() { fleet(t, state, "delete", "-f", v1) })
	r := fleet(t, state, "apply", "-f", v1)
	if r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for pod, env := range containerEnv(t, state, "cfg") {
		for _, want := range []string{"GREETING=hello", "CFG_MODE=dev", "CFG_GREETING=hello", "DB_PASSWORD=s3cr3t-XYZ"} {
			if !strings.Contains(env, want+"\n") {
				t.Errorf("pod %s lacks %s in its environment:\n%s", pod, want, env)
			}
		}
	}
	secret := "s3cr3t-XYZ"
	noSecret := func(what, text string) {
		t.Helper()
		if strings.Contains(text, secret) {
			t.Errorf("%s shows the secret value:\n%s", what, text)
		}
	}
	noSecret("apply", r.stdout+r.stderr)
	y := fleet(t, state, "get", "secrets", "-o", "yaml")
	noSecret("get secrets -o yaml", y.stdout)
	if !strings.Contains(y.stdout, "password: <hidden>") {
		t.Errorf("get secrets -o yaml does not list the key as hidden:\n%s", y.stdout)
	}
	if s := fleet(t, state, "get", "secrets", "-o", "yaml", "--show-secrets").stdout; !strings.Contains(s, secret) {
		t.Errorf("get secrets --show-secrets does not show the value:\n%s", s)
	}
	noSecret("get events", fleet(t, state, "get", "events").stdout)
	noSecret("describe deploy", fleet(t, state, "describe", "deploy/cfg").stdout)
	v2 := manifest("cfg-v2.yaml", "bonjour", "ABC")
	d := fleet(t, state, "diff", "-f", v2)
	noSecret("diff", d.stdout)
	if strings.Contains(d.stdout, "s3cr3t-ABC") || !strings.Contains(d.stdout, "~ password (changed)") {
		t.Errorf("diff of the Secret should name the changed key only:\n%s", d.stdout)
	}
	for _, f := range []string{state, state + "-wal"} {
		b, err := os.ReadFile(filepath.Join(stateDir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if strings.Contains(string(b), secret) {
			t.Errorf("the state file %s holds the secret value in plain text", f)
		}
	}

	t.Run("as files, with their modes, and the secret not in the environment", func(t *testing.T) {
		p := onePod(t, state, "cfgfiles")
		read := func(file string) string {
			return hostExec(t, p.Node, "docker", "exec", p.ContainerID, "/demo", "read", file)
		}
		if got := read("/etc/app/GREETING"); got != "hello" {
			t.Errorf("/etc/app/GREETING = %q", got)
		}
		if got := read("/run/creds/db/password"); got != secret {
			t.Errorf("/run/creds/db/password = %q", got)
		}
		for file, want := range map[string]string{"/etc/app/MODE": "0644", "/run/creds/db/password": "0400"} {
			if got := hostExec(t, p.Node, "docker", "exec", p.ContainerID, "/demo", "mode", file); got != want {
				t.Errorf("mode of %s = %s, want %s", file, got, want)
			}
		}
		noSecret("docker inspect of the file-mounted secret's container", hostExec(t, p.Node, "docker", "inspect", p.ContainerID))
	})
	t.Run("editing the ConfigMap and Secret rolls the pods", func(t *testing.T) {
		before := getPodsJSON(t, state, "cfg")
		if r := fleet(t, state, "apply", "-f", v2); r.code != 0 {
			t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		after := getPodsJSON(t, state, "cfg")
		for _, a := range after {
			for _, b := range before {
				if a.Name == b.Name {
					t.Errorf("pod %s was not replaced", a.Name)
				}
			}
		}
		for pod, env := range containerEnv(t, state, "cfg") {
			if !strings.Contains(env, "GREETING=bonjour\n") || !strings.Contains(env, "DB_PASSWORD=s3cr3t-ABC\n") {
				t.Errorf("pod %s after the edit:\n%s", pod, env)
			}
		}
		p := onePod(t, state, "cfgfiles")
		if got := hostExec(t, p.Node, "docker", "exec", p.ContainerID, "/demo", "read", "/etc/app/GREETING"); got != "bonjour" {
			t.Errorf("/etc/app/GREETING after the edit = %q", got)
		}
	})
	t.Run("the same manifests read from another file change nothing", func(t *testing.T) {
		before := getPodsJSON(t, state, "cfg")
		moved := writeManifest(t, "cfg-v2-moved.yaml", "# moved here, a line lower\n"+fmt.Sprintf(configManifest, "bonjour", "ABC"))
		r := fleet(t, state, "apply", "-f", moved)
		if r.code != 0 {
			t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, "secret/db unchanged") {
			t.Errorf("apply of the same Secret from another file:\n%s", r.stdout)
		}
		after := getPodsJSON(t, state, "cfg")
		if len(after) != len(before) || !sameContainers(before, after) {
			t.Errorf("pods replaced by applying the same manifests from another file:\nbefore %+v\nafter  %+v", before, after)
		}
	})
	t.Run("a reference to a missing Secret changes nothing", func(t *testing.T) {
		bad := writeManifest(t, "cfg-bad.yaml", strings.Replace(fmt.Sprintf(configManifest, "hi", "X"), "secretKeyRef: {name: db,", "secretKeyRef: {name: nodb,", 1))
		r := fleet(t, state, "apply", "-f", bad)
		if r.code == 0 || !strings.Contains(r.stderr, "cfg-bad.yaml:30: Deployment/cfg: spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef: Secret nodb does not exist in namespace default") {
			t.Fatalf("apply with a missing Secret: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for pod, env := range containerEnv(t, state, "cfg") {
			if !strings.Contains(env, "GREETING=bonjour\n") {
				t.Errorf("pod %s changed after a refused apply:\n%s", pod, env)
			}
		}
	})
}

const nsManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 2
  template:
    spec:
      containers:
      - {name: web, image: fleet-demo:v1, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: shop}
data: {color: blue}
---
apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  type: NodePort
  selector: {app: shop}
  ports: [{port: 80, targetPort: http}]
`

// The same manifests applied with -n dev and -n prod run side by side on
// the same machines; deleting namespace dev (with --yes) removes
// everything in it and nothing of prod.
func TestNamespaces_SideBySide(t *testing.T) {
	const state = "ns.db"
	m := writeManifest(t, "shop.yaml", nsManifest)
	nss := writeManifest(t, "shop-ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n")
	t.Cleanup(func() {
		fleet(t, state, "delete", "ns/dev", "--yes")
		fleet(t, state, "delete", "ns/prod", "--yes")
	})
	if r := fleet(t, state, "apply", "-f", nss); r.code != 0 {
		t.Fatalf("apply namespaces: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, ns := range []string{"dev", "prod"} {
		if r := fleet(t, state, "apply", "-n", ns, "-f", m); r.code != 0 {
			t.Fatalf("apply -n %s: exit %d\n%s%s", ns, r.code, r.stdout, r.stderr)
		}
	}
	byNS := map[string]int{}
	for _, p := range getPodsJSON(t, state, "shop") {
		byNS[p.Namespace]++
	}
	if byNS["dev"] != 2 || byNS["prod"] != 2 {
		t.Fatalf("pods by namespace: %v, want 2 and 2", byNS)
	}
	if out := fleet(t, state, "get", "pods", "-n", "dev").stdout; strings.Count(out, "shop-") != 2 {
		t.Errorf("get pods -n dev:\n%s", out)
	}
	if out := fleet(t, state, "get", "cm", "-A").stdout; !strings.Contains(out, "dev") || !strings.Contains(out, "prod") {
		t.Errorf("get cm -A:\n%s", out)
	}
	// Node ports are allocated apart; a load balancer port, on fleet's one
	// load balancer address, can serve only one namespace: refused, naming
	// the holder, and nothing of that apply is kept.
	if out := fleet(t, state, "get", "svc", "-A").stdout; len(regexp.MustCompile(`80:(\d+)/TCP`).FindAllString(out, -1)) != 2 {
		t.Errorf("get svc -A, want the NodePort Service in both namespaces:\n%s", out)
	}
	lb := writeManifest(t, "shop-lb.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop-lb}\ndata: {a: b}\n---\n"+
		"apiVersion: v1\nkind: Service\nmetadata: {name: shop-lb}\nspec:\n  type: LoadBalancer\n  selector: {app: shop}\n  ports: [{port: 18099, targetPort: http}]\n")
	if r := fleet(t, state, "apply", "-n", "dev", "-f", lb); r.code != 0 {
		t.Fatalf("apply -n dev the LoadBalancer Service: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := fleet(t, state, "apply", "-n", "prod", "-f", lb); r.code == 0 || !strings.Contains(r.stderr, "18099/TCP on the load balancer is already used by service dev/shop-lb") {
		t.Errorf("apply -n prod of a LoadBalancer port dev holds: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := fleet(t, state, "get", "svc,cm", "-n", "prod").stdout; strings.Contains(out, "shop-lb") {
		t.Errorf("the refused apply left objects in prod:\n%s", out)
	}
	r := fleet(t, state, "delete", "ns/dev")
	if r.code == 0 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("delete ns/dev without --yes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := fleet(t, state, "delete", "ns/dev", "--yes"); r.code != 0 {
		t.Fatalf("delete ns/dev --yes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	byNS = map[string]int{}
	for _, p := range getPodsJSON(t, state, "shop") {
		byNS[p.Namespace]++
	}
	if byNS["dev"] != 0 || byNS["prod"] != 2 {
		t.Errorf("pods by namespace after deleting dev: %v, want prod's 2 only", byNS)
	}
	if out := fleet(t, state, "get", "ns").stdout; strings.Contains(out, "dev") {
		t.Errorf("get ns still lists dev:\n%s", out)
	}
	if out := fleet(t, state, "get", "cm", "-A").stdout; strings.Contains(out, "dev") {
		t.Errorf("get cm -A still lists dev's ConfigMap:\n%s", out)
	}
}

const heldManifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: held}
data: {DEMO_READY_AFTER: %q}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: held}
spec:
  replicas: 3
  progressDeadlineSeconds: 8
  template:
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        envFrom: [{configMapRef: {name: held}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
`

// A ConfigMap edit whose pods never become ready cannot be rolled back
// by going back to an earlier template (the template did not change):
// the rollout fails and is held on the pods of before, which keep
// running, instead of replacing them one by one with failing pods;
// applying the ConfigMap as it was ends it.
func TestConfig_BrokenConfigIsHeld(t *testing.T) {
	const state = "held.db"
	startServe(t, state, "--lb-address", "", "--admin-address", "", "--ingress-http", "", "--ingress-https", "")
	good := writeManifest(t, "held.yaml", fmt.Sprintf(heldManifest, "0s"))
	bad := writeManifest(t, "held-bad.yaml", fmt.Sprintf(heldManifest, "1h"))
	t.Cleanup(func() { fleet(t, state, "delete", "-f", good) })
	applyComplete(t, state, good, "held")
	before := getPodsJSON(t, state, "held")
	r := fleet(t, state, "apply", "-f", bad, "--timeout", "90s")
	if r.code != 1 || !strings.Contains(r.stderr, "which fleet cannot roll back: the pods of before are kept") {
		t.Fatalf("apply of a ConfigMap that breaks the pods: exit %d, want 1 saying the rollout is held\n%s%s", r.code, r.stdout, r.stderr)
	}
	time.Sleep(3 * time.Second) // passes after the failure change nothing
	after := getPodsJSON(t, state, "held")
	if !sameContainers(before, after) {
		t.Errorf("pods after the failed ConfigMap edit:\n%+v\nwant the pods of before:\n%+v", after, before)
	}
	for _, p := range after {
		if !p.Ready {
			t.Errorf("pod %s of before is not ready", p.Name)
		}
	}
	if st := fleet(t, state, "rollout", "status", "deploy/held", "--timeout", "2s"); st.code != 1 || !strings.Contains(st.stderr, "fix it and apply it again") {
		t.Errorf("rollout status of a held rollout: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	if r := fleet(t, state, "apply", "-f", good); r.code != 0 {
		t.Fatalf("apply of the ConfigMap as it was: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st := fleet(t, state, "rollout", "status", "deploy/held", "--timeout", "30s"); st.code != 0 {
		t.Errorf("rollout status after the fix: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	if !sameContainers(before, getPodsJSON(t, state, "held")) {
		t.Errorf("going back to the ConfigMap of the running pods replaced them")
	}

	// A pod with a ConfigMap volume is restarted by passes only: a new
	// one that exits fails the rollout at once (the engine's restart
	// count stays 0), not at the progress deadline.
	files := func(name, exitAfter string) string {
		return writeManifest(t, name, fmt.Sprintf(strings.NewReplacer("name: held}", "name: heldfiles}", "DEMO_READY_AFTER: %q", "DEMO_EXIT_AFTER: %q, DEMO_READY_AFTER: 1s",
			"        readinessProbe:", "        volumeMounts: [{name: config, mountPath: /etc/app}]\n        readinessProbe:",
			"          periodSeconds: 1\n", "          periodSeconds: 1\n      volumes: [{name: config, configMap: {name: heldfiles}}]\n",
			"progressDeadlineSeconds: 8", "progressDeadlineSeconds: 600").Replace(heldManifest), exitAfter))
	}
	goodFiles, badFiles := files("heldfiles.yaml", ""), files("heldfiles-bad.yaml", "300ms")
	t.Cleanup(func() { fleet(t, state, "delete", "-f", goodFiles) })
	applyComplete(t, state, goodFiles, "heldfiles")
	beforeFiles := getPodsJSON(t, state, "heldfiles")
	r = fleet(t, state, "apply", "-f", badFiles, "--timeout", "90s")
	if r.code != 1 || !strings.Contains(r.stderr, "exited with") || !strings.Contains(r.stderr, "the pods of before are kept") {
		t.Fatalf("apply of a ConfigMap that makes the pods exit: exit %d, want 1 saying a new pod exited and the rollout is held\n%s%s", r.code, r.stdout, r.stderr)
	}
	if after := getPodsJSON(t, state, "heldfiles"); !sameContainers(beforeFiles, after) {
		t.Errorf("pods after the failed edit:\n%+v\nwant the pods of before:\n%+v", after, beforeFiles)
	}
}
