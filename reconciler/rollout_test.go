package reconciler

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetdev/fleet/planner"
	"github.com/fleetdev/fleet/spec"
)

// stagedDesired is deployment web with replicas and strategy, at
// revision 2 (pods hash "new"), revision 1 ("old") fully available.
func stagedDesired(replicas int, strategy spec.Strategy) (*rolling, *RolloutState) {
	d := &desired{deploy: &spec.Deployment{Replicas: replicas, Strategy: strategy, ProgressDeadlineSeconds: 60},
		workload: planner.Workload{Namespace: "default", Name: "web", Replicas: replicas, SpecHash: "new", Revision: 2}}
	st := &RolloutState{Revision: 1, Hash: "old", Phase: PhaseComplete, StableRevision: 1, StableHash: "old"}
	return &rolling{key: "default/web", d: d, state: st}, st
}

// pods is n ready pods of hash, plus unready ones.
func pods(hash string, ready, unready int) []PodStatus {
	var out []PodStatus
	for i := range ready + unready {
		out = append(out, PodStatus{Namespace: "default", Owner: "web", Name: hash + string(rune('a'+i)), Node: "m1",
			SpecHash: hash, Status: Running, Ready: i < ready})
	}
	return out
}

func obsOf(groups ...[]PodStatus) Observed {
	var o Observed
	for _, g := range groups {
		o.Pods = append(o.Pods, g...)
	}
	return o
}

func TestProgress_CanarySteps(t *testing.T) {
	w25, w50 := 25, 50
	ro, st := stagedDesired(4, spec.Strategy{Type: spec.Canary, Canary: &spec.CanaryStrategy{Steps: []spec.CanaryStep{
		{SetWeight: &w25}, {Pause: &spec.CanaryPause{}}, {SetWeight: &w50}, {Pause: &spec.CanaryPause{Seconds: 30}},
	}}})
	r := &Reconciler{}
	now := time.Unix(1000, 0)
	step := func(obs Observed, at time.Time) {
		t.Helper()
		ro.d.workload.Stable, ro.d.workload.NewReplicas, ro.requeue = nil, 0, 0
		r.progress(ro, obs, at)
	}

	step(obsOf(pods("old", 4, 0)), now)
	if w := ro.d.workload; w.Stable == nil || w.Stable.SpecHash != "old" || w.NewReplicas != 1 || !st.Split || st.Weight != 25 {
		t.Fatalf("first step: stable %+v new %d split %v weight %d; want old kept, 1 new pod at 25%%", w.Stable, w.NewReplicas, st.Split, st.Weight)
	}
	step(obsOf(pods("old", 4, 0), pods("new", 1, 0)), now)
	if !st.WaitsForPromote() || ro.d.workload.NewReplicas != 1 || !strings.Contains(st.Message, "fleet rollout promote") {
		t.Fatalf("at the pause: phase %s, new %d, message %q", st.Phase, ro.d.workload.NewReplicas, st.Message)
	}
	st.promote = PromoteMark(1, 9) // a mark of another revision releases nothing
	step(obsOf(pods("old", 4, 0), pods("new", 1, 0)), now)
	if !st.WaitsForPromote() {
		t.Fatal("a promote of revision 1 released revision 2's pause")
	}
	st.promote = PromoteMark(2, st.Step+1)
	step(obsOf(pods("old", 4, 0), pods("new", 1, 0)), now)
	if st.Weight != 50 || ro.d.workload.NewReplicas != 2 || st.WaitsForPromote() {
		t.Fatalf("after promote: weight %d, new %d, phase %s", st.Weight, ro.d.workload.NewReplicas, st.Phase)
	}
	step(obsOf(pods("old", 4, 0), pods("new", 2, 0)), now)
	if ro.requeue != 30*time.Second || ro.d.workload.NewReplicas != 2 {
		t.Fatalf("timed pause: requeue %s, new %d", ro.requeue, ro.d.workload.NewReplicas)
	}
	step(obsOf(pods("old", 4, 0), pods("new", 2, 0)), now.Add(31*time.Second))
	if st.Weight != 100 || ro.d.workload.NewReplicas != 4 {
		t.Fatalf("after the last step: weight %d, new %d; want the new set completed at 100%%", st.Weight, ro.d.workload.NewReplicas)
	}
	step(obsOf(pods("old", 4, 0), pods("new", 4, 0)), now.Add(32*time.Second))
	if ro.d.workload.Stable != nil || st.Weight != 100 || !st.Split {
		t.Fatalf("new set complete: the old set should go (stable %+v) with all traffic on the new (weight %d)", ro.d.workload.Stable, st.Weight)
	}
	step(obsOf(pods("new", 4, 0)), now.Add(33*time.Second))
	if st.Phase != PhaseComplete || st.Split || st.StableRevision != 2 || st.StableHash != "new" {
		t.Fatalf("done: %+v", st)
	}
}

func TestProgress_BlueGreen(t *testing.T) {
	ro, st := stagedDesired(3, spec.Strategy{Type: spec.BlueGreen, BlueGreen: &spec.BlueGreenStrategy{ScaleDownDelaySeconds: 5}})
	r := &Reconciler{}
	now := time.Unix(1000, 0)
	r.progress(ro, obsOf(pods("old", 3, 0), pods("new", 2, 1)), now)
	if st.Weight != 0 || !st.Split || ro.d.workload.NewReplicas != 3 || st.Phase != PhaseProgressing {
		t.Fatalf("preview: %+v new %d", st, ro.d.workload.NewReplicas)
	}
	r.progress(ro, obsOf(pods("old", 3, 0), pods("new", 3, 0)), now)
	if !st.WaitsForPromote() || st.Weight != 0 {
		t.Fatalf("preview ready without auto-promotion: %+v", st)
	}
	st.promote = PromoteMark(2, 1)
	r.progress(ro, obsOf(pods("old", 3, 0), pods("new", 3, 0)), now)
	if st.Weight != 100 || ro.d.workload.Stable == nil || ro.requeue != 5*time.Second {
		t.Fatalf("switched: %+v stable %+v requeue %s", st, ro.d.workload.Stable, ro.requeue)
	}
	ro.d.workload.Stable = nil
	r.progress(ro, obsOf(pods("old", 3, 0), pods("new", 3, 0)), now.Add(6*time.Second))
	if ro.d.workload.Stable != nil || st.Weight != 100 {
		t.Fatalf("after the delay the old set goes: %+v", st)
	}
}

func TestProgress_StagedFailures(t *testing.T) {
	w := 50
	strategy := spec.Strategy{Type: spec.Canary, Canary: &spec.CanaryStrategy{Steps: []spec.CanaryStep{{SetWeight: &w}}}}
	r := &Reconciler{}
	now := time.Unix(1000, 0)

	ro, _ := stagedDesired(2, strategy)
	crashing := pods("new", 0, 1)
	crashing[0].Containers = []ContainerStatus{{Name: "web", Restarts: crashLoopRestarts}}
	r.progress(ro, obsOf(pods("old", 2, 0), crashing), now)
	if !strings.Contains(ro.fail, "crash-looping") {
		t.Errorf("crash-looping canary: fail %q", ro.fail)
	}

	ro, _ = stagedDesired(2, strategy)
	r.progress(ro, obsOf(pods("old", 2, 0), pods("new", 0, 1)), now)
	if ro.fail != "" {
		t.Fatalf("failed at once: %q", ro.fail)
	}
	r.progress(ro, obsOf(pods("old", 2, 0), pods("new", 0, 1)), now.Add(61*time.Second))
	if !strings.Contains(ro.fail, "progressDeadlineSeconds") {
		t.Errorf("canary not ready past the deadline: fail %q", ro.fail)
	}

	// A first revision has nothing to go back to: no staging at all.
	ro, st := stagedDesired(2, strategy)
	*st = RolloutState{}
	r.progress(ro, obsOf(pods("new", 0, 2)), now)
	if st.Split || ro.d.workload.Stable != nil {
		t.Errorf("first revision staged: %+v", st)
	}
}

// A new revision arriving while the last one's pods are all ready makes
// that one the stable set for a rolling update (its last old pods were
// draining), but not for a blue-green preview nobody promoted.
func TestProgress_StableOnANewRevision(t *testing.T) {
	for _, tt := range []struct {
		strategy   string
		wantStable string
	}{{spec.RollingUpdate, "new"}, {spec.BlueGreen, "old"}} {
		t.Run(tt.strategy, func(t *testing.T) {
			ro, st := stagedDesired(2, spec.Strategy{Type: tt.strategy, BlueGreen: &spec.BlueGreenStrategy{}})
			*st = RolloutState{Revision: 2, Hash: "new", Strategy: tt.strategy, Phase: PhaseProgressing, StableRevision: 1, StableHash: "old"}
			ro.d.workload.SpecHash, ro.d.workload.Revision = "newer", 3
			(&Reconciler{}).progress(ro, obsOf(pods("old", 1, 0), pods("new", 2, 0)), time.Unix(1000, 0))
			if st.StableHash != tt.wantStable {
				t.Fatalf("stable %q, want %q", st.StableHash, tt.wantStable)
			}
		})
	}
}
