package reconciler

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/fleetdev/fleet/store"
)

// memory is what a Reconciler keeps between passes about each machine:
// the pods last listed there (shown as Unknown, and kept counted or
// counted lost, while the machine cannot be listed), since when a machine
// that could not be listed can be again (its older pods may have been
// replaced elsewhere meanwhile: they are stale), and what only a
// controller knows about each container (probe verdicts, its own restarts
// and back-off). It starts from what the state file recorded, and is
// written back there when it changes, so any process sees it.
type memory struct {
	mu         sync.Mutex
	loaded     bool
	seen       map[string][]PodStatus
	saved      map[string]string // machine → the JSON last written
	failing    map[string]bool
	recovered  map[string]time.Time
	containers map[string]*containerMemo // by container ID
}

// containerMemo is what a listing cannot tell about a container.
type containerMemo struct {
	Carried, BackoffStep        int
	Probed, Started, ProbeReady bool
	ProbeMessage                string
	// Run is the start time of the run the verdicts are about: a
	// container Docker restarted is probed afresh.
	Run time.Time
	// noted is the back-off step last reported by an event.
	noted int
}

// load reads the state file's record once; the caller holds m.mu.
func (r *Reconciler) load(ctx context.Context) {
	m := &r.mem
	if m.loaded {
		return
	}
	m.loaded = true
	m.seen, m.saved, m.failing = map[string][]PodStatus{}, map[string]string{}, map[string]bool{}
	m.recovered, m.containers = map[string]time.Time{}, map[string]*containerMemo{}
	if r.Store == nil {
		return
	}
	recs, err := r.Store.AllMachinePods(ctx)
	if err != nil {
		r.log().Warn("cannot read the pods last seen from the state file", "err", err)
		return
	}
	for _, rec := range recs {
		var pods []PodStatus
		if json.Unmarshal(rec.Pods, &pods) != nil {
			continue
		}
		m.seen[rec.Machine] = pods
		d, _ := json.Marshal(digest(pods))
		m.saved[rec.Machine] = string(d)
		for _, p := range pods {
			for _, c := range p.Containers {
				m.containers[c.ID] = &containerMemo{Carried: c.Carried, BackoffStep: c.BackoffStep,
					Probed: c.Probed, Started: c.Started, ProbeReady: c.ProbeReady, ProbeMessage: c.ProbeMessage, Run: c.ProbedRun}
			}
		}
	}
}

// seen is the pods last listed on machine, or started there since, marked
// Unknown.
func (r *Reconciler) seen(ctx context.Context, machine string) []PodStatus {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	r.load(ctx)
	out := make([]PodStatus, 0, len(m.seen[machine]))
	for _, p := range m.seen[machine] {
		p.Status, p.Ready, p.Reason = Unknown, false, "NodeUnreachable"
		p.Message = "its machine cannot be reached; last seen " + p.LastSeen.Local().Format(time.DateTime)
		out = append(out, p)
	}
	return out
}

// recall fills in what this process (or the state file) remembers about
// a container.
func (r *Reconciler) recall(ctx context.Context, c *ContainerStatus) {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	r.load(ctx)
	if cm := m.containers[c.ID]; cm != nil {
		c.Carried, c.BackoffStep = cm.Carried, cm.BackoffStep
		if cm.Run.Equal(c.StartedAt) {
			c.Probed, c.Started, c.ProbeReady, c.ProbeMessage, c.ProbedRun = cm.Probed, cm.Started, cm.ProbeReady, cm.ProbeMessage, cm.Run
		}
	}
}

// memo is the record of container id, created if missing; the caller
// holds m.mu.
func (m *memory) memo(id string) *containerMemo {
	cm := m.containers[id]
	if cm == nil {
		cm = &containerMemo{}
		m.containers[id] = cm
	}
	return cm
}

// restarted records that fleet started a stopped container again: the
// restarts Docker had counted carry over (a start resets its count), and
// the back-off steps up.
func (r *Reconciler) restarted(ctx context.Context, c ContainerStatus) {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	r.load(ctx)
	cm := m.memo(c.ID)
	cm.Carried = c.Carried + c.Restarts + 1
	cm.BackoffStep = c.BackoffStep + 1
	if !c.StartedAt.IsZero() && c.FinishedAt.Sub(c.StartedAt) >= backoffReset {
		cm.BackoffStep = 1
	}
	// A restarted container starts over: startup probe first.
	cm.Probed, cm.Started, cm.ProbeReady, cm.ProbeMessage = false, false, false, ""
}

// noteBackoff reports whether the wait at c's back-off step is news (not
// yet told in an event).
func (r *Reconciler) noteBackoff(c ContainerStatus) bool {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	cm := m.memo(c.ID)
	if cm.noted == c.BackoffStep {
		return false
	}
	cm.noted = c.BackoffStep
	return true
}

// probed records a controller's probe verdicts for the run of a
// container that started at run; it reports whether they changed.
func (r *Reconciler) probed(id string, run time.Time, started, ready bool, msg string) bool {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	r.load(context.Background())
	cm := m.memo(id)
	changed := !cm.Probed || !cm.Run.Equal(run) || cm.Started != started || cm.ProbeReady != ready
	cm.Probed, cm.Run, cm.Started, cm.ProbeReady, cm.ProbeMessage = true, run, started, ready, msg
	return changed
}

// listed records one listing of machine, begun at began, and, with
// record, writes it to the state file when it differs from what was last
// written there. A failed listing of a machine planned as lost marks it:
// once it lists again, its older pods are stale.
func (r *Reconciler) listed(ctx context.Context, machine string, began time.Time, pods []PodStatus, err error, record, lost bool) {
	m := &r.mem
	m.mu.Lock()
	r.load(ctx)
	if err != nil {
		if lost {
			m.failing[machine] = true
		}
		m.mu.Unlock()
		return
	}
	if m.failing[machine] {
		m.failing[machine] = false
		m.recovered[machine] = began
	}
	// Forget the containers of this machine that are gone from it (not
	// those of others, nor pods started but not listed yet).
	now := map[string]bool{}
	for _, p := range pods {
		for _, c := range p.Containers {
			now[c.ID] = true
		}
	}
	for _, p := range m.seen[machine] {
		for _, c := range p.Containers {
			if !now[c.ID] {
				delete(m.containers, c.ID)
			}
		}
	}
	m.seen[machine] = pods
	b, _ := json.Marshal(digest(pods))
	changed := m.saved[machine] != string(b)
	m.mu.Unlock()
	if !changed || !record || r.Store == nil {
		return
	}
	full, _ := json.Marshal(pods)
	if err := r.Store.SaveMachinePods(ctx, store.MachinePods{Machine: machine, Pods: full, ObservedAt: began}); err != nil {
		r.log().Warn("cannot record the pods listed", "machine", machine, "err", err)
		return
	}
	m.mu.Lock()
	m.saved[machine] = string(b)
	m.mu.Unlock()
}

// digest is pods without what changes on every listing (Docker's "Up 3
// minutes", the time seen), to tell whether they changed.
func digest(pods []PodStatus) []PodStatus {
	out := make([]PodStatus, len(pods))
	for i, p := range pods {
		p.LastSeen = time.Time{}
		p.Containers = slices.Clone(p.Containers)
		for j := range p.Containers {
			p.Containers[j].Status = ""
		}
		out[i] = p
	}
	return out
}

// remember records a pod just started, so that if its machine is cut off
// before the next listing, the pod is still known (as Unknown) and its
// name is not handed out again.
func (r *Reconciler) remember(ctx context.Context, p PodStatus) {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	r.load(ctx)
	m.seen[p.Node] = append(m.seen[p.Node], p)
}

// staleBefore is the moment a machine was last reachable again after it
// was cut off (declared NotReady by a Controller, or not listable by a
// pass): pods there created before it may have been replaced elsewhere.
func (r *Reconciler) staleBefore(machine string) time.Time {
	m := &r.mem
	m.mu.Lock()
	t := m.recovered[machine]
	m.mu.Unlock()
	if r.returnedAt != nil {
		if c := r.returnedAt(machine); c.After(t) {
			t = c
		}
	}
	return t
}
