package e2e

import (
	"strings"
	"testing"
)

// A new version, its history, undo to the previous template (as a new
// revision), restart, and status — without serve (apply and undo run the
// passes themselves).
func TestRollout_HistoryUndoRestartStatus(t *testing.T) {
	const state = "core.db"
	v1 := writeManifest(t, "ro-v1.yaml", web("ro", 2))
	v2 := writeManifest(t, "ro-v2.yaml", strings.Replace(web("ro", 2), "fleet-demo:v1", "fleet-demo:v2", 1))
	t.Cleanup(func() { fleet(t, state, "delete", "deploy/ro") })
	for _, m := range []string{v1, v2} {
		if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
			t.Fatalf("apply %s: exit %d\n%s%s", m, r.code, r.stdout, r.stderr)
		}
	}
	images := func() map[string]int {
		out := map[string]int{}
		for _, p := range getPodsJSON(t, state, "ro") {
			out[p.Image]++
		}
		return out
	}
	if got := images(); got["fleet-demo:v2"] != 2 || len(got) != 1 {
		t.Fatalf("after v2: images %v", got)
	}
	h := fleet(t, state, "rollout", "history", "deploy/ro").stdout
	if !strings.Contains(h, "1  ") || !strings.Contains(h, "2 (current)") {
		t.Fatalf("history:\n%s", h)
	}
	t.Run("undo goes back to v1 as revision 3", func(t *testing.T) {
		r := fleet(t, state, "rollout", "undo", "deploy/ro")
		if r.code != 0 || !strings.Contains(r.stdout, "rolled back to the template of revision 1 (now revision 3)") {
			t.Fatalf("undo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if got := images(); got["fleet-demo:v1"] != 2 || len(got) != 1 {
			t.Fatalf("after undo: images %v", got)
		}
		h := fleet(t, state, "rollout", "history", "deploy/ro").stdout
		if !strings.Contains(h, "3 (current)") || !strings.Contains(h, "fleet rollout undo --to-revision 1") {
			t.Fatalf("history after undo:\n%s", h)
		}
		if r := fleet(t, state, "rollout", "undo", "deploy/ro", "--to-revision", "9"); r.code == 0 || !strings.Contains(r.stderr, "has no revision 9") {
			t.Fatalf("undo to a missing revision: exit %d %s", r.code, r.stderr)
		}
	})
	t.Run("a paused rollout keeps the old pods until resumed", func(t *testing.T) {
		if r := fleet(t, state, "rollout", "pause", "deploy/ro"); r.code != 0 || !strings.Contains(r.stdout, "deployment.apps/ro paused") {
			t.Fatalf("pause: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := fleet(t, state, "apply", "-f", v2); r.code != 0 {
			t.Fatalf("apply v2 while paused: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if got := images(); got["fleet-demo:v1"] != 2 {
			t.Fatalf("paused, yet pods were replaced: %v", got)
		}
		if r := fleet(t, state, "rollout", "status", "deploy/ro", "--timeout", "10s"); r.code != 1 || !strings.Contains(r.stderr, "is paused") {
			t.Fatalf("status while paused: exit %d %s", r.code, r.stderr)
		}
		if r := fleet(t, state, "rollout", "resume", "deploy/ro"); r.code != 0 {
			t.Fatalf("resume: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := fleet(t, state, "reconcile"); r.code != 0 {
			t.Fatalf("reconcile after resume: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if got := images(); got["fleet-demo:v2"] != 2 || len(got) != 1 {
			t.Fatalf("after resume: images %v", got)
		}
	})
	t.Run("restart replaces every pod; status says when it is done", func(t *testing.T) {
		before := getPodsJSON(t, state, "ro")
		if r := fleet(t, state, "rollout", "restart", "deploy/ro"); r.code != 0 {
			t.Fatalf("restart: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		after := getPodsJSON(t, state, "ro")
		for _, a := range after {
			for _, b := range before {
				if a.ContainerID == b.ContainerID {
					t.Fatalf("pod %s survived the restart", a.Name)
				}
			}
		}
		r := fleet(t, state, "rollout", "status", "deploy/ro", "--timeout", "30s")
		if r.code != 0 || !strings.Contains(r.stdout, `deployment "ro" successfully rolled out (revision 5)`) {
			t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}
