package e2e

import (
	"strings"
	"testing"
)

const volumeManifest = `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: db-data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  replicas: 1
  strategy: {type: Recreate}
  template:
    spec:
      containers:
      - name: db
        image: fleet-demo:v1
        volumeMounts:
        - {name: data, mountPath: /var/lib/mysql}
        - {name: scratch, mountPath: /scratch}
        - {name: mem, mountPath: /mem}
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: db-data}}
      - {name: scratch, emptyDir: {}}
      - {name: mem, emptyDir: {medium: Memory}}
`

func onePod(t *testing.T, state, owner string) podJSON {
	t.Helper()
	var pods []podJSON
	eventually(t, "one running pod of "+owner, func() bool {
		pods = getPodsJSON(t, state, owner)
		return len(pods) == 1 && pods[0].Status == "Running"
	})
	return pods[0]
}

// Data written to a PersistentVolumeClaim survives deleting and
// re-creating the pod and a controller restart, and the pod stays on the
// volume's machine; an emptyDir goes with its pod; deleting the claim
// deletes its volume.
func TestVolumes_ClaimOutlivesPods(t *testing.T) {
	const state = "volumes.db"
	m := writeManifest(t, "db.yaml", volumeManifest)
	t.Cleanup(func() { fleet(t, state, "delete", "-f", m) })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := onePod(t, state, "db")
	home := p.Node
	hostExec(t, home, "docker", "exec", p.ContainerID, "/demo", "write", "/var/lib/mysql/row", "kept")
	hostExec(t, home, "docker", "exec", p.ContainerID, "/demo", "write", "/scratch/tmp", "gone")
	pvc := fleet(t, state, "get", "pvc").stdout
	if !strings.Contains(pvc, "db-data") || !strings.Contains(pvc, "Bound") || !strings.Contains(pvc, home) || !strings.Contains(pvc, "1Gi") {
		t.Fatalf("get pvc after the first pod:\n%s", pvc)
	}

	t.Run("the data survives deleting and re-creating the pod, on the same machine", func(t *testing.T) {
		dep := writeManifest(t, "db-deploy.yaml", volumeManifest[strings.Index(volumeManifest, "apiVersion: apps/v1"):])
		if r := fleet(t, state, "delete", "-f", dep); r.code != 0 {
			t.Fatalf("delete deploy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if vols := hostExec(t, home, "docker", "volume", "ls", "-q"); strings.Contains(vols, p.Name+"_scratch") {
			t.Errorf("the emptyDir volume outlived its pod:\n%s", vols)
		}
		for range 3 { // the spread would move a new pod elsewhere
			if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
				t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			q := onePod(t, state, "db")
			if q.Node != home {
				t.Fatalf("the new pod runs on %s, the claim's data is on %s", q.Node, home)
			}
			if got := hostExec(t, home, "docker", "exec", q.ContainerID, "/demo", "read", "/var/lib/mysql/row"); got != "kept" {
				t.Errorf("the claim holds %q, want kept", got)
			}
			fleet(t, state, "delete", "-f", dep)
		}
		if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
			t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("and a controller restart", func(t *testing.T) {
		stop := startServe(t, state, "--lb-address", "", "--admin-address", "", "--ingress-http", "", "--ingress-https", "")
		q := onePod(t, state, "db")
		stop()
		startServe(t, state, "--lb-address", "", "--admin-address", "", "--ingress-http", "", "--ingress-https", "")
		r := onePod(t, state, "db")
		if r.Name != q.Name || r.Node != home {
			t.Errorf("after the restart: pod %s on %s, want %s on %s", r.Name, r.Node, q.Name, home)
		}
		if got := hostExec(t, home, "docker", "exec", r.ContainerID, "/demo", "read", "/var/lib/mysql/row"); got != "kept" {
			t.Errorf("the claim holds %q after the restart", got)
		}
	})
	t.Run("deleting the claim deletes its volume", func(t *testing.T) {
		if r := fleet(t, state, "delete", "-f", m); r.code != 0 {
			t.Fatalf("delete: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		eventually(t, "the claim's volume gone", func() bool {
			fleet(t, state, "reconcile", "--wait-lease")
			return !strings.Contains(hostExec(t, home, "docker", "volume", "ls", "-q"), "claim_db-data")
		})
		if pvc := fleet(t, state, "get", "pvc").stdout; strings.Contains(pvc, "db-data") {
			t.Errorf("get pvc after delete:\n%s", pvc)
		}
	})
	t.Run("Retain, set after the claim was bound, keeps the volume", func(t *testing.T) {
		if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
			t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		node := onePod(t, state, "db").Node
		t.Cleanup(func() { hostExec(t, node, "docker", "volume", "rm", "-f", "fleet_default_claim_db-data") })
		retain := writeManifest(t, "db-retain.yaml", strings.Replace(volumeManifest, "metadata: {name: db-data}",
			"metadata: {name: db-data, annotations: {fleet.dev/reclaim-policy: Retain}}", 1))
		if r := fleet(t, state, "apply", "-f", retain); r.code != 0 {
			t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := fleet(t, state, "delete", "-f", retain); r.code != 0 {
			t.Fatalf("delete: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		fleet(t, state, "reconcile", "--wait-lease")
		if !strings.Contains(hostExec(t, node, "docker", "volume", "ls", "-q"), "claim_db-data") {
			t.Errorf("the volume of a claim annotated Retain after binding was deleted with it")
		}
	})
}
