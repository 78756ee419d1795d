// Package reconciler is fleet's control loop, one pass at a time: read the
// desired state, observe the machines, plan, apply the plan with bounded
// parallelism per machine, and record what happened as events. A pass is
// level-triggered and idempotent: a pass right after a converged one does
// nothing.
package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/planner"
	"github.com/fleetdev/fleet/probe"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// Store is the part of the state file a pass uses. *store.Store satisfies it.
type Store interface {
	List(ctx context.Context, kind, namespace string) ([]store.Object, error)
	Revisions(ctx context.Context, kind, namespace, name string) ([]store.Revision, error)
	AddEvents(ctx context.Context, evs ...store.Event) error
	SaveMachinePods(ctx context.Context, m store.MachinePods) error
	AllMachinePods(ctx context.Context) ([]store.MachinePods, error)
}

var _ Store = (*store.Store)(nil)

// Images makes images present on machines before containers start.
type Images interface {
	// Ensure makes ref present on every machine named, returning the
	// machines where that failed.
	Ensure(ctx context.Context, ref string, machines []string) map[string]error
}

// Reconciler runs passes. Its fields are its dependencies; all are required
// but Log and Now.
type Reconciler struct {
	Store  Store
	Probe  func(ctx context.Context) []node.Status
	Docker func(machine string) (Docker, error)
	Images Images
	// PerMachine bounds concurrent container operations on one machine.
	// Default 4.
	PerMachine int
	// ReadyTimeout bounds the wait for a replacement pod to run before its
	// predecessor is stopped. Default 60s.
	ReadyTimeout time.Duration
	// ListTimeout bounds listing one machine's containers. Default 3s;
	// a Controller sets half its node timeout.
	ListTimeout time.Duration
	// BeforeStop, when set, is called before a pod is stopped (a
	// Controller takes it out of the load balancer and drains it).
	BeforeStop func(ctx context.Context, namespace, pod, machine string)
	// Probes, when set, gates a replacement on its startup and readiness
	// probes before its predecessor stops.
	Probes *probe.Runner
	Log    *slog.Logger
	Now    func() time.Time

	mem memory
	// returnedAt, set by a Controller, is when a machine last became
	// Ready after being NotReady; silent reports a machine whose pings
	// have gone unanswered for half the node timeout.
	returnedAt func(machine string) time.Time
	silent     func(machine string) bool
}

// DefaultListTimeout bounds listing one machine's containers in a pass,
// so a machine that dies mid-pass costs the pass this long, not a hang.
const DefaultListTimeout = 3 * time.Second

// opTimeout bounds one container create or start.
const opTimeout = 60 * time.Second

// Options tune one pass.
type Options struct {
	// DryRun plans and changes nothing.
	DryRun bool
	// Prune removes pods fleet created whose Deployment is not desired.
	Prune bool
}

// Result is what one pass found and did.
type Result struct {
	Observed Observed
	Plan     planner.Plan
	// Restarts are desired, up-to-date pods found stopped and started again.
	Restarts []string
	// Errors are steps that failed, each naming machine and step.
	Errors []error
	// Desired is the number of replicas desired across workloads, and
	// Current those running with the current template.
	Desired, Current int
	// RequeueAfter, when set, is when a container waiting out its restart
	// back-off may be started: pass again then.
	RequeueAfter time.Duration

	// What the pass read, for the Controller to reuse (probes, routes).
	templates map[string]*spec.PodTemplate
	services  []*spec.Service
}

// Converged reports whether the pass found nothing to do and nothing wrong.
func (r Result) Converged() bool {
	return r.Plan.Empty() && len(r.Plan.Unplaceable) == 0 && len(r.Errors) == 0 && len(r.Restarts) == 0 &&
		r.Current == r.Desired && len(r.Observed.Errors) == 0
}

type desired struct {
	workload  planner.Workload
	deploy    *spec.Deployment
	nodePorts nodePorts
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log != nil {
		return r.Log.With("component", "reconciler")
	}
	return slog.New(slog.DiscardHandler)
}

// readDesired loads every Deployment from the store, and the templates
// of all their revisions by namespace, name and spec hash (pods of an
// older revision are probed as their template says).
func (r *Reconciler) readDesired(ctx context.Context) ([]desired, map[string]*spec.PodTemplate, []*spec.Service, error) {
	objs, err := r.Store.List(ctx, "Deployment", "")
	if err != nil {
		return nil, nil, nil, err
	}
	templates := map[string]*spec.PodTemplate{}
	svcs, err := r.services(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var out []desired
	for _, o := range objs {
		var d spec.Deployment
		if err := json.Unmarshal(o.Spec, &d); err != nil {
			return nil, nil, nil, fmt.Errorf("decode Deployment %s/%s from the state file: %w", o.Namespace, o.Name, err)
		}
		revs, err := r.Store.Revisions(ctx, "Deployment", o.Namespace, o.Name)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, rv := range revs {
			var old spec.Deployment
			if json.Unmarshal(rv.Spec, &old) == nil {
				// Pods of a NodePort Service carry the hash with its node
				// ports folded in.
				templates[templateKey(o.Namespace, o.Name, old.PodSpecHash())] = &old.Template
				templates[templateKey(o.Namespace, o.Name, nodePortsFor(o.Namespace, &old.Template, svcs).hash(old.PodSpecHash()))] = &old.Template
			}
		}
		templates[templateKey(o.Namespace, o.Name, d.PodSpecHash())] = &d.Template
		var rev int64 = 1
		if len(revs) > 0 {
			rev = revs[len(revs)-1].Revision
		}
		cpu, mem := podRequests(d.Template.Spec)
		np := nodePortsFor(o.Namespace, &d.Template, svcs)
		hash := np.hash(d.PodSpecHash())
		templates[templateKey(o.Namespace, o.Name, hash)] = &d.Template
		out = append(out, desired{deploy: &d, nodePorts: np, workload: planner.Workload{
			Namespace: o.Namespace, Name: o.Name, Replicas: d.Replicas, SpecHash: hash,
			Revision: rev, MilliCPU: cpu, Memory: mem, NodeSelector: d.Template.Spec.NodeSelector,
			HostPorts: append(hostPorts(d.Template.Spec), np.held()...),
			Paused:    d.Paused,
		}})
	}
	return out, templates, svcs, nil
}

// services reads every Service from the state file.
func (r *Reconciler) services(ctx context.Context) ([]*spec.Service, error) {
	objs, err := r.Store.List(ctx, "Service", "")
	if err != nil {
		return nil, err
	}
	var out []*spec.Service
	for _, o := range objs {
		var s spec.Service
		if err := json.Unmarshal(o.Spec, &s); err != nil {
			return nil, fmt.Errorf("decode Service %s/%s from the state file: %w", o.Namespace, o.Name, err)
		}
		s.Namespace, s.Name = o.Namespace, o.Name
		out = append(out, &s)
	}
	return out, nil
}

// Pass runs one observe → plan → apply cycle.
func (r *Reconciler) Pass(ctx context.Context, opts Options) (Result, error) {
	want, templates, svcs, err := r.readDesired(ctx)
	if err != nil {
		return Result{}, err
	}
	workloads := make([]planner.Workload, len(want))
	byKey := map[string]desired{}
	for i, d := range want {
		workloads[i] = d.workload
		byKey[d.workload.Key()] = d
	}
	began := time.Now()
	obs := r.observe(ctx, !opts.DryRun)
	observed := time.Since(began)
	plan, err := planner.Compute(plannerState(obs, workloads, opts.Prune, r.staleBefore), r.now())
	if err != nil {
		return Result{}, fmt.Errorf("plan: %w", err)
	}
	res := Result{Observed: obs, Plan: plan, templates: templates, services: svcs}
	// Keyed by namespace, name and machine: one name can be on two
	// machines when a cut-off machine returns.
	stopKey := func(workload, pod, node string) string {
		ns, _, _ := strings.Cut(workload, "/")
		return ns + "/" + pod + "@" + node
	}
	stopping := map[string]bool{}
	for _, s := range plan.Steps {
		switch s := s.(type) {
		case planner.Stop:
			stopping[stopKey(s.Workload, s.Pod, s.Node)] = true
		case planner.Replace:
			stopping[stopKey(s.Old.Workload, s.Old.Pod, s.Old.Node)] = true
		}
	}
	var restart []PodStatus
	for _, d := range want {
		res.Desired += d.workload.Replicas
	}
	for _, p := range obs.Pods {
		d, ok := byKey[p.Namespace+"/"+p.Owner]
		// A paused Deployment's pods of older templates count: they stay
		// until it resumes.
		if !ok || stopping[p.Namespace+"/"+p.Name+"@"+p.Node] || p.SpecHash != d.workload.SpecHash && !d.workload.Paused || p.Status == Unknown {
			continue
		}
		if p.Status == Running {
			res.Current++
		} else {
			restart = append(restart, p)
		}
	}
	if opts.DryRun {
		for _, p := range restart {
			res.Restarts = append(res.Restarts, p.Namespace+"/"+p.Name)
		}
		return res, nil
	}
	ex := &executor{r: r, byKey: byKey, sems: map[string]chan struct{}{}, pods: obs.Pods}
	res.Errors = ex.run(ctx, plan, restart)
	if !plan.Empty() || len(restart) > 0 {
		r.log().Debug("pass timing", "observe", observed.Round(time.Millisecond), "images", ex.imagesTook.Round(time.Millisecond),
			"total", time.Since(began).Round(time.Millisecond))
	}
	res.Restarts = ex.restarted
	res.RequeueAfter = ex.requeue
	return res, nil
}

// executor applies one plan.
type executor struct {
	r     *Reconciler
	byKey map[string]desired
	pods  []PodStatus

	mu         sync.Mutex
	sems       map[string]chan struct{}
	errs       []error
	events     []store.Event
	restarted  []string
	requeue    time.Duration
	imagesTook time.Duration
}

func (e *executor) sem(machine string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.sems[machine]
	if !ok {
		n := e.r.PerMachine
		if n <= 0 {
			n = 4
		}
		s = make(chan struct{}, n)
		e.sems[machine] = s
	}
	return s
}

func (e *executor) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

func (e *executor) event(typ, reason, ns, name, machine, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, store.Event{At: e.r.now(), Type: typ, Reason: reason, Namespace: ns, Kind: "Pod", Name: name, Machine: machine, Message: msg})
}

func (e *executor) run(ctx context.Context, plan planner.Plan, restart []PodStatus) []error {
	var runs []planner.Run
	var stops []planner.Stop
	replaces := map[string][]planner.Replace{}
	for _, s := range plan.Steps {
		switch s := s.(type) {
		case planner.Run:
			runs = append(runs, s)
		case planner.Stop:
			stops = append(stops, s)
		case planner.Replace:
			replaces[s.New.Workload] = append(replaces[s.New.Workload], s)
		}
	}
	for _, u := range plan.Unplaceable {
		ns, name, _ := strings.Cut(u.Workload, "/")
		e.mu.Lock()
		e.events = append(e.events, store.Event{At: e.r.now(), Type: "Warning", Reason: "FailedScheduling", Namespace: ns, Kind: "Deployment", Name: name,
			Message: fmt.Sprintf("%d replica(s) cannot be placed: %s", u.Count, u.Reason)})
		e.mu.Unlock()
	}
	// Images first, once per image for all machines that will need it.
	var all []planner.Run
	all = append(all, runs...)
	for _, rs := range replaces {
		for _, r := range rs {
			all = append(all, r.New)
		}
	}
	imagesBegan := time.Now()
	failedImage := e.ensureImages(ctx, all)
	e.imagesTook = time.Since(imagesBegan)

	// Stops first: the planner counts the capacity they free as free.
	var wg sync.WaitGroup
	for _, s := range stops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.stop(ctx, s)
		}()
	}
	wg.Wait()
	for _, s := range runs {
		if err := failedImage[s.Node+" "+s.Workload]; err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.start(ctx, s)
		}()
	}
	for _, p := range restart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.restart(ctx, p)
		}()
	}
	// Replacements go one at a time within a workload, start-first.
	for _, key := range sortedKeys(replaces) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, rp := range replaces[key] {
				if err := failedImage[rp.New.Node+" "+rp.New.Workload]; err != nil {
					return
				}
				if !e.start(ctx, rp.New) {
					return
				}
				if err := e.waitReady(ctx, rp.New); err != nil {
					e.fail(err)
					return
				}
				e.stop(ctx, rp.Old)
			}
		}()
	}
	wg.Wait()
	if err := e.r.Store.AddEvents(ctx, e.events...); err != nil {
		e.errs = append(e.errs, err)
	}
	return e.errs
}

// ensureImages pushes each image to the machines about to run it, and
// returns failures keyed by "machine namespace/workload".
func (e *executor) ensureImages(ctx context.Context, runs []planner.Run) map[string]error {
	need := map[string]map[string]bool{} // image → machines
	users := map[string][]planner.Run{}
	for _, r := range runs {
		d := e.byKey[r.Workload]
		for _, c := range d.deploy.Template.Spec.Containers {
			if need[c.Image] == nil {
				need[c.Image] = map[string]bool{}
			}
			need[c.Image][r.Node] = true
			users[c.Image] = append(users[c.Image], r)
		}
	}
	failed := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, img := range sortedKeys(need) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs := e.r.Images.Ensure(ctx, img, sortedKeys(need[img]))
			mu.Lock()
			defer mu.Unlock()
			for machine, err := range errs {
				err = fmt.Errorf("%s: ensure image %s: %w", machine, img, err)
				e.fail(err)
				for _, r := range users[img] {
					if r.Node == machine {
						failed[r.Node+" "+r.Workload] = err
						ns, _, _ := strings.Cut(r.Workload, "/")
						e.event("Warning", "Failed", ns, r.Pod, machine, err.Error())
					}
				}
			}
		}()
	}
	wg.Wait()
	return failed
}

// start creates and starts every container of a new pod.
func (e *executor) start(ctx context.Context, s planner.Run) bool {
	sem := e.sem(s.Node)
	sem <- struct{}{}
	defer func() { <-sem }()
	d := e.byKey[s.Workload]
	ns, owner := d.workload.Namespace, d.workload.Name
	dk, err := e.r.Docker(s.Node)
	if err != nil {
		e.fail(fmt.Errorf("%s: run %s: %w", s.Node, s.Pod, err))
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for _, c := range d.deploy.Template.Spec.Containers {
		cfg, host := containerConfig(ns, owner, s.Pod, s.Revision, s.SpecHash, d.deploy.Template.Spec, c, d.nodePorts[c.Name])
		name := ContainerName(ns, s.Pod, c.Name)
		created, err := dk.ContainerCreate(ctx, cfg, host, nil, nil, name)
		if errdefs.IsConflict(err) {
			// Left by an interrupted pass: the name is ours; start it.
			insp, ierr := dk.ContainerInspect(ctx, name)
			if ierr == nil {
				created.ID, err = insp.ID, nil
			}
		}
		if err != nil {
			err = fmt.Errorf("%s: create container %s: %w", s.Node, name, err)
			e.fail(err)
			e.event("Warning", "Failed", ns, s.Pod, s.Node, err.Error())
			return false
		}
		if err := dk.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			err = fmt.Errorf("%s: start container %s: %w", s.Node, name, err)
			e.fail(err)
			e.event("Warning", "Failed", ns, s.Pod, s.Node, err.Error())
			return false
		}
	}
	cpu, mem := podRequests(d.deploy.Template.Spec)
	e.r.remember(ctx, PodStatus{Name: s.Pod, Namespace: ns, Owner: owner, Kind: "Deployment", Node: s.Node, Status: Running,
		Revision: s.Revision, SpecHash: s.SpecHash, Created: e.r.now().UTC(), MilliCPU: cpu, Memory: mem})
	e.event("Normal", "Started", ns, s.Pod, s.Node, fmt.Sprintf("started on %s: %s", s.Node, s.Reason))
	e.r.log().Info("started pod", "namespace", ns, "name", s.Pod, "machine", s.Node, "step", "run")
	return true
}

// waitReady waits until every container of a replacement runs and, when
// it has a startup or readiness probe and the Reconciler can probe, until
// those pass: only then is its predecessor stopped.
func (e *executor) waitReady(ctx context.Context, s planner.Run) error {
	d := e.byKey[s.Workload]
	timeout := e.r.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if e.r.Probes != nil {
		// A startup probe may allow longer than that; so does it here.
		for _, c := range d.deploy.Template.Spec.Containers {
			if timeout < probesAllow(c)+10*time.Second {
				timeout = probesAllow(c) + 10*time.Second
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dk, err := e.r.Docker(s.Node)
	if err != nil {
		return err
	}
	var running []container.InspectResponse
	for {
		running = running[:0]
		for _, c := range d.deploy.Template.Spec.Containers {
			insp, err := dk.ContainerInspect(ctx, ContainerName(d.workload.Namespace, s.Pod, c.Name))
			if err != nil || insp.ContainerJSONBase == nil || insp.State == nil || !insp.State.Running {
				break
			}
			running = append(running, insp)
		}
		if len(running) == len(d.deploy.Template.Spec.Containers) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: replacement %s not running after %s; kept its predecessor", s.Node, s.Pod, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if e.r.Probes == nil {
		return nil
	}
	for i, c := range d.deploy.Template.Spec.Containers {
		if c.StartupProbe == nil && c.ReadinessProbe == nil {
			continue
		}
		insp := running[i]
		started, _ := time.Parse(time.RFC3339Nano, insp.State.StartedAt)
		t := probe.Target{Machine: s.Node, ContainerID: insp.ID, IP: containerIP(insp), Ports: c.Ports}
		for _, p := range []*spec.Probe{c.StartupProbe, c.ReadinessProbe} {
			if p == nil {
				continue
			}
			if msg, ok := e.r.passes(ctx, p, t, started); !ok {
				return fmt.Errorf("%s: replacement %s not ready after %s (%s); kept its predecessor", s.Node, s.Pod, timeout, msg)
			}
		}
		e.r.probed(insp.ID, started, true, true, "")
	}
	return nil
}

// probesAllow is how long a container's startup and readiness probes may
// take to pass, by their own settings.
func probesAllow(c spec.Container) time.Duration {
	var d time.Duration
	for _, p := range []*spec.Probe{c.StartupProbe, c.ReadinessProbe} {
		if p == nil {
			continue
		}
		period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
		d += time.Duration(p.InitialDelaySeconds)*time.Second + period*time.Duration(max(p.FailureThreshold, p.SuccessThreshold, 1))
	}
	return d
}

// passes probes t from its start plus the initial delay, every period,
// until successThreshold successes in a row or ctx ends.
func (r *Reconciler) passes(ctx context.Context, p *spec.Probe, t probe.Target, started time.Time) (string, bool) {
	wait := time.Until(started.Add(time.Duration(p.InitialDelaySeconds) * time.Second))
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	successes, last := 0, "no attempt yet"
	for {
		select {
		case <-ctx.Done():
			return last, false
		case <-time.After(max(wait, 0)):
		}
		wait = period
		res := r.Probes.Run(ctx, p, t)
		if !res.OK {
			successes, last = 0, res.Message
			continue
		}
		if successes++; successes >= max(p.SuccessThreshold, 1) {
			return "", true
		}
	}
}

// stop stops a pod's containers (SIGTERM, then the grace period) and
// removes them.
func (e *executor) stop(ctx context.Context, s planner.Stop) {
	if e.r.BeforeStop != nil {
		// Out of the load balancer and drained before it stops, without
		// holding the machine's operation slot meanwhile.
		ns, _, _ := strings.Cut(s.Workload, "/")
		e.r.BeforeStop(ctx, ns, s.Pod, s.Node)
	}
	sem := e.sem(s.Node)
	sem <- struct{}{}
	defer func() { <-sem }()
	ns, _, _ := strings.Cut(s.Workload, "/")
	dk, err := e.r.Docker(s.Node)
	if err != nil {
		e.fail(fmt.Errorf("%s: stop %s: %w", s.Node, s.Pod, err))
		return
	}
	grace := 30
	if d, ok := e.byKey[s.Workload]; ok && d.deploy.Template.Spec.TerminationGracePeriodSeconds > 0 {
		grace = d.deploy.Template.Spec.TerminationGracePeriodSeconds
	}
	e.event("Normal", "Killing", ns, s.Pod, s.Node, fmt.Sprintf("stopping on %s: %s", s.Node, s.Reason))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second+opTimeout)
	defer cancel()
	var ids []string
	for _, p := range e.pods {
		if p.Name == s.Pod && p.Node == s.Node && p.Namespace == ns {
			for _, c := range p.Containers {
				ids = append(ids, c.ID)
			}
		}
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dk.ContainerStop(ctx, id, container.StopOptions{Timeout: &grace}); err != nil && !errdefs.IsNotFound(err) {
				e.fail(fmt.Errorf("%s: stop container %s of %s: %w", s.Node, shortID(id), s.Pod, err))
				return
			}
			if err := dk.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
				e.fail(fmt.Errorf("%s: remove container %s of %s: %w", s.Node, shortID(id), s.Pod, err))
			}
		}()
	}
	wg.Wait()
	e.r.log().Info("stopped pod", "namespace", ns, "name", s.Pod, "machine", s.Node, "step", "stop")
}

// restart starts the stopped containers of a desired pod again, each
// once its back-off has passed. Containers Docker is restarting itself
// (its restart policy) are left to it.
func (e *executor) restart(ctx context.Context, p PodStatus) {
	sem := e.sem(p.Node)
	sem <- struct{}{}
	defer func() { <-sem }()
	dk, err := e.r.Docker(p.Node)
	if err != nil {
		e.fail(fmt.Errorf("%s: restart %s: %w", p.Node, p.Name, err))
		return
	}
	now := e.r.now()
	var started []string
	for _, c := range p.Containers {
		switch c.State {
		case "running", "restarting", "paused", "removing":
			continue
		}
		if wait := c.FinishedAt.Add(c.backoff()).Sub(now); c.State != "created" && wait > 0 {
			e.mu.Lock()
			if e.requeue == 0 || wait < e.requeue {
				e.requeue = wait
			}
			e.mu.Unlock()
			if e.r.noteBackoff(c) {
				e.event("Warning", "BackOff", p.Namespace, p.Name, p.Node,
					fmt.Sprintf("back-off %s restarting failed container %s (exited with %d, %d restarts)", c.backoff(), c.Name, c.ExitCode, c.Restarts+c.Carried))
			}
			continue
		}
		if err := dk.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			e.fail(fmt.Errorf("%s: restart container %s of %s: %w", p.Node, c.Name, p.Name, err))
			e.event("Warning", "Failed", p.Namespace, p.Name, p.Node, fmt.Sprintf("restart container %s: %v", c.Name, err))
			return
		}
		if c.State != "created" {
			e.r.restarted(ctx, c)
		}
		started = append(started, fmt.Sprintf("%s (exited with %d)", c.Name, c.ExitCode))
	}
	if len(started) == 0 {
		return
	}
	e.mu.Lock()
	e.restarted = append(e.restarted, p.Namespace+"/"+p.Name)
	e.mu.Unlock()
	e.event("Normal", "Restarted", p.Namespace, p.Name, p.Node, "started again: "+strings.Join(started, ", "))
	e.r.log().Info("restarted pod", "namespace", p.Namespace, "name", p.Name, "machine", p.Node, "step", "restart")
}

// Summary is one line for a result: "placed 3, stopped 1, 2 unplaceable".
func (r Result) Summary() string {
	var runs, stops, replaces int
	for _, s := range r.Plan.Steps {
		switch s.(type) {
		case planner.Run:
			runs++
		case planner.Stop:
			stops++
		case planner.Replace:
			replaces++
		}
	}
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", what, n))
		}
	}
	add(runs, "place")
	add(replaces, "replace")
	add(stops, "stop")
	add(len(r.Restarts), "restart")
	un := 0
	for _, u := range r.Plan.Unplaceable {
		un += u.Count
	}
	add(un, "unplaceable")
	add(len(r.Errors), "errors")
	if len(parts) == 0 {
		return "nothing to do"
	}
	return strings.Join(parts, ", ")
}
