// Package planner decides what should change: desired workloads × observed
// machines and pods → a plan. It is a pure function: no I/O, no clock (now
// is passed in), no logging; explanations are returned as data.
package planner

import (
	"fmt"
	"strings"
	"time"
)

// Node is one machine as the planner sees it.
type Node struct {
	Name string
	// Ready is false for a machine that cannot be reached; nothing is
	// placed on it and its pods are not counted as running.
	Ready bool
	// NotReadyReason says why, for explanations ("unreachable").
	NotReadyReason string
	// Unschedulable machines take no new pods, but the pods on them still
	// count: a machine whose containers could not be listed this pass,
	// although it answers, keeps its last-seen pods until it is declared
	// NotReady.
	Unschedulable bool
	// UnschedulableReason says why.
	UnschedulableReason string
	// Capacity: what the machine offers (Docker's NCPU×1000 / MemTotal, or
	// the inventory's override).
	MilliCPU int64
	Memory   int64
	Labels   map[string]string
}

// Workload is one Deployment's desired state, reduced to what placement
// and diffing need.
type Workload struct {
	Namespace string
	Name      string
	Replicas  int
	// SpecHash identifies the pod template; pods with another hash are
	// out of date and get replaced.
	SpecHash string
	// Revision is the template's revision number, carried onto new pods.
	Revision int64
	// Requests of one pod (sum over its containers).
	MilliCPU int64
	Memory   int64
	// NodeSelector: a node must carry every label to be eligible.
	NodeSelector map[string]string
	// HostPorts are the machine ports ("30080/tcp") a pod binds: a
	// machine where another pod holds one of them cannot take it.
	HostPorts []string
	// Paused holds the rollout: pods of other templates are not
	// replaced (missing replicas still start, with this template).
	Paused bool
	// Recreate stops every pod of another template before any pod of
	// this one starts (strategy Recreate).
	Recreate bool
	// StopFirstOK allows a replacement that fits nowhere while its
	// predecessor runs (its host ports, or a full machine) to stop the
	// predecessor first: the rollout may make replicas unavailable.
	StopFirstOK bool
	// Stable, when set, is a canary or blue-green rollout in progress:
	// Replicas pods of the Stable template stay (and are replaced with it
	// if lost), beside NewReplicas pods of this template; pods of any
	// other template go.
	Stable      *Stable
	NewReplicas int
	// Pin, when set, is the only machine the pods may run on (where the
	// data of their volume claims is), and PinReason says why.
	Pin, PinReason string
	// PinConflict, when set, is why no machine can take the pods (their
	// volume claims are bound to two machines).
	PinConflict string
	// Together puts every pod on one machine (their volume claims are
	// not bound yet: the first placement decides).
	Together bool
}

// Stable is the template a staged rollout keeps running beside the new one.
type Stable struct {
	SpecHash string
	Revision int64
}

// Key is namespace/name.
func (w Workload) Key() string { return w.Namespace + "/" + w.Name }

// Pod is one replica observed on a machine (from container labels).
type Pod struct {
	Namespace string
	Owner     string // workload name
	Name      string
	Node      string
	SpecHash  string
	Revision  int64
	Created   time.Time
	// Running is true when the pod's containers run; a pod that exited is
	// replaced in place by the reconciler's restart logic, and for
	// placement it still holds its slot.
	Running bool
	// Ready is false for a pod that runs but fails its readiness, or does
	// not run: such pods are the first to go when there are too many.
	Ready    bool
	MilliCPU int64
	Memory   int64
	// HostPorts are the machine ports the pod holds.
	HostPorts []string
	// Stale marks a pod whose machine was unreachable after it started:
	// its replacement may run elsewhere, so it is the first to stop when
	// there are too many (fencing).
	Stale bool
}

// State is everything Plan reads.
type State struct {
	Nodes     []Node
	Workloads []Workload
	Pods      []Pod
	// Prune removes pods whose workload is not desired. Pods of a
	// namespace/name not in Workloads are otherwise left alone.
	Prune bool
}

// Step is one action of a plan. The set is closed: Run, Stop, Replace.
type Step interface {
	fmt.Stringer
	step()
}

// Run starts a new pod on a node.
type Run struct {
	Workload string // namespace/name
	Pod      string
	Node     string
	SpecHash string
	Revision int64
	Reason   string
}

// Stop stops and removes a pod.
type Stop struct {
	Workload string
	Pod      string
	Node     string
	Reason   string
}

// Replace starts New, waits until it is running, then stops Old
// (start-first, so capacity never dips).
type Replace struct {
	Old Stop
	New Run
	// StopFirst: the new pod fits only once the old one is gone (host
	// ports, or capacity), so the old one stops first.
	StopFirst bool
}

// WorkloadOf is the namespace/name of the workload step acts for.
func WorkloadOf(step Step) string {
	switch s := step.(type) {
	case Run:
		return s.Workload
	case Stop:
		return s.Workload
	case Replace:
		return s.New.Workload
	}
	return ""
}

func (Run) step()     {}
func (Stop) step()    {}
func (Replace) step() {}

func (r Run) String() string {
	return fmt.Sprintf("run %s on %s (%s)", r.Pod, r.Node, r.Reason)
}
func (s Stop) String() string {
	return fmt.Sprintf("stop %s on %s (%s)", s.Pod, s.Node, s.Reason)
}
func (r Replace) String() string {
	order := ""
	if r.StopFirst {
		order = ", stop first"
	}
	return fmt.Sprintf("replace %s on %s with %s on %s (%s%s)", r.Old.Pod, r.Old.Node, r.New.Pod, r.New.Node, r.New.Reason, order)
}

// Unplaceable is a replica that no machine can take, with the reason
// each machine was rejected, summarised.
type Unplaceable struct {
	Workload string
	Count    int
	// Reason reads like "2 of 3 machines lack 512Mi memory; 1 is NotReady (unreachable)".
	Reason string
}

// Plan is what to do, in order, plus what cannot be done.
type Plan struct {
	Steps       []Step
	Unplaceable []Unplaceable
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Steps) == 0 }

// String reads "cannot place 2 replicas of default/web: <reason>".
func (u Unplaceable) String() string {
	replicas := "replicas"
	if u.Count == 1 {
		replicas = "replica"
	}
	return fmt.Sprintf("cannot place %d %s of %s: %s", u.Count, replicas, u.Workload, u.Reason)
}

// String is the plan as `fleet plan` prints it: one step a line, then what
// cannot be placed, or "no changes".
func (p Plan) String() string {
	if p.Empty() && len(p.Unplaceable) == 0 {
		return "no changes\n"
	}
	var b strings.Builder
	for _, s := range p.Steps {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	for _, u := range p.Unplaceable {
		b.WriteString(u.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Summary counts the plan: "run 3, replace 2, stop 1, 1 unplaceable".
func (p Plan) Summary() string {
	var run, replace, stop, unplaceable int
	for _, s := range p.Steps {
		switch s.(type) {
		case Run:
			run++
		case Replace:
			replace++
		case Stop:
			stop++
		}
	}
	for _, u := range p.Unplaceable {
		unplaceable += u.Count
	}
	var parts []string
	for _, c := range []struct {
		n    int
		verb string
	}{{run, "run %d"}, {replace, "replace %d"}, {stop, "stop %d"}, {unplaceable, "%d unplaceable"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf(c.verb, c.n))
		}
	}
	if len(parts) == 0 {
		return "no changes"
	}
	return strings.Join(parts, ", ")
}
