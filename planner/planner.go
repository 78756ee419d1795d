package planner

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidState is wrapped by every error Compute returns: the input
// contradicts itself, and planning again will not help until it changes.
var ErrInvalidState = errors.New("planner: invalid state")

// Compute is the pure planner: no I/O, no clock, no logging. It diffs the
// desired workloads against the observed pods and returns the steps that
// converge them, in a deterministic order, with a reason on every step.
//
// now is part of the contract for time-based decisions (backoff, minimum
// ready time); the current rules use none.
//
// Capacity is reckoned for the state after the plan: pods the plan stops
// (surplus and pruned) free their requests for every placement, wherever
// their Stop appears in the step order, and a Replace holds both the old
// and the new pod's requests (start-first).
func Compute(s State, now time.Time) (Plan, error) {
	pods, err := validate(s)
	if err != nil {
		return Plan{}, err
	}
	sched := newScheduler(s.Nodes)

	// Diff: which pods count, which stop, what is missing, what is stale.
	workloads := make([]*diff, 0, len(s.Workloads))
	byKey := make(map[string]*diff, len(s.Workloads))
	for i := range s.Workloads {
		w := &s.Workloads[i]
		d := &diff{w: w, key: w.Key()}
		if w.Stable != nil {
			// A staged rollout is two diffs of one workload: the stable
			// template at full strength, and the new one at NewReplicas.
			sw := *w
			sw.SpecHash, sw.Revision, sw.Paused, sw.Recreate, sw.Stable = w.Stable.SpecHash, w.Stable.Revision, false, false, nil
			nw := *w
			nw.Replicas, nw.Stable = w.NewReplicas, nil
			d.w = &nw
			d.stable = &diff{w: &sw, key: d.key}
			workloads = append(workloads, d.stable)
		}
		workloads = append(workloads, d)
		byKey[d.key] = d
	}
	slices.SortStableFunc(workloads, func(a, b *diff) int { return strings.Compare(a.key, b.key) })

	stopped := make([]bool, len(pods))
	var prune []int
	for i := range pods {
		p := &pods[i]
		_, ready := sched.ready(p.Node)
		d := byKey[p.Namespace+"/"+p.Owner]
		if d != nil && d.stable != nil && p.SpecHash != d.w.SpecHash {
			d = d.stable
		}
		switch {
		case d == nil:
			// Unreachable pods cannot be stopped; they are retried when
			// their machine returns.
			if s.Prune && ready {
				prune = append(prune, i)
				stopped[i] = true
			}
		case ready:
			d.current = append(d.current, i)
		default:
			d.lost = append(d.lost, i)
		}
	}
	for _, d := range workloads {
		d.scaleDown(pods, stopped)
	}

	// Capacity in use by every pod that stays on a Ready machine.
	for i := range pods {
		if n, ready := sched.ready(pods[i].Node); ready && !stopped[i] {
			sched.use(n, pods[i].MilliCPU, pods[i].Memory)
			sched.hold(n, pods[i].HostPorts)
		}
	}

	names := newNamer(pods)
	var plan Plan
	for _, d := range workloads {
		plan.Steps = append(plan.Steps, d.stops...)
		d.placeAll(pods, sched, names, &plan)
	}

	slices.SortFunc(prune, func(a, b int) int {
		return cmp.Or(
			strings.Compare(pods[a].Namespace, pods[b].Namespace),
			strings.Compare(pods[a].Owner, pods[b].Owner),
			strings.Compare(pods[a].Name, pods[b].Name))
	})
	for _, i := range prune {
		p := &pods[i]
		plan.Steps = append(plan.Steps, Stop{Workload: p.Namespace + "/" + p.Owner, Pod: p.Name, Node: p.Node, Reason: "not desired"})
	}
	return plan, nil
}

// diff is one workload's desired state against its observed pods. Pods
// are indices into the validated pod list.
type diff struct {
	w       *Workload
	key     string
	current []int // on Ready machines
	lost    []int // on NotReady or unknown machines
	kept    []int // current minus surplus stops
	stops   []Step
	// stable is the other half of a staged rollout (see Workload.Stable).
	stable *diff
}

func (d *diff) outOfDate(p *Pod) bool { return p.SpecHash != d.w.SpecHash }

// stopRank orders surplus pods for stopping: stale first (their machine
// was cut off and they were replaced elsewhere: fencing), then out of
// date (never the new pods of a change in progress, ready or not yet),
// then, among pods of one template, those not ready (stopping them costs
// no traffic).
func (d *diff) stopRank(p *Pod) int {
	r := 0
	if p.Stale {
		r += 4
	}
	if d.outOfDate(p) {
		r += 2
	}
	if !p.Ready {
		r++
	}
	return r
}

// scaleDown picks the surplus pods to stop: out-of-date first, then from
// the machine holding the most pods of this workload (recounted after each
// pick, so the survivors stay spread), then newest, then name descending.
func (d *diff) scaleDown(pods []Pod, stopped []bool) {
	surplus := len(d.current) - d.w.Replicas
	if surplus <= 0 {
		d.kept = d.current
		return
	}
	// Per machine, candidates in stop order; a pick takes the best head.
	before := func(a, b int) int {
		pa, pb := &pods[a], &pods[b]
		if ra, rb := d.stopRank(pa), d.stopRank(pb); ra != rb {
			return rb - ra
		}
		return cmp.Or(pb.Created.Compare(pa.Created), strings.Compare(pb.Name, pa.Name))
	}
	groups := map[string][]int{}
	for _, i := range d.current {
		groups[pods[i].Node] = append(groups[pods[i].Node], i)
	}
	queues := make([][]int, 0, len(groups))
	for _, q := range groups {
		slices.SortFunc(q, before)
		queues = append(queues, q)
	}
	slices.SortFunc(queues, func(a, b []int) int { return strings.Compare(pods[a[0]].Node, pods[b[0]].Node) })

	reason := fmt.Sprintf("scale down %d → %d", len(d.current), d.w.Replicas)
	for range surplus {
		best := -1
		for qi, q := range queues {
			if len(q) == 0 {
				continue
			}
			if best < 0 {
				best = qi
				continue
			}
			bq := queues[best]
			if pa, pb := &pods[q[0]], &pods[bq[0]]; d.stopRank(pa) != d.stopRank(pb) {
				if d.stopRank(pa) > d.stopRank(pb) {
					best = qi
				}
				continue
			}
			if len(q) != len(bq) {
				if len(q) > len(bq) {
					best = qi
				}
				continue
			}
			if before(q[0], bq[0]) < 0 {
				best = qi
			}
		}
		i := queues[best][0]
		queues[best] = queues[best][1:]
		stopped[i] = true
		why := reason
		if pods[i].Stale {
			why = reason + "; its machine was unreachable and it was replaced elsewhere"
		}
		d.stops = append(d.stops, Stop{Workload: d.key, Pod: pods[i].Name, Node: pods[i].Node, Reason: why})
	}
	for _, i := range d.current {
		if !stopped[i] {
			d.kept = append(d.kept, i)
		}
	}
}

// placeAll appends the workload's Runs (missing replicas) and then its
// Replaces (out-of-date pods), and its Unplaceable if any.
func (d *diff) placeAll(pods []Pod, sched *scheduler, names *namer, plan *Plan) {
	w := d.w
	clear(sched.count)
	for _, i := range d.kept {
		n, _ := sched.ready(pods[i].Node)
		sched.count[n]++
	}
	eligible := sched.eligible(w)
	unplaced := 0
	var why, pinned string // pinned: why the pinned machine cannot take pods
	fail := func() {
		if unplaced == 0 {
			why = cmp.Or(pinned, summarise(len(sched.nodes), sched.rejections(w)))
		}
		unplaced++
	}
	// Volume claims: the pods go where the data is, or all to one machine.
	only := func(n int) {
		if slices.Contains(eligible, n) {
			eligible = []int{n}
		} else {
			eligible = nil
		}
	}
	if w.PinConflict != "" {
		eligible, pinned = nil, w.PinConflict
	} else if w.Pin != "" {
		n, ok := sched.byName[w.Pin]
		switch {
		case !ok:
			eligible, pinned = nil, fmt.Sprintf("%s on %s, which is not in the inventory", w.PinReason, w.Pin)
		case !sched.nodes[n].Ready:
			eligible, pinned = nil, fmt.Sprintf("%s on %s, which is %s", w.PinReason, w.Pin, sched.nodeProblem(w.Pin))
		default:
			only(n)
			if len(eligible) == 0 {
				pinned = fmt.Sprintf("%s on %s, which the pod's nodeSelector excludes", w.PinReason, w.Pin)
			}
		}
	} else if w.Together && len(d.kept) > 0 {
		n, _ := sched.ready(pods[d.kept[0]].Node)
		only(n)
	}
	place := func() (int, bool) {
		n, ok := sched.place(w, eligible)
		if ok && w.Together && w.Pin == "" {
			only(n)
		}
		return n, ok
	}

	// Recreate: every pod of another template stops (the executor stops
	// before it starts), and its replacement is a plain new pod.
	recreated := 0
	if w.Recreate && !w.Paused {
		var old, kept []int
		for _, i := range d.kept {
			if d.outOfDate(&pods[i]) {
				old = append(old, i)
			} else {
				kept = append(kept, i)
			}
		}
		slices.SortFunc(old, func(a, b int) int { return strings.Compare(pods[a].Name, pods[b].Name) })
		for _, i := range old {
			p := &pods[i]
			n, _ := sched.ready(p.Node)
			sched.count[n]--
			sched.free(n, p.MilliCPU, p.Memory, p.HostPorts)
			plan.Steps = append(plan.Steps, Stop{Workload: d.key, Pod: p.Name, Node: p.Node,
				Reason: fmt.Sprintf("spec changed (revision %d → %d), strategy Recreate", p.Revision, w.Revision)})
		}
		d.kept, recreated = kept, len(old)
	}

	// Missing replicas: first those lost with their machine, then growth.
	missing := w.Replicas - len(d.kept)
	slices.SortFunc(d.lost, func(a, b int) int { return strings.Compare(pods[a].Name, pods[b].Name) })
	scaleUp := fmt.Sprintf("scale up %d → %d", len(d.kept)+len(d.lost), w.Replicas)
	if recreated > 0 {
		scaleUp = fmt.Sprintf("strategy Recreate: revision %d after its predecessors stop", w.Revision)
	}
	for k := range max(missing, 0) {
		reason := scaleUp
		if k < len(d.lost) {
			p := &pods[d.lost[k]]
			reason = fmt.Sprintf("replace %s lost with %s (%s)", p.Name, p.Node, sched.nodeProblem(p.Node))
		}
		n, ok := place()
		if !ok {
			fail()
			continue
		}
		plan.Steps = append(plan.Steps, Run{Workload: d.key, Pod: names.next(w), Node: sched.nodes[n].Name, SpecHash: w.SpecHash, Revision: w.Revision, Reason: reason})
	}

	// Out-of-date pods, start-first. The old pod no longer counts for
	// spread (it is going) but keeps its capacity until the new one runs,
	// so the new pod lands on the same machine when that is best and fits.
	var stale []int
	for _, i := range d.kept {
		if d.outOfDate(&pods[i]) && !w.Paused {
			stale = append(stale, i)
		}
	}
	slices.SortFunc(stale, func(a, b int) int { return strings.Compare(pods[a].Name, pods[b].Name) })
	for _, i := range stale {
		old := &pods[i]
		on, _ := sched.ready(old.Node)
		sched.count[on]--
		n, ok := place()
		stopFirst := false
		if !ok && w.StopFirstOK {
			// Room only where the old pod is: it goes first.
			sched.free(on, old.MilliCPU, old.Memory, old.HostPorts)
			if n, ok = place(); !ok {
				sched.use(on, old.MilliCPU, old.Memory)
				sched.hold(on, old.HostPorts)
			}
			stopFirst = ok
		}
		if !ok {
			sched.count[on]++
			fail()
			continue
		}
		reason := fmt.Sprintf("spec changed (revision %d → %d)", old.Revision, w.Revision)
		plan.Steps = append(plan.Steps, Replace{
			Old:       Stop{Workload: d.key, Pod: old.Name, Node: old.Node, Reason: reason},
			New:       Run{Workload: d.key, Pod: names.next(w), Node: sched.nodes[n].Name, SpecHash: w.SpecHash, Revision: w.Revision, Reason: reason},
			StopFirst: stopFirst,
		})
	}
	if unplaced > 0 {
		plan.Unplaceable = append(plan.Unplaceable, Unplaceable{Workload: d.key, Count: unplaced, Reason: why})
	}
}

// nodeProblem says why a pod's machine does not count: "NotReady:
// unreachable", or "not in inventory".
func (s *scheduler) nodeProblem(name string) string {
	i, ok := s.byName[name]
	switch {
	case !ok:
		return "not in inventory"
	case s.nodes[i].NotReadyReason == "":
		return "NotReady"
	default:
		return "NotReady: " + s.nodes[i].NotReadyReason
	}
}

// namer hands out pod names "<workload>-<hash[:8]>-<n>", n the smallest
// index no pod of the namespace uses, whatever its machine or state.
type namer struct {
	used map[string]struct{} // namespace + "/" + pod name
	// from remembers, per prefix, the index below which all are taken:
	// names only ever get used, so the search resumes there.
	from map[string]int
}

func newNamer(pods []Pod) *namer {
	n := &namer{used: make(map[string]struct{}, len(pods)), from: map[string]int{}}
	for i := range pods {
		n.used[pods[i].Namespace+"/"+pods[i].Name] = struct{}{}
	}
	return n
}

func (n *namer) next(w *Workload) string {
	hash := w.SpecHash
	if len(hash) > 8 {
		hash = hash[:8]
	}
	prefix := w.Namespace + "/" + w.Name + "-" + hash + "-"
	for k := n.from[prefix]; ; k++ {
		key := prefix + strconv.Itoa(k)
		if _, taken := n.used[key]; !taken {
			n.used[key] = struct{}{}
			n.from[prefix] = k + 1
			return key[len(w.Namespace)+1:]
		}
	}
}

// validate rejects contradictory input, naming the offender, and returns
// the pods with exact repeats (same pod, same machine) collapsed.
func validate(s State) ([]Pod, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidState}, args...)...))
	}
	nodes := make(map[string]bool, len(s.Nodes))
	for _, n := range s.Nodes {
		if nodes[n.Name] {
			bad("machine %q listed twice", n.Name)
		}
		nodes[n.Name] = true
	}
	keys := make(map[string]bool, len(s.Workloads))
	for _, w := range s.Workloads {
		k := w.Key()
		if keys[k] {
			bad("workload %s listed twice", k)
		}
		keys[k] = true
		if w.Replicas < 0 {
			bad("workload %s: negative replicas %d", k, w.Replicas)
		}
		if w.MilliCPU < 0 || w.Memory < 0 {
			bad("workload %s: negative resource request", k)
		}
	}
	// The same pod name on two machines happens: a machine cut off long
	// enough to have its pods replaced, whose names were then reused,
	// comes back. Both copies are real containers and are planned as
	// separate pods (steps name the machine); only exact repeats collapse.
	pods := make([]Pod, 0, len(s.Pods))
	seen := make(map[string]bool, len(s.Pods)) // namespace/name@machine
	for _, p := range s.Pods {
		k := p.Namespace + "/" + p.Name + "@" + p.Node
		if seen[k] {
			continue
		}
		seen[k] = true
		pods = append(pods, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return pods, nil
}
