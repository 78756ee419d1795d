package reconciler

import (
	"context"
	"sync"
	"time"

	"github.com/fleetdev/fleet/planner"
	"github.com/fleetdev/fleet/spec"
)

// rolls runs a Controller's rolling updates beside its passes: a roll
// waits for each new pod to be ready (up to progressDeadlineSeconds), and
// serve must meanwhile go on healing everything else. While a workload
// rolls, passes leave its pods alone; when the roll ends it wakes the
// Controller, and the next pass sees the outcome (and rolls back a
// failure).
type rolls struct {
	ctx  context.Context // serve's: a roll outlives the pass that began it
	done func()          // wakes the Controller
	wg   sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]bool    // workload key
	ended    map[string]rollEnd // workload key → how its last roll ended
}

// rollEnd is how a roll of a revision ended: why its new pods failed, or
// "" when they did not.
type rollEnd struct {
	revision int64
	failed   string
}

func newRolls(ctx context.Context, done func()) *rolls {
	return &rolls{ctx: ctx, done: done, inflight: map[string]bool{}, ended: map[string]rollEnd{}}
}

// exclude drops the steps of workloads rolling now.
func (rs *rolls) exclude(plan planner.Plan) planner.Plan {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.inflight) == 0 {
		return plan
	}
	var kept []planner.Step
	for _, st := range plan.Steps {
		if !rs.inflight[planner.WorkloadOf(st)] {
			kept = append(kept, st)
		}
	}
	plan.Steps = kept
	return plan
}

// excludeNew drops the new pods of workloads rolling now from pods.
func (rs *rolls) excludeNew(pods []PodStatus, byKey map[string]desired) []PodStatus {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	kept := pods[:0]
	for _, p := range pods {
		if key := p.Namespace + "/" + p.Owner; !rs.inflight[key] || p.SpecHash != byKey[key].workload.SpecHash {
			kept = append(kept, p)
		}
	}
	return kept
}

// failures returns why the rolls that ended since the last call failed,
// by workload, leaving out those of a revision that is no longer desired.
func (rs *rolls) failures(want []desired) map[string]string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := map[string]string{}
	for _, d := range want {
		k := d.workload.Key()
		if end, ok := rs.ended[k]; ok && end.failed != "" && d.workload.Revision == end.revision {
			out[k] = end.failed
		}
	}
	clear(rs.ended)
	return out
}

// start rolls key's replacements in the background with an executor of
// its own (its events are recorded when it ends).
func (rs *rolls) start(e *executor, key string, steps []planner.Replace, failedImage map[string]error) {
	rs.mu.Lock()
	rs.inflight[key] = true
	rs.mu.Unlock()
	child := newExecutor(e.r, e.byKey, e.templates, e.claims, e.pods)
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		ctx, cancel := context.WithTimeout(rs.ctx, rollTimeout(e.byKey[key].deploy))
		child.roll(ctx, key, steps, failedImage)
		cancel()
		ectx, ecancel := context.WithTimeout(context.WithoutCancel(rs.ctx), 10*time.Second)
		child.r.Store.AddEvents(ectx, child.events...)
		ecancel()
		for _, err := range child.errs {
			child.r.log().Warn("step failed", "err", err)
		}
		rs.mu.Lock()
		delete(rs.inflight, key)
		rs.ended[key] = rollEnd{revision: e.byKey[key].workload.Revision, failed: child.failed[key]}
		rs.mu.Unlock()
		rs.done()
	}()
}

// rollTimeout bounds one roll: every replacement could take the whole
// progress deadline, a window at a time.
func rollTimeout(d *spec.Deployment) time.Duration {
	return time.Duration(max(d.ProgressDeadlineSeconds, 60))*time.Second*time.Duration(max(d.Replicas, 1)) + opTimeout
}

// wait waits for the rolls in flight (after serve's context ended).
func (rs *rolls) wait() { rs.wg.Wait() }
