package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fleetdev/fleet/planner"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// Rollout phases.
const (
	// PhaseProgressing: pods of the latest revision are being brought up.
	PhaseProgressing = "Progressing"
	// PhasePaused: a canary or blue-green rollout waits for `fleet
	// rollout promote`.
	PhasePaused = "Paused"
	// PhaseComplete: every replica runs the latest revision and is ready.
	PhaseComplete = "Complete"
	// PhaseFailed: the latest revision failed and there was no fully
	// available revision to go back to.
	PhaseFailed = "Failed"
)

// RolloutState is a Deployment's rollout as the lease holder tracks it
// from pass to pass. It is kept in the state file (table rollouts), so
// any process can show it.
type RolloutState struct {
	// Revision is the revision being rolled out (the latest), Hash its
	// pods' spec hash.
	Revision int64  `json:"revision"`
	Hash     string `json:"hash"`
	Strategy string `json:"strategy"`
	Phase    string `json:"phase"`
	// Since is when this rollout began.
	Since time.Time `json:"since"`
	// Step is a canary's step in progress (len(steps) once every step is
	// done, one more once the old set is going); for blue-green 0 is the
	// preview, 1 the switch, 2 the old set going.
	Step      int       `json:"step,omitempty"`
	StepSince time.Time `json:"stepSince,omitzero"`
	// Split is set while the load balancer splits the Deployment's
	// traffic: Weight percent to pods of Hash, the rest to the others.
	Split  bool `json:"split,omitempty"`
	Weight int  `json:"weight,omitempty"`
	// Message says what the rollout waits for.
	Message string `json:"message,omitempty"`
	// StableRevision is the last revision that was fully available, and
	// StableHash its pods' spec hash: what a failed rollout goes back to.
	StableRevision int64  `json:"stableRevision,omitempty"`
	StableHash     string `json:"stableHash,omitempty"`
	// FailedRevision is the last revision rolled back automatically, and
	// FailedReason why; kept until another revision is applied.
	FailedRevision int64  `json:"failedRevision,omitempty"`
	FailedReason   string `json:"failedReason,omitempty"`
	// RolledBackTo is the revision whose template the rollback took.
	RolledBackTo int64 `json:"rolledBackTo,omitempty"`
	// Held is a failed rollout whose template did not change (what did
	// is the ConfigMap or Secret values its pods consume, or their node
	// ports), so there is no template to go back to: the pods of
	// StableHash stay, the new ones go, until the Deployment's pods'
	// hash changes again.
	Held bool `json:"held,omitempty"`

	// promote is the mark `fleet rollout promote` left (the store's own
	// column; see PromoteMark).
	promote int64
}

// PromoteMark is what `fleet rollout promote` records to release a
// rollout of revision up to step (exclusive): the revision in the high
// bits, so a mark left for one revision releases nothing of the next,
// and marks only grow.
func PromoteMark(revision int64, step int) int64 {
	return revision<<promoteBits | int64(min(step, promoteAll))
}

const (
	promoteBits = 20
	// promoteAll releases every step (promote --full).
	promoteAll = 1<<promoteBits - 1
)

// WaitsForPromote reports whether the rollout is held until `fleet
// rollout promote` (and was not promoted since).
func (s *RolloutState) WaitsForPromote() bool {
	return s.Phase == PhasePaused && s.released() <= s.Step
}

// released is how many steps of the current revision were promoted.
func (s *RolloutState) released() int {
	if s.promote>>promoteBits != s.Revision {
		return 0
	}
	return int(s.promote & promoteAll)
}

// Split is how the load balancer shares one Deployment's traffic during
// a canary or blue-green rollout: Percent of requests to pods of Hash.
type Split struct {
	Hash    string
	Percent int
}

// ReadRollouts reads every Deployment's rollout record.
func ReadRollouts(ctx context.Context, st interface {
	Rollouts(ctx context.Context) ([]store.Rollout, error)
}) (map[string]*RolloutState, error) {
	rows, err := st.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*RolloutState, len(rows))
	for _, r := range rows {
		s, err := DecodeRollout(r)
		if err != nil {
			return nil, err
		}
		out[r.Namespace+"/"+r.Name] = s
	}
	return out, nil
}

// DecodeRollout is one rollout record's state.
func DecodeRollout(r store.Rollout) (*RolloutState, error) {
	s := &RolloutState{}
	if err := json.Unmarshal(r.State, s); err != nil {
		return nil, fmt.Errorf("decode rollout %s/%s from the state file: %w", r.Namespace, r.Name, err)
	}
	s.promote = r.Promote
	return s, nil
}

// rolling is one Deployment's rollout in one pass.
type rolling struct {
	key   string
	d     *desired
	state *RolloutState
	saved []byte // as read, to save only changes
	// split, when set, is the traffic split for the load balancer.
	split *Split
	// requeue is when a timed step ends.
	requeue time.Duration
	// fail, when set, is why the new revision is given up this pass.
	fail string
}

// progress advances d's rollout by what obs shows, and shapes its
// workload for the planner: a canary or blue-green rollout keeps the
// stable set beside the new pods. It changes nothing on the machines.
func (r *Reconciler) progress(ro *rolling, obs Observed, now time.Time) {
	st, d := ro.state, ro.d
	w := &d.workload
	// Pods by template: all, and ready.
	count, ready := map[string]int{}, map[string]int{}
	total := 0
	for _, p := range obs.Pods {
		if p.Namespace != w.Namespace || p.Owner != w.Name || p.Status == Unknown {
			continue
		}
		total++
		count[p.SpecHash]++
		if p.Ready && p.Status == Running {
			ready[p.SpecHash]++
		}
	}
	complete := func(hash string) bool {
		return total == w.Replicas && count[hash] == total && ready[hash] == total
	}
	if st.Revision != w.Revision || st.Hash != w.SpecHash {
		wasStaged := st.Strategy == spec.Canary || st.Strategy == spec.BlueGreen
		if st.Hash != "" && st.Phase != PhaseComplete && (complete(st.Hash) || !wasStaged && ready[st.Hash] >= w.Replicas && w.Replicas > 0) {
			// The previous rollout finished, unseen until now (for a
			// rolling update, its pods all ready while the last old ones
			// drain; a staged one's ready new set may be an unpromoted
			// preview).
			st.StableRevision, st.StableHash = st.Revision, st.Hash
		}
		failed, reason, to := st.FailedRevision, st.FailedReason, st.RolledBackTo
		if st.Revision != w.Revision {
			failed, reason, to = 0, "", 0 // a new revision clears an old failure
		}
		*st = RolloutState{Revision: w.Revision, Hash: w.SpecHash, Strategy: d.deploy.Strategy.Type, Phase: PhaseProgressing,
			Since: now, StepSince: now, StableRevision: st.StableRevision, StableHash: st.StableHash,
			FailedRevision: failed, FailedReason: reason, RolledBackTo: to, promote: st.promote}
	}
	st.Strategy = d.deploy.Strategy.Type

	newReady, newCrashing := ready[w.SpecHash], 0
	for _, p := range obs.Pods {
		if p.Namespace == w.Namespace && p.Owner == w.Name && p.Status != Unknown && p.SpecHash == w.SpecHash {
			for _, c := range p.Containers {
				if c.Restarts+c.Carried >= crashLoopRestarts { // the engine's restarts and fleet's
					newCrashing++
					break
				}
			}
		}
	}
	if complete(w.SpecHash) {
		st.Phase, st.Message, st.Split, st.Weight = PhaseComplete, "", false, 0
		st.StableRevision, st.StableHash = st.Revision, st.Hash
		return
	}
	if st.Phase == PhaseComplete {
		// Complete, then a pod went missing or unready: healing is not
		// a rollout.
		return
	}
	if d.deploy.Paused {
		st.Message = "paused: fleet rollout resume deploy/" + w.Name
		return
	}
	if st.Phase == PhaseFailed {
		// Nothing to go back to: no more replacing, until a change.
		if st.Held {
			w.Stable = &planner.Stable{SpecHash: st.StableHash, Revision: st.StableRevision}
			w.NewReplicas = 0
		} else {
			w.Paused = true
		}
		return
	}
	if newCrashing > 0 && st.StableHash != "" && st.StableHash != st.Hash {
		ro.fail = fmt.Sprintf("%d new pod(s) crash-looping (restarted %d times or more)", newCrashing, crashLoopRestarts)
		return
	}
	staged := (st.Strategy == spec.Canary || st.Strategy == spec.BlueGreen) && st.StableHash != "" && st.StableHash != st.Hash
	if !staged {
		// Going back to the stable template (an undo, or a failed canary
		// rolled back): its pods take all traffic at once while the
		// others go.
		st.Split, st.Weight = false, 0
		if (st.Strategy == spec.Canary || st.Strategy == spec.BlueGreen) && st.StableHash == st.Hash && newReady > 0 && total > newReady {
			st.Split, st.Weight = true, 100
		}
		return
	}
	deadline := time.Duration(d.deploy.ProgressDeadlineSeconds) * time.Second
	stage := func(newReplicas int) {
		w.Stable = &planner.Stable{SpecHash: st.StableHash, Revision: st.StableRevision}
		w.NewReplicas = newReplicas
		if newReady < newReplicas && deadline > 0 && now.Sub(st.StepSince) > deadline {
			ro.fail = fmt.Sprintf("%d of %d new pods ready after progressDeadlineSeconds (%s)", newReady, newReplicas, deadline)
		}
	}
	advance := func() { st.Step, st.StepSince, st.Phase = st.Step+1, now, PhaseProgressing }
	R := w.Replicas
	st.Split, st.Phase = true, PhaseProgressing
	switch st.Strategy {
	case spec.Canary:
		steps := d.deploy.Strategy.Canary.Steps
		for range len(steps) + 2 {
			if st.Step >= len(steps) {
				st.Weight = 100
				if st.Step > len(steps) || newReady >= R {
					// Every step done and the new set complete: the old
					// set goes, the new one taking all traffic meanwhile.
					st.Step, st.Message = len(steps)+1, fmt.Sprintf("canary promoted: %d old pods going", total-newReady)
					return
				}
				stage(R)
				st.Message = fmt.Sprintf("canary at 100%%: %d of %d new pods ready", newReady, R)
				return
			}
			s := steps[st.Step]
			if s.SetWeight != nil {
				st.Weight = *s.SetWeight
				need := canaryPods(st.Weight, R)
				if newReady >= need {
					advance()
					continue
				}
				stage(need)
				st.Message = fmt.Sprintf("canary at %d%% (step %d of %d): %d of %d new pods ready", st.Weight, st.Step+1, len(steps), newReady, need)
				return
			}
			stage(canaryPods(st.Weight, R))
			if s.Pause.Seconds > 0 {
				left := st.StepSince.Add(time.Duration(s.Pause.Seconds) * time.Second).Sub(now)
				if left <= 0 || st.released() > st.Step {
					advance()
					continue
				}
				ro.requeue = left
				st.Message = fmt.Sprintf("canary at %d%% (step %d of %d): paused for %s more", st.Weight, st.Step+1, len(steps), left.Round(time.Second))
				return
			}
			if st.released() > st.Step {
				advance()
				continue
			}
			st.Phase = PhasePaused
			st.Message = fmt.Sprintf("canary at %d%% (step %d of %d): paused until fleet rollout promote deploy/%s", st.Weight, st.Step+1, len(steps), w.Name)
			return
		}
	case spec.BlueGreen:
		bg := d.deploy.Strategy.BlueGreen
		for range 3 {
			switch st.Step {
			case 0:
				st.Weight = 0
				if newReady >= R {
					if bg.AutoPromotion || st.released() >= 1 {
						advance()
						continue
					}
					stage(R)
					st.Phase = PhasePaused
					st.Message = fmt.Sprintf("new set of %d ready, getting no traffic: fleet rollout promote deploy/%s switches to it", R, w.Name)
					return
				}
				stage(R)
				st.Message = fmt.Sprintf("bringing up the new set: %d of %d ready", newReady, R)
				return
			case 1:
				st.Weight = 100
				left := st.StepSince.Add(time.Duration(bg.ScaleDownDelaySeconds) * time.Second).Sub(now)
				if left <= 0 {
					advance()
					continue
				}
				w.Stable = &planner.Stable{SpecHash: st.StableHash, Revision: st.StableRevision}
				w.NewReplicas = R
				ro.requeue = left
				st.Message = fmt.Sprintf("switched to the new set; the old one stays %s more (fleet rollout undo switches back at once)", left.Round(time.Second))
				return
			default:
				st.Weight = 100
				st.Message = fmt.Sprintf("switched; %d old pods going", total-newReady)
				return
			}
		}
	}
}

// crashLoopRestarts is how many restarts make a new pod crash-looping: the
// rollout is given up.
const crashLoopRestarts = 3

// canaryPods is how many pods a canary at weight percent of replicas runs:
// at least one.
func canaryPods(weight, replicas int) int {
	return max(1, (weight*replicas+99)/100)
}

// rollBack gives up the new revision of ro's Deployment: its template goes
// back to the last fully available revision's, recorded as a new revision
// with the reason as change cause, or, without one, the rollout is marked
// Failed. Events say which.
func (r *Reconciler) rollBack(ctx context.Context, ro *rolling, reason string) error {
	st, w := ro.state, &ro.d.workload
	now := r.now()
	failedRev := st.Revision
	ev := func(typ, why, msg string) {
		r.Store.AddEvents(ctx, store.Event{At: now, Type: typ, Reason: why, Namespace: w.Namespace, Kind: "Deployment", Name: w.Name, Message: msg})
	}
	if st.StableRevision == 0 || st.StableHash == st.Hash {
		st.Phase, st.Message, st.Split = PhaseFailed, "revision "+fmt.Sprint(failedRev)+" failed: "+reason+"; no earlier revision was fully available to go back to", false
		ev("Warning", "RolloutFailed", st.Message)
		r.log().Warn("rollout failed", "deployment", ro.key, "revision", failedRev, "reason", reason)
		return nil
	}
	revs, err := r.Store.Revisions(ctx, "Deployment", w.Namespace, w.Name)
	if err != nil {
		return err
	}
	var stable *spec.Deployment
	for _, rv := range revs {
		if rv.Revision == st.StableRevision {
			stable = &spec.Deployment{}
			if err := json.Unmarshal(rv.Spec, stable); err != nil {
				return fmt.Errorf("decode revision %d of deployment %s: %w", rv.Revision, ro.key, err)
			}
		}
	}
	if stable == nil {
		st.Phase, st.Message = PhaseFailed, fmt.Sprintf("revision %d failed: %s; revision %d to go back to is no longer kept", failedRev, reason, st.StableRevision)
		ev("Warning", "RolloutFailed", st.Message)
		return nil
	}
	if stable.PodSpecHash() == ro.d.deploy.PodSpecHash() {
		// The template is the stable one: a consumed ConfigMap or Secret
		// (or a node port) changed, which fleet cannot take back. The
		// pods of before stay, the new ones go, until it changes again.
		st.Phase, st.Held, st.Split, st.Weight = PhaseFailed, true, false, 0
		st.Message = fmt.Sprintf("the new pods failed: %s; what changed is not the template but a ConfigMap or Secret they consume (or their node ports), "+
			"which fleet cannot roll back: the pods of before are kept; fix it and apply it again", reason)
		ev("Warning", "RolloutFailed", st.Message)
		r.log().Warn("rollout failed; held on the pods of before", "deployment", ro.key, "reason", reason)
		return nil
	}
	cause := fmt.Sprintf("automatic rollback: revision %d %s", failedRev, reason)
	applied, err := r.Store.Change(ctx, "Deployment", w.Namespace, w.Name, now, func(cur []byte) (store.Write, error) {
		var d spec.Deployment
		if err := json.Unmarshal(cur, &d); err != nil {
			return store.Write{}, err
		}
		if d.PodSpecHash() != ro.d.deploy.PodSpecHash() {
			return store.Write{}, fmt.Errorf("deployment %s changed during the rollout; not rolled back", ro.key)
		}
		d.Template = stable.Template
		b, err := json.Marshal(&d)
		return store.Write{Spec: b, TemplateHash: d.PodSpecHash(), ChangeCause: cause}, err
	})
	if err != nil {
		return fmt.Errorf("roll back deployment %s: %w", ro.key, err)
	}
	ev("Warning", "RolloutFailed", fmt.Sprintf("revision %d failed: %s", failedRev, reason))
	ev("Normal", "RolledBack", fmt.Sprintf("rolled back to the template of revision %d (now revision %d)", st.StableRevision, applied.Revision))
	r.log().Warn("rollout failed; rolled back", "deployment", ro.key, "revision", failedRev, "reason", reason,
		"to", st.StableRevision, "now", applied.Revision)
	*st = RolloutState{Revision: applied.Revision, Hash: st.StableHash, Strategy: st.Strategy, Phase: PhaseProgressing, Since: now, StepSince: now,
		StableRevision: st.StableRevision, StableHash: st.StableHash, FailedRevision: failedRev, FailedReason: reason, RolledBackTo: st.StableRevision,
		Message: fmt.Sprintf("rolling back to revision %d's template", st.StableRevision), promote: st.promote}
	return nil
}

// rolledBack is what a pass says of a rollout of key it gave up for why.
func (st *RolloutState) rolledBack(key, why string) string {
	if st.Held {
		return fmt.Sprintf("%s: %s; held on the pods of before (what changed is not the template)", key, why)
	}
	return fmt.Sprintf("%s: revision %d %s", key, st.FailedRevision, why)
}

// saveRollouts records the states that changed.
func (r *Reconciler) saveRollouts(ctx context.Context, rs []*rolling) error {
	for _, ro := range rs {
		b, err := json.Marshal(ro.state)
		if err != nil {
			return err
		}
		if string(b) == string(ro.saved) {
			continue
		}
		ns, name := ro.d.workload.Namespace, ro.d.workload.Name
		if err := r.Store.SaveRolloutState(ctx, ns, name, b, r.now()); err != nil {
			return err
		}
		ro.saved = b
	}
	return nil
}

// verdict is why stats break canary analysis a ("" when they do not, or
// there are too few answers to say).
func verdict(a *spec.CanaryAnalysis, stats CanaryStats) string {
	if stats.Requests == 0 || stats.Requests < uint64(a.MinRequests) {
		return ""
	}
	rate := 100 * float64(stats.Errors) / float64(stats.Requests)
	switch {
	case a.MaxErrorPercent > 0 && rate > a.MaxErrorPercent:
		return fmt.Sprintf("canary error rate %.1f%% (%d of %d requests) is above maxErrorRate %g%%", rate, stats.Errors, stats.Requests, a.MaxErrorPercent)
	case a.MaxP99Millis > 0 && stats.P99 > time.Duration(a.MaxP99Millis)*time.Millisecond:
		return fmt.Sprintf("canary p99 latency %s over %d requests is above maxP99 %dms", stats.P99.Round(time.Millisecond), stats.Requests, a.MaxP99Millis)
	}
	return ""
}

// abort rolls back deployment key's canary of revision rev for reason,
// unless the state file has moved on from that revision meanwhile.
func (r *Reconciler) abort(ctx context.Context, key string, rev int64, reason string) (bool, error) {
	want, _, _, err := r.readDesired(ctx)
	if err != nil {
		return false, err
	}
	states, err := ReadRollouts(ctx, r.Store)
	if err != nil {
		return false, err
	}
	st := states[key]
	for i := range want {
		d := &want[i]
		if d.workload.Key() != key || st == nil || st.Revision != rev || d.workload.Revision != rev {
			continue
		}
		saved, _ := json.Marshal(st)
		ro := &rolling{key: key, d: d, state: st, saved: saved}
		if err := r.rollBack(ctx, ro, reason); err != nil {
			return false, err
		}
		return true, r.saveRollouts(ctx, []*rolling{ro})
	}
	return false, nil
}
