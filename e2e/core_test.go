package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fleetdev/fleet/sandbox"
)

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
  labels:
    app: %s
spec:
  replicas: %d
  selector:
    matchLabels:
      app: %s
  template:
    metadata:
      labels:
        app: %s
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        ports:
        - containerPort: 8080
        resources:
          requests:
            cpu: 10m
            memory: 16Mi
`

func writeManifest(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func web(name string, replicas int) string {
	return fmt.Sprintf(webManifest, name, name, replicas, name, name)
}

type podJSON struct {
	Name        string `json:"name"`
	Namespace   string `json:"namespace"`
	Owner       string `json:"owner"`
	Node        string `json:"node"`
	Status      string `json:"status"`
	Ready       bool   `json:"ready"`
	Restarts    int    `json:"restarts"`
	Reason      string `json:"reason"`
	Revision    int64  `json:"revision"`
	Image       string `json:"image"`
	ContainerID string `json:"containerID"`
}

func getPodsJSON(t *testing.T, state, owner string) []podJSON {
	t.Helper()
	r := fleet(t, state, "get", "pods", "-A", "-o", "json")
	if r.code != 0 {
		t.Fatalf("get pods: exit %d: %s", r.code, r.stderr)
	}
	var doc struct {
		Items []podJSON `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("get pods -o json: %v\n%s", err, r.stdout)
	}
	var out []podJSON
	for _, p := range doc.Items {
		if owner == "" || p.Owner == owner {
			out = append(out, p)
		}
	}
	return out
}

func perNode(pods []podJSON) map[string]int {
	m := map[string]int{}
	for _, p := range pods {
		m[p.Node]++
	}
	return m
}

// The tutorial Deployment lands spread over the machines, one replica each.
func TestApply_TutorialDeploymentSpreads(t *testing.T) {
	m := writeManifest(t, "web.yaml", web("tut", 3))
	t.Cleanup(func() { fleet(t, "core.db", "delete", "deploy/tut") })
	r := fleet(t, "core.db", "apply", "-f", m)
	if r.code != 0 || !strings.Contains(r.stdout, "deployment.apps/tut created") || !strings.Contains(r.stdout, "converged") {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pods := getPodsJSON(t, "core.db", "tut")
	if len(pods) != 3 {
		t.Fatalf("%d pods, want 3: %+v", len(pods), pods)
	}
	for node, n := range perNode(pods) {
		if n != 1 {
			t.Errorf("%s holds %d replicas, want 1 each while machines have room", node, n)
		}
	}
	for _, p := range pods {
		if p.Status != "Running" || !p.Ready || p.Revision != 1 || p.Image != "fleet-demo:v1" || p.ContainerID == "" {
			t.Errorf("pod %+v", p)
		}
	}
	t.Run("a second apply changes nothing", func(t *testing.T) {
		r := fleet(t, "core.db", "apply", "-f", m)
		if r.code != 0 || !strings.Contains(r.stdout, "deployment.apps/tut unchanged") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if after := getPodsJSON(t, "core.db", "tut"); !sameContainers(pods, after) {
			t.Fatalf("containers changed:\nbefore %+v\nafter %+v", pods, after)
		}
	})
	t.Run("reconcile on a converged cluster is a no-op", func(t *testing.T) {
		r := fleet(t, "core.db", "reconcile")
		if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("plan shows no changes and exits 0", func(t *testing.T) {
		r := fleet(t, "core.db", "plan", "-f", m)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("plan of a scale-up shows the placements and exits 2, changing nothing", func(t *testing.T) {
		r := fleet(t, "core.db", "plan", "-f", writeManifest(t, "web5.yaml", web("tut", 5)))
		if r.code != 2 || strings.Count(r.stdout, "run tut-") != 2 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if n := len(getPodsJSON(t, "core.db", "tut")); n != 3 {
			t.Fatalf("plan changed the machines: %d pods", n)
		}
	})
	t.Run("diff shows the replica change", func(t *testing.T) {
		r := fleet(t, "core.db", "diff", "-f", writeManifest(t, "web5.yaml", web("tut", 5)))
		if r.code != 1 || !strings.Contains(r.stdout, `-  "replicas": 3,`) || !strings.Contains(r.stdout, `+  "replicas": 5,`) {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("get deploy and describe agree", func(t *testing.T) {
		r := fleet(t, "core.db", "get", "deploy")
		if r.code != 0 || !strings.Contains(lineOf(r.stdout, "tut"), "3/3") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = fleet(t, "core.db", "describe", "deploy/tut")
		if r.code != 0 || !strings.Contains(r.stdout, "3 desired | 3 updated | 3 ready") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

func sameContainers(a, b []podJSON) bool {
	ids := func(ps []podJSON) string {
		var s []string
		for _, p := range ps {
			s = append(s, p.ContainerID)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	return len(a) == len(b) && ids(a) == ids(b)
}

// Seed scenario 1: one command spreads 50 replicas over 10 machines.
func TestScale_FiftyOverTenMachines(t *testing.T) {
	m := writeManifest(t, "spike.yaml", web("spike", 2))
	t.Cleanup(func() { fleet(t, "core.db", "delete", "deploy/spike") })
	if r := fleet(t, "core.db", "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := fleet(t, "core.db", "scale", "deploy/spike", "--replicas=50")
	if r.code != 0 {
		t.Fatalf("scale: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pods := getPodsJSON(t, "core.db", "spike")
	running := 0
	for _, p := range pods {
		if p.Status == "Running" {
			running++
		}
	}
	if len(pods) != 50 || running != 50 {
		t.Fatalf("%d pods, %d running, want 50", len(pods), running)
	}
	for node, n := range perNode(pods) {
		if n > 6 {
			t.Errorf("%s holds %d replicas, want at most 6", node, n)
		}
	}
	// The hosts agree with fleet: count containers on each machine itself.
	total := 0
	for i := 1; i <= hostCount; i++ {
		out := hostExec(t, sandbox.HostName(i), "docker", "ps", "-q", "--filter", "label=fleet.owner=spike")
		total += len(strings.Fields(out))
	}
	if total != 50 {
		t.Fatalf("machines run %d spike containers, want 50", total)
	}

	t.Run("scaling back to 3 removes 47", func(t *testing.T) {
		r := fleet(t, "core.db", "scale", "deploy/spike", "--replicas=3")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if n := len(getPodsJSON(t, "core.db", "spike")); n != 3 {
			t.Fatalf("%d pods after scaling to 3", n)
		}
	})

	t.Run("a lost state file is adopted, not replaced", func(t *testing.T) {
		before := getPodsJSON(t, "core.db", "spike")
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(filepath.Join(stateDir, "core.db"+suffix))
		}
		// The machines alone still tell what runs.
		if now := getPodsJSON(t, "core.db", "spike"); !sameContainers(before, now) {
			t.Fatalf("get pods without a state file: %+v, want %+v", now, before)
		}
		r := fleet(t, "core.db", "apply", "-f", writeManifest(t, "spike3.yaml", web("spike", 3)))
		if r.code != 0 {
			t.Fatalf("re-apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if after := getPodsJSON(t, "core.db", "spike"); !sameContainers(before, after) {
			t.Fatalf("re-apply recreated containers:\nbefore %+v\nafter %+v", before, after)
		}
	})
}

// Bad input changes nothing: every problem is named with file:line and
// field, and neither the state file nor any machine is touched.
func TestApply_BadManifestsChangeNothing(t *testing.T) {
	good := writeManifest(t, "good.yaml", web("steady", 1))
	t.Cleanup(func() { fleet(t, "core.db", "delete", "deploy/steady") })
	if r := fleet(t, "core.db", "apply", "-f", good); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before := fleet(t, "core.db", "get", "deploy", "-A", "-o", "json").stdout
	beforePods := getPodsJSON(t, "core.db", "")
	base := web("broken", 2)
	cases := []struct{ name, body, want string }{
		{"unknown field", strings.Replace(base, "  replicas: 2", "  replicas: 2\n  replica: 3", 1), "spec.replica"},
		{"wrong type", strings.Replace(base, "replicas: 2", "replicas: two", 1), "spec.replicas"},
		{"bad quantity", strings.Replace(base, "cpu: 10m", "cpu: 10 cores", 1), "cpu"},
		{"missing image", strings.Replace(base, "        image: fleet-demo:v1\n", "", 1), "image"},
		{"unknown kind", strings.Replace(base, "kind: Deployment", "kind: Deploymint", 1), "Deploymint"},
		{"wrong apiVersion", strings.Replace(base, "apiVersion: apps/v1", "apiVersion: v1", 1), "apiVersion"},
		{"negative replicas", strings.Replace(base, "replicas: 2", "replicas: -1", 1), "spec.replicas"},
		{"bad name", strings.Replace(base, "name: broken\n", "name: Broken_Name\n", 1), "metadata.name"},
		{"port out of range", strings.Replace(base, "containerPort: 8080", "containerPort: 70000", 1), "containerPort"},
		{"selector not matching labels", strings.Replace(base, "    matchLabels:\n      app: broken", "    matchLabels:\n      app: other", 1), "selector"},
		{"unsupported volume", strings.Replace(base, "        ports:", "        volumeMounts:\n        - name: x\n          mountPath: /x\n        ports:", 1), "volumeMounts"},
		{"bad pull policy", strings.Replace(base, "        image: fleet-demo:v1", "        image: fleet-demo:v1\n        imagePullPolicy: Sometimes", 1), "imagePullPolicy"},
		{"bad protocol", strings.Replace(base, "- containerPort: 8080", "- containerPort: 8080\n          protocol: SCTP", 1), "protocol"},
		{"duplicate container name", strings.Replace(base, "      containers:\n", "      containers:\n      - name: web\n        image: fleet-demo:v1\n", 1), "web"},
		{"limits below requests", strings.Replace(base, "          requests:", "          limits:\n            memory: 8Mi\n          requests:", 1), "limits"},
		{"yaml syntax", base + "  : : :\n\t- bad", ":"},
		{"namespace that does not exist", strings.Replace(base, "  name: broken\n", "  name: broken\n  namespace: nowhere\n", 1), "nowhere"},
		{"unsupported kind", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\n", "PersistentVolumeClaim"},
		{"duplicate object", base + "---\n" + base, "broken"},
		{"valueFrom env", strings.Replace(base, "        ports:", "        env:\n        - name: A\n          valueFrom:\n            secretKeyRef: {name: s, key: k}\n        ports:", 1), "valueFrom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A good document beside the bad one: all or nothing.
			path := writeManifest(t, "bad.yaml", web("alsogood", 1)+"---\n"+tc.body)
			r := fleet(t, "core.db", "apply", "-f", path)
			if r.code == 0 {
				t.Fatalf("apply accepted it:\n%s", r.stdout)
			}
			if !strings.Contains(r.stderr, "bad.yaml:") || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("error does not name file:line and %q:\n%s", tc.want, r.stderr)
			}
		})
	}
	after := fleet(t, "core.db", "get", "deploy", "-A", "-o", "json").stdout
	if before != after {
		t.Fatalf("the state file changed:\nbefore %s\nafter %s", before, after)
	}
	if afterPods := getPodsJSON(t, "core.db", ""); !sameContainers(beforePods, afterPods) {
		t.Fatalf("machines changed")
	}
}
