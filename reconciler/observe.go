package reconciler

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/planner"
)

// Pod phases, as `get pods` shows them.
const (
	Pending = "Pending"
	Running = "Running"
	Failed  = "Failed"
	Unknown = "Unknown"
)

// ContainerStatus is one container of an observed pod.
type ContainerStatus struct {
	Name     string `json:"name"`
	ID       string `json:"containerID"`
	Image    string `json:"image"`
	State    string `json:"state"` // Docker's: created, running, exited, …
	Status   string `json:"status"`
	Restarts int    `json:"restarts"`
}

// PodStatus is one pod as found on a machine.
type PodStatus struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Owner       string            `json:"owner"`
	Kind        string            `json:"kind"`
	Node        string            `json:"node"`
	Status      string            `json:"status"`
	Ready       bool              `json:"ready"`
	Restarts    int               `json:"restarts"`
	Revision    int64             `json:"revision"`
	SpecHash    string            `json:"specHash"`
	Image       string            `json:"image"`
	ContainerID string            `json:"containerID"`
	Created     time.Time         `json:"created"`
	MilliCPU    int64             `json:"milliCPU"`
	Memory      int64             `json:"memory"`
	Containers  []ContainerStatus `json:"containers"`
}

// Observed is the machines and the pods on them, as found now.
type Observed struct {
	Nodes []node.Status
	Pods  []PodStatus
	// Errors are machines that answered the probe but whose containers
	// could not be listed.
	Errors map[string]error
}

// observe probes every machine and lists fleet's containers on the Ready
// ones, all machines at once.
func (r *Reconciler) observe(ctx context.Context) Observed {
	nodes := r.Probe(ctx)
	obs := Observed{Nodes: nodes, Errors: map[string]error{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.Status != node.Ready {
			// What ran there is unknown now; show it as such, and let the
			// planner count it lost.
			obs.Pods = append(obs.Pods, r.seen(n.Name)...)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := r.now()
			pods, err := r.listPods(ctx, n.Name)
			r.listed(n.Name, began, pods, err)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				// It answers but could not list: its last-seen pods still
				// count until it is declared NotReady.
				obs.Errors[n.Name] = err
				obs.Pods = append(obs.Pods, r.seen(n.Name)...)
				return
			}
			obs.Pods = append(obs.Pods, pods...)
		}()
	}
	wg.Wait()
	sort.Slice(obs.Pods, func(i, j int) bool {
		a, b := obs.Pods[i], obs.Pods[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return obs
}

// Observe is the observed state alone, for `fleet get pods`: it needs no
// state file, only the machines.
func (r *Reconciler) Observe(ctx context.Context) Observed { return r.observe(ctx) }

func (r *Reconciler) listPods(ctx context.Context, machine string) ([]PodStatus, error) {
	d, err := r.Docker(machine)
	if err != nil {
		return nil, err
	}
	timeout := r.ListTimeout
	if timeout <= 0 {
		timeout = DefaultListTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	list, err := d.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))})
	if err != nil {
		return nil, err
	}
	byPod := map[string]*PodStatus{}
	for _, c := range list {
		l := c.Labels
		if l[LabelManaged] != "true" || l[LabelPod] == "" {
			continue // never ours, whatever the engine's filter did
		}
		key := l[LabelNamespace] + "/" + l[LabelPod]
		p, ok := byPod[key]
		if !ok {
			rev, _ := strconv.ParseInt(l[LabelRevision], 10, 64)
			cpu, _ := strconv.ParseInt(l[LabelCPU], 10, 64)
			mem, _ := strconv.ParseInt(l[LabelMemory], 10, 64)
			p = &PodStatus{Name: l[LabelPod], Namespace: l[LabelNamespace], Owner: l[LabelOwner], Kind: l[LabelKind],
				Node: machine, Revision: rev, SpecHash: l[LabelSpecHash], MilliCPU: cpu, Memory: mem,
				Created: time.Unix(c.Created, 0).UTC()}
			byPod[key] = p
		}
		if t := time.Unix(c.Created, 0).UTC(); t.Before(p.Created) {
			p.Created = t
		}
		p.Containers = append(p.Containers, ContainerStatus{Name: l[LabelContainer], ID: c.ID, Image: c.Image, State: c.State, Status: c.Status})
	}
	var out []PodStatus
	for _, k := range sortedKeys(byPod) {
		p := byPod[k]
		sort.Slice(p.Containers, func(i, j int) bool { return p.Containers[i].Name < p.Containers[j].Name })
		running, exited := 0, 0
		for _, c := range p.Containers {
			switch c.State {
			case "running":
				running++
			case "exited", "dead":
				exited++
			}
		}
		switch {
		case running == len(p.Containers):
			p.Status = Running
		case exited > 0:
			p.Status = Failed
		default:
			p.Status = Pending
		}
		// Readiness probes come with fleet serve; until then a running pod
		// is ready.
		p.Ready = p.Status == Running
		p.Image = p.Containers[0].Image
		p.ContainerID = shortID(p.Containers[0].ID)
		out = append(out, *p)
	}
	return out, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// plannerState turns observation into the planner's input.
func plannerState(obs Observed, workloads []planner.Workload, prune bool, staleBefore func(string) time.Time) planner.State {
	s := planner.State{Workloads: workloads, Prune: prune}
	for _, n := range obs.Nodes {
		pn := planner.Node{
			Name: n.Name, Ready: n.Status == node.Ready, NotReadyReason: n.Reason,
			MilliCPU: int64(n.CPUs * 1000), Memory: n.Memory, Labels: n.Labels,
		}
		if err := obs.Errors[n.Name]; err != nil {
			pn.Unschedulable = true
			pn.UnschedulableReason = "cannot list containers: " + strings.SplitN(err.Error(), "\n", 2)[0]
		}
		s.Nodes = append(s.Nodes, pn)
	}
	for _, p := range obs.Pods {
		stale := false
		if staleBefore != nil {
			// Created has one-second resolution; a cut-off lasts longer.
			stale = p.Created.Add(time.Second).Before(staleBefore(p.Node))
		}
		s.Pods = append(s.Pods, planner.Pod{
			Namespace: p.Namespace, Owner: p.Owner, Name: p.Name, Node: p.Node, SpecHash: p.SpecHash,
			Revision: p.Revision, Created: p.Created, Running: p.Status == Running,
			MilliCPU: p.MilliCPU, Memory: p.Memory, Stale: stale,
		})
	}
	return s
}
