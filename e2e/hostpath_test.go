package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// hostPath types are checked on the machine before the container is
// created, as the kubelet does: FileOrCreate and DirectoryOrCreate create
// what is missing; File, Directory and Socket need that kind of thing
// there, and a wrong one fails the pod, taken down whole, with an event
// naming the volume, the path and what was found.
func TestVolumes_HostPathTypes(t *testing.T) {
	const state = "hostpath.db"
	uniq := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	file := "/tmp/fleet-e2e-hp-" + uniq + ".log"
	dir := "/tmp/fleet-e2e-hp-" + uniq + "/a/b"
	good := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: hp}
spec:
  replicas: 1
  template:
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        volumeMounts:
        - {name: log, mountPath: /log/app.log}
        - {name: dir, mountPath: /dir}
        - {name: etc, mountPath: /hostetc, readOnly: true}
        - {name: hostname, mountPath: /hostname, readOnly: true}
        - {name: sock, mountPath: /docker.sock}
      volumes:
      - {name: log, hostPath: {path: %s, type: FileOrCreate}}
      - {name: dir, hostPath: {path: %s, type: DirectoryOrCreate}}
      - {name: etc, hostPath: {path: /etc, type: Directory}}
      - {name: hostname, hostPath: {path: /etc/hostname, type: File}}
      - {name: sock, hostPath: {path: /var/run/docker.sock, type: Socket}}
`, file, dir)
	m := writeManifest(t, "hp.yaml", good)
	t.Cleanup(func() {
		fleet(t, state, "delete", "-f", m)
		for i := 1; i <= hostCount; i++ {
			sb.Exec(t.Context(), fmt.Sprintf("node%d", i), "rm", "-rf", file, "/tmp/fleet-e2e-hp-"+uniq)
		}
	})
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := onePod(t, state, "hp")
	if got := hostExec(t, p.Node, "stat", "-c", "%F %a", file); strings.TrimSpace(got) != "regular empty file 644" {
		t.Errorf("FileOrCreate made %q on %s, want an empty file of mode 644", got, p.Node)
	}
	if got := hostExec(t, p.Node, "stat", "-c", "%F %a", dir); strings.TrimSpace(got) != "directory 755" {
		t.Errorf("DirectoryOrCreate made %q on %s, want a directory of mode 755", got, p.Node)
	}
	hostExec(t, p.Node, "docker", "exec", p.ContainerID, "/demo", "write", "/log/app.log", "through the mount")
	if got := hostExec(t, p.Node, "cat", file); got != "through the mount" {
		t.Errorf("the machine's file holds %q, want what the container wrote", got)
	}
	if got := hostExec(t, p.Node, "docker", "exec", p.ContainerID, "/demo", "read", "/hostname"); strings.TrimSpace(got) != strings.TrimSpace(hostExec(t, p.Node, "cat", "/etc/hostname")) {
		t.Errorf("the File mount reads %q", got)
	}

	for _, bad := range []struct{ name, volume, want string }{
		{"hp-notfile", "{name: v, hostPath: {path: /etc, type: File}}", "hostPath volume v (type File): /etc is a directory, not a file"},
		{"hp-missing", "{name: v, hostPath: {path: /tmp/fleet-e2e-hp-" + uniq + "-none, type: Directory}}", "hostPath volume v (type Directory): /tmp/fleet-e2e-hp-" + uniq + "-none does not exist"},
		{"hp-nodir", "{name: v, hostPath: {path: /tmp/fleet-e2e-hp-" + uniq + "-none/x.log, type: FileOrCreate}}", "/tmp/fleet-e2e-hp-" + uniq + "-none does not exist"},
		{"hp-nosock", "{name: v, hostPath: {path: /etc/hostname, type: Socket}}", "/etc/hostname is a file, not a UNIX socket"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			bm := writeManifest(t, bad.name+".yaml", fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: 1
  template:
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
      - name: side
        image: fleet-demo:v1
        env: [{name: ADDR, value: ":9090"}]
        volumeMounts: [{name: v, mountPath: /v}]
      volumes: [%s]
`, bad.name, bad.volume))
			t.Cleanup(func() { fleet(t, state, "delete", "-f", bm) })
			r := fleet(t, state, "apply", "-f", bm, "--timeout", "5s")
			if r.code == 0 {
				t.Errorf("apply of a pod whose hostPath does not check out exited 0:\n%s", r.stdout)
			}
			if out := r.stdout + r.stderr; !strings.Contains(out, bad.want) {
				t.Errorf("apply does not say %q:\n%s", bad.want, out)
			}
			if ev := fleet(t, state, "get", "events").stdout; !strings.Contains(ev, bad.want) {
				t.Errorf("events do not say %q:\n%s", bad.want, ev)
			}
			// The pod's other container and sandbox are not left behind
			// by a whole pass (the apply's deadline may cut one short in
			// the middle of a create the engine still completes).
			fleet(t, state, "reconcile")
			if n := len(getPodsJSON(t, state, bad.name)); n != 0 {
				t.Errorf("%d pods of %s, want none", n, bad.name)
			}
		})
	}
}
