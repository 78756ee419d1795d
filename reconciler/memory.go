package reconciler

import (
	"sync"
	"time"
)

// memory is what a Reconciler keeps between passes about each machine:
// the pods last listed there (shown as Unknown, and kept counted or
// counted lost, while the machine cannot be listed), and since when a
// machine that could not be listed can be again (its older pods may have
// been replaced elsewhere meanwhile: they are stale).
type memory struct {
	mu        sync.Mutex
	seen      map[string][]PodStatus
	failing   map[string]bool
	recovered map[string]time.Time
}

// seen is the pods last listed on machine, or started there since, marked
// Unknown.
func (r *Reconciler) seen(machine string) []PodStatus {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PodStatus, 0, len(m.seen[machine]))
	for _, p := range m.seen[machine] {
		p.Status, p.Ready = Unknown, false
		out = append(out, p)
	}
	return out
}

// listed records one listing of machine, begun at began.
func (r *Reconciler) listed(machine string, began time.Time, pods []PodStatus, err error) {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen, m.failing, m.recovered = map[string][]PodStatus{}, map[string]bool{}, map[string]time.Time{}
	}
	if err != nil {
		m.failing[machine] = true
		return
	}
	if m.failing[machine] {
		m.failing[machine] = false
		m.recovered[machine] = began
	}
	m.seen[machine] = pods
}

// remember records a pod just started, so that if its machine is cut off
// before the next listing, the pod is still known (as Unknown) and its
// name is not handed out again.
func (r *Reconciler) remember(p PodStatus) {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen, m.failing, m.recovered = map[string][]PodStatus{}, map[string]bool{}, map[string]time.Time{}
	}
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
