package reconciler

import (
	"context"
	"fmt"
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
	// CrashLoopBackOff: a container keeps stopping and its next restart
	// waits (Docker's restart policy, or fleet's back-off).
	CrashLoopBackOff = "CrashLoopBackOff"
)

// ContainerStatus is one container of an observed pod.
type ContainerStatus struct {
	Name   string `json:"name"`
	ID     string `json:"containerID"`
	Image  string `json:"image"`
	State  string `json:"state"` // Docker's: created, running, restarting, exited, …
	Status string `json:"status"`
	// IP is the container's address on its machine's Docker network,
	// where probes (and the load balancer's tunnels) reach it.
	IP string `json:"ip,omitempty"`
	// Ports maps each published container port ("8080/tcp") to the
	// machine's port Docker bound it to.
	Ports map[string]int `json:"ports,omitempty"`
	// Probes lists the probes the container has: startup, liveness,
	// readiness (from its labels).
	Probes     string    `json:"probes,omitempty"`
	Health     string    `json:"health,omitempty"` // Docker HEALTHCHECK status, if the image has one
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// ExitCode, OOMKilled and Error are of the last time it stopped.
	ExitCode  int    `json:"exitCode"`
	OOMKilled bool   `json:"oomKilled,omitempty"`
	Error     string `json:"error,omitempty"`
	// Restarts counts every restart: Docker's (by its restart policy,
	// since the container was last started by fleet) plus Carried, those
	// before that.
	Restarts int `json:"restarts"`
	Carried  int `json:"carried,omitempty"`
	// BackoffStep counts fleet's restarts in a row without ten minutes of
	// running between them; the next one waits 10 s × 2^(step-1), at most
	// 5 min, after the container stopped, as Kubernetes' kubelet does.
	BackoffStep int `json:"backoffStep,omitempty"`
	// Started: the startup probe has succeeded (or there is none).
	// Ready: running, started, and the readiness probe (or, with no
	// probe, Docker's HEALTHCHECK) says so.
	Started bool `json:"started"`
	Ready   bool `json:"ready"`
	// Reason and Message say why it is not ready or not running.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Probed: a controller has probed it (Started and the probe
	// verdict are the controller's).
	Probed       bool   `json:"probed,omitempty"`
	ProbeReady   bool   `json:"probeReady,omitempty"`
	ProbeMessage string `json:"probeMessage,omitempty"`
	// ProbedRun is the start of the run the verdicts are about.
	ProbedRun time.Time `json:"probedRun,omitzero"`
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
	Reason      string            `json:"reason,omitempty"`
	Message     string            `json:"message,omitempty"`
	Revision    int64             `json:"revision"`
	SpecHash    string            `json:"specHash"`
	Image       string            `json:"image"`
	ContainerID string            `json:"containerID"`
	Created     time.Time         `json:"created"`
	MilliCPU    int64             `json:"milliCPU"`
	Memory      int64             `json:"memory"`
	Containers  []ContainerStatus `json:"containers"`
	// Sandbox is the fleet-pause container of a pod of several
	// containers: it holds the pod's address and published ports.
	Sandbox *ContainerStatus `json:"sandbox,omitempty"`
	// HostPorts are the machine ports its containers bind.
	HostPorts []string `json:"hostPorts,omitempty"`
	// LastSeen is when the pod was last listed, for pods shown Unknown.
	LastSeen time.Time `json:"lastSeen,omitzero"`
}

// Observed is the machines and the pods on them, as found now.
type Observed struct {
	Nodes []node.Status
	Pods  []PodStatus
	// Errors are machines that answered the probe but whose containers
	// could not be listed.
	Errors map[string]error
	// Lost are machines among Errors that have also stopped answering
	// pings (a Controller's view): they are planned as NotReady at once,
	// without waiting for the monitor's verdict.
	Lost map[string]bool
}

// observe probes every machine and lists fleet's containers on the Ready
// ones, all machines at once.
//
// record writes each machine's pods to the state file when they changed:
// only for a pass that acts (holding the lease), never for a look from
// `get` or a dry run, which would overwrite the controller's verdicts
// with an older view.
func (r *Reconciler) observe(ctx context.Context, record bool) Observed {
	nodes := r.Probe(ctx)
	obs := Observed{Nodes: nodes, Errors: map[string]error{}, Lost: map[string]bool{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.Status != node.Ready {
			// What ran there is unknown now; show it as such, and let the
			// planner count it lost.
			obs.Pods = append(obs.Pods, r.seen(ctx, n.Name)...)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := r.now()
			pods, err := r.listPods(ctx, n.Name)
			lost := err != nil && r.silent != nil && r.silent(n.Name)
			r.listed(ctx, n.Name, began, pods, err, record, lost)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				// It answers but could not list: its last-seen pods still
				// count until it is declared NotReady (or has gone silent).
				obs.Errors[n.Name] = err
				obs.Pods = append(obs.Pods, r.seen(ctx, n.Name)...)
				obs.Lost[n.Name] = lost
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
func (r *Reconciler) Observe(ctx context.Context) Observed { return r.observe(ctx, false) }

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
	var cs []*ContainerStatus
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
		cs := ContainerStatus{Name: l[LabelContainer], ID: c.ID, Image: c.Image, State: c.State, Status: c.Status, Probes: l[LabelProbes]}
		switch {
		case cs.Name == SandboxName:
			p.Sandbox = &cs
		case l[LabelInit] == "true":
			// Runs before the others, within the pass that starts the pod.
		default:
			p.Containers = append(p.Containers, cs)
		}
		if hp := l[LabelHostPorts]; hp != "" {
			p.HostPorts = append(p.HostPorts, strings.Split(hp, ",")...)
		}
	}
	for _, p := range byPod {
		for i := range p.Containers {
			cs = append(cs, &p.Containers[i])
		}
		if p.Sandbox != nil {
			cs = append(cs, p.Sandbox)
		}
	}
	r.inspect(ctx, d, cs)
	now := r.now()
	var out []PodStatus
	for _, k := range sortedKeys(byPod) {
		p := byPod[k]
		sort.Slice(p.Containers, func(i, j int) bool { return p.Containers[i].Name < p.Containers[j].Name })
		for i := range p.Containers {
			r.recall(ctx, &p.Containers[i])
		}
		if len(p.Containers) == 0 {
			continue // a sandbox left alone: stopped with its pod below
		}
		p.summarise(now)
		p.Image = p.Containers[0].Image
		p.ContainerID = shortID(p.Containers[0].ID)
		p.LastSeen = now
		out = append(out, *p)
	}
	return out, nil
}

// inspect fills in what the listing lacks (address, health, restarts,
// last exit), four containers of a machine at a time. A container that
// vanished meanwhile keeps what the listing said.
func (r *Reconciler) inspect(ctx context.Context, d Docker, cs []*ContainerStatus) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			insp, err := d.ContainerInspect(ctx, c.ID)
			if err != nil || insp.ContainerJSONBase == nil || insp.State == nil {
				return
			}
			st := insp.State
			c.Restarts = insp.RestartCount
			c.ExitCode, c.OOMKilled, c.Error = st.ExitCode, st.OOMKilled, st.Error
			c.StartedAt, _ = time.Parse(time.RFC3339Nano, st.StartedAt)
			c.FinishedAt, _ = time.Parse(time.RFC3339Nano, st.FinishedAt)
			if st.Health != nil {
				c.Health = string(st.Health.Status)
			}
			c.IP = containerIP(insp)
			if ns := insp.NetworkSettings; ns != nil {
				for port, bindings := range ns.Ports {
					for _, b := range bindings {
						if hp, err := strconv.Atoi(b.HostPort); err == nil && hp > 0 {
							if c.Ports == nil {
								c.Ports = map[string]int{}
							}
							c.Ports[string(port)] = hp
							break
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}

// containerIP is a container's address on its machine: the default
// bridge's, else its first network's.
func containerIP(insp container.InspectResponse) string {
	ns := insp.NetworkSettings
	if ns == nil {
		return ""
	}
	if ns.IPAddress != "" {
		return ns.IPAddress
	}
	for _, name := range sortedKeys(ns.Networks) {
		if n := ns.Networks[name]; n != nil && n.IPAddress != "" {
			return n.IPAddress
		}
	}
	return ""
}

// summarise derives the pod's status, readiness, restarts and reason from
// its containers.
func (p *PodStatus) summarise(now time.Time) {
	running, exited, restarting, backoff := 0, 0, 0, 0
	p.Ready, p.Restarts, p.Reason, p.Message = true, 0, "", ""
	note := func(reason, msg string) {
		if p.Reason == "" {
			p.Reason, p.Message = reason, msg
		}
	}
	for i := range p.Containers {
		c := &p.Containers[i]
		p.Restarts += c.Restarts + c.Carried
		c.Ready, c.Reason, c.Message = false, "", ""
		switch c.State {
		case "running":
			running++
			c.Ready, c.Reason, c.Message = c.readiness()
		case "restarting":
			restarting++
			c.Reason, c.Message = CrashLoopBackOff, fmt.Sprintf("exited with %d; Docker restarts it after a back-off", c.ExitCode)
		case "exited", "dead":
			exited++
			c.Reason, c.Message = exitReason(c), c.Error
			if delay := c.backoff(); delay > 0 && now.Before(c.FinishedAt.Add(delay)) {
				backoff++
				c.Reason = CrashLoopBackOff
				c.Message = fmt.Sprintf("back-off %s restarting failed container %s (exited with %d)", delay, c.Name, c.ExitCode)
			}
		case "paused":
			c.Reason, c.Message = "Paused", "the container is paused (docker pause)"
		default:
			c.Reason = "ContainerCreating"
		}
		p.Ready = p.Ready && c.Ready
		if !c.Ready {
			note(c.Reason, c.Message)
		}
	}
	sandboxDead := p.sandboxLost()
	switch {
	case sandboxDead && p.Sandbox.State != "running":
		// Its containers lost their network with it.
		p.Ready = false
		p.Reason, p.Message = "SandboxDead", fmt.Sprintf("the pod's network holder (%s) is %s", PauseImage, p.Sandbox.State)
		exited++
	case sandboxDead:
		p.Ready = false
		p.Reason, p.Message = "SandboxChanged", fmt.Sprintf("the pod's network holder (%s) was started again after its containers, which are cut off from the pod's address", PauseImage)
		exited++
	}
	switch {
	case restarting > 0 || backoff > 0:
		p.Status = CrashLoopBackOff
	case running == len(p.Containers) && !sandboxDead:
		p.Status = Running
	case exited > 0:
		p.Status = Failed
	default:
		p.Status = Pending
	}
}

// sandboxLost reports whether the pod's sandbox is not running, or was
// started again after a running container of the pod (the engine's
// restart policy brought back its process, in a new network namespace):
// either way its containers must be started again in it.
func (p *PodStatus) sandboxLost() bool {
	if p.Sandbox == nil {
		return false
	}
	if p.Sandbox.State != "running" {
		return true
	}
	for _, c := range p.Containers {
		if c.State == "running" && !c.StartedAt.IsZero() && c.StartedAt.Before(p.Sandbox.StartedAt) {
			return true
		}
	}
	return false
}

// readiness of a running container: its probes' verdict as the
// controller last recorded it, else Docker's HEALTHCHECK, else running is
// ready.
func (c *ContainerStatus) readiness() (ready bool, reason, msg string) {
	probed := strings.Contains(c.Probes, "readiness") || strings.Contains(c.Probes, "startup")
	switch {
	case probed && !c.Probed:
		return false, "NotProbed", "not probed yet: readiness comes from the probes fleet serve runs"
	case probed && !c.Started:
		return false, "Starting", "startup probe has not succeeded yet"
	case strings.Contains(c.Probes, "readiness") && !c.ProbeReady:
		return false, "Unready", c.probeMessage()
	case !probed && c.Health == "unhealthy":
		return false, "Unhealthy", "Docker HEALTHCHECK reports unhealthy"
	case !probed && c.Health == "starting":
		return false, "Starting", "Docker HEALTHCHECK has not passed yet"
	}
	return true, "", ""
}

func (c *ContainerStatus) probeMessage() string {
	if c.ProbeMessage != "" {
		return c.ProbeMessage
	}
	return "readiness probe failing"
}

func exitReason(c *ContainerStatus) string {
	switch {
	case c.OOMKilled:
		return "OOMKilled"
	case c.ExitCode == 0:
		return "Completed"
	}
	return "Error"
}

// backoff is how long fleet waits after the container stopped before
// starting it again: nothing the first time, then 10 s doubling to 5 min.
func (c *ContainerStatus) backoff() time.Duration {
	if c.BackoffStep == 0 || !c.StartedAt.IsZero() && c.FinishedAt.Sub(c.StartedAt) >= backoffReset {
		return 0
	}
	d := backoffBase << (c.BackoffStep - 1)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	return d
}

// Fleet's restart back-off, Kubernetes' numbers: 10 s doubling to 5 min,
// forgotten once a container has run for 10 min.
const (
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
	backoffReset = 10 * time.Minute
)

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
			why := "cannot list containers: " + strings.SplitN(err.Error(), "\n", 2)[0]
			if obs.Lost[n.Name] {
				// Its pings have gone unanswered too: it is dying, not busy.
				pn.Ready, pn.NotReadyReason = false, why+", and no answer to pings"
			} else {
				pn.Unschedulable, pn.UnschedulableReason = true, why
			}
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
			Revision: p.Revision, Created: p.Created, Running: p.Status == Running, Ready: p.Ready,
			MilliCPU: p.MilliCPU, Memory: p.Memory, Stale: stale, HostPorts: p.HostPorts,
		})
	}
	return s
}
