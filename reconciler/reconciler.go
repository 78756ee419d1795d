// Package reconciler is fleet's control loop, one pass at a time: read the
// desired state, observe the machines, plan, apply the plan with bounded
// parallelism per machine, and record what happened as events. A pass is
// level-triggered and idempotent: a pass right after a converged one does
// nothing.
package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	Rollouts(ctx context.Context) ([]store.Rollout, error)
	Blob(ctx context.Context, key string) ([]byte, bool, error)
	PutBlob(ctx context.Context, key string, value []byte, now time.Time) error
	DeleteBlobs(ctx context.Context, key string) (int64, error)
	Blobs(ctx context.Context, prefix string) ([]store.BlobInfo, error)
	SaveRolloutState(ctx context.Context, namespace, name string, state []byte, now time.Time) error
	// Change rewrites one object (an automatic rollback).
	Change(ctx context.Context, kind, namespace, name string, now time.Time, fn func(spec []byte) (store.Write, error)) (store.Applied, error)
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
	// ListTimeout bounds listing one machine's containers. Default 3s;
	// a Controller sets half its node timeout.
	ListTimeout time.Duration
	// BeforeStop, when set, is called before a pod is stopped (a
	// Controller takes it out of the load balancer and drains it).
	BeforeStop func(ctx context.Context, namespace, pod, machine string)
	// AfterReady, when set, is called once a rolling update's new pod is
	// ready, before its predecessor stops (a Controller routes it).
	AfterReady func(ctx context.Context, machine string)
	// Probes, when set, gates a replacement on its startup and readiness
	// probes before its predecessor stops.
	Probes *probe.Runner
	Log    *slog.Logger
	Now    func() time.Time

	mem memory
	// current is what the pass in progress read, for routing its new
	// pods before it ends.
	current atomic.Pointer[passView]
	// claimMu serialises binding volume claims.
	claimMu sync.Mutex
	// inits holds back Deployments whose init containers fail.
	inits initBackoff
	// returnedAt, set by a Controller, is when a machine last became
	// Ready after being NotReady; silent reports a machine whose pings
	// have gone unanswered for half the node timeout.
	returnedAt func(machine string) time.Time
	silent     func(machine string) bool
	// rolls, set by a Controller, runs rolling updates in the background
	// so a pass never waits for new pods to become ready.
	rolls *rolls
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

	// Rollouts are the Deployments' rollouts after the pass, by
	// namespace/name.
	Rollouts map[string]*RolloutState
	// RolledBack says which rollouts this pass gave up and rolled back.
	RolledBack []string

	// What the pass read, for the Controller to reuse (probes, routes).
	templates map[string]*spec.PodTemplate
	services  []*spec.Service
	// splits are the traffic splits of canary and blue-green rollouts,
	// by namespace/name.
	splits map[string]Split
	// analyses are the canaries' analysis limits, by namespace/name.
	analyses map[string]*spec.CanaryAnalysis
}

// Converged reports whether the pass found nothing to do and nothing wrong.
func (r Result) Converged() bool {
	for _, st := range r.Rollouts {
		if st.Split { // a canary or blue-green rollout still going
			return false
		}
	}
	return r.Plan.Empty() && len(r.Plan.Unplaceable) == 0 && len(r.Errors) == 0 && len(r.Restarts) == 0 &&
		r.Current == r.Desired && len(r.Observed.Errors) == 0
}

type desired struct {
	workload  planner.Workload
	deploy    *spec.Deployment
	nodePorts nodePorts
	configs   *configs
}

// window is how many replacements of a rolling update may be in flight:
// surge start before their predecessors stop, unavailable stop before
// their successors are ready. Percentages are of the replicas, surge
// rounded up and unavailable down, as Kubernetes does; never both 0.
func (d *desired) window() (surge, unavailable int) {
	st, n := d.deploy.Strategy, d.workload.Replicas
	resolve := func(v spec.IntOrPercent, up bool) int {
		if !v.Percent {
			return v.Value
		}
		if up {
			return (v.Value*n + 99) / 100
		}
		return v.Value * n / 100
	}
	if st.Type != spec.RollingUpdate {
		return 1, 0 // the superseded pods of a staged rollout: one by one
	}
	surge, unavailable = resolve(st.MaxSurge, true), resolve(st.MaxUnavailable, false)
	if surge == 0 && unavailable == 0 {
		surge = 1
	}
	return surge, unavailable
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
// of all their revisions by namespace, name and spec hash, and by
// revision (pods of an older revision are probed as their template says).
// The hash keys are needed: a rollback to an earlier template renumbers
// that revision, so the revision label of the pods that kept running it
// names none.
func (r *Reconciler) readDesired(ctx context.Context) ([]desired, map[string]*spec.PodTemplate, []*spec.Service, error) {
	templates := map[string]*spec.PodTemplate{}
	svcs, err := r.services(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := r.readConfigs(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var out []desired
	err = eachStored(ctx, r.Store, "Deployment", func(o store.Object, d *spec.Deployment) error {
		revs, err := r.Store.Revisions(ctx, "Deployment", o.Namespace, o.Name)
		if err != nil {
			return err
		}
		for _, rv := range revs {
			var old spec.Deployment
			if json.Unmarshal(rv.Spec, &old) == nil {
				// Pods of a NodePort Service carry the hash with its node
				// ports folded in.
				templates[templateKey(o.Namespace, o.Name, old.PodSpecHash())] = &old.Template
				templates[templateKey(o.Namespace, o.Name, podHash(o.Namespace, &old, svcs, cfg))] = &old.Template
				templates[revisionKey(o.Namespace, o.Name, rv.Revision)] = &old.Template
			}
		}
		templates[templateKey(o.Namespace, o.Name, d.PodSpecHash())] = &d.Template
		var rev int64 = 1
		if len(revs) > 0 {
			rev = revs[len(revs)-1].Revision
		}
		cpu, mem := podRequests(d.Template.Spec)
		np := nodePortsFor(o.Namespace, &d.Template, svcs)
		hash := podHash(o.Namespace, d, svcs, cfg)
		templates[templateKey(o.Namespace, o.Name, hash)] = &d.Template
		templates[revisionKey(o.Namespace, o.Name, rev)] = &d.Template
		dd := desired{deploy: d, nodePorts: np, configs: cfg, workload: planner.Workload{
			Namespace: o.Namespace, Name: o.Name, Replicas: d.Replicas, SpecHash: hash,
			Revision: rev, MilliCPU: cpu, Memory: mem, NodeSelector: d.Template.Spec.NodeSelector,
			HostPorts: append(hostPorts(d.Template.Spec), np.held()...),
			Paused:    d.Paused,
			Recreate:  d.Strategy.Type == spec.Recreate,
		}}
		_, unavailable := dd.window()
		dd.workload.StopFirstOK = unavailable > 0
		if cfg.secretsErr != nil && consumesSecret(&d.Template) {
			// Its hash cannot be known: hold its pods as they are.
			dd.workload.Paused = true
		}
		out = append(out, dd)
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return out, templates, svcs, nil
}

// podHash is the spec hash of a Deployment's pods: its template's, with
// what the pods bind (node ports) and consume (ConfigMap and Secret
// values) folded in, so a change of either replaces them.
func podHash(ns string, d *spec.Deployment, svcs []*spec.Service, cfg *configs) string {
	return nodePortsFor(ns, &d.Template, svcs).hash(cfg.hash(ns, &d.Template, d.PodSpecHash()))
}

// services reads every Service from the state file.
func (r *Reconciler) services(ctx context.Context) ([]*spec.Service, error) {
	var out []*spec.Service
	err := eachStored(ctx, r.Store, "Service", func(o store.Object, s *spec.Service) error {
		s.Namespace, s.Name = o.Namespace, o.Name
		out = append(out, s)
		return nil
	})
	return out, err
}

// eachStored decodes every stored object of kind, in every namespace, and
// hands it to each; a spec that does not decode is an error naming it.
func eachStored[T any](ctx context.Context, st Store, kind string, each func(store.Object, *T) error) error {
	objs, err := st.List(ctx, kind, "")
	if err != nil {
		return err
	}
	for _, o := range objs {
		v := new(T)
		if err := json.Unmarshal(o.Spec, v); err != nil {
			return fmt.Errorf("decode %s %s/%s from the state file: %w", kind, o.Namespace, o.Name, err)
		}
		if err := each(o, v); err != nil {
			return err
		}
	}
	return nil
}

// Pass runs one observe → plan → apply cycle.
func (r *Reconciler) Pass(ctx context.Context, opts Options) (Result, error) {
	began := time.Now()
	obs := r.observe(ctx, !opts.DryRun)
	observed := time.Since(began)
	var (
		want      []desired
		templates map[string]*spec.PodTemplate
		svcs      []*spec.Service
		rolls     []*rolling
		res       Result
	)
	// Read what is desired and advance the rollouts by what is observed;
	// a rollout given up now is rolled back, and read again.
	for attempt := 0; ; attempt++ {
		var err error
		if want, templates, svcs, err = r.readDesired(ctx); err != nil {
			return Result{}, err
		}
		if rolls, err = r.rollouts(ctx, want, obs, opts.DryRun); err != nil {
			return Result{}, err
		}
		var failed []*rolling
		for _, ro := range rolls {
			if ro.fail != "" && !opts.DryRun && attempt == 0 {
				failed = append(failed, ro)
			}
		}
		if r.rolls != nil && attempt == 0 && !opts.DryRun {
			// Background rolls that failed since the last pass: rolled
			// back before anything is planned with the failed revision.
			fails := r.rolls.failures(want)
			for _, ro := range rolls {
				if why, ok := fails[ro.key]; ok && ro.fail == "" && ro.state.Phase != PhaseComplete {
					ro.fail = why
					failed = append(failed, ro)
				}
			}
		}
		if len(failed) == 0 {
			break
		}
		for _, ro := range failed {
			if err := r.rollBack(ctx, ro, ro.fail); err != nil {
				return Result{}, err
			}
			res.RolledBack = append(res.RolledBack, ro.state.rolledBack(ro.key, ro.fail))
		}
		if err := r.saveRollouts(ctx, rolls); err != nil {
			return Result{}, err
		}
	}
	pvcs, err := ReadClaims(ctx, r.Store)
	if err != nil {
		return Result{}, err
	}
	for i := range want {
		pvcs.pin(&want[i])
	}
	workloads := make([]planner.Workload, len(want))
	byKey := map[string]desired{}
	res.Rollouts, res.splits, res.analyses = map[string]*RolloutState{}, map[string]Split{}, map[string]*spec.CanaryAnalysis{}
	for i, d := range want {
		workloads[i] = d.workload
		byKey[d.workload.Key()] = d
		if c := d.deploy.Strategy.Canary; c != nil && c.Analysis != nil {
			res.analyses[d.workload.Key()] = c.Analysis
		}
	}
	for _, ro := range rolls {
		res.Rollouts[ro.key] = ro.state
		if ro.state.Split {
			res.splits[ro.key] = Split{Hash: ro.state.Hash, Percent: ro.state.Weight}
		}
		if ro.requeue > 0 && (res.RequeueAfter == 0 || ro.requeue < res.RequeueAfter) {
			res.RequeueAfter = ro.requeue
		}
	}
	plan, err := planner.Compute(plannerState(obs, workloads, opts.Prune, r.staleBefore), r.now())
	if err != nil {
		return Result{}, fmt.Errorf("plan: %w", err)
	}
	res.Observed, res.Plan, res.templates, res.services = obs, plan, templates, svcs
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
		// Pods of the stable set of a staged or held rollout are restarted
		// too (those restarted by passes only would stay down).
		stable := d.workload.Stable != nil && p.SpecHash == d.workload.Stable.SpecHash
		if !ok || stopping[p.Namespace+"/"+p.Name+"@"+p.Node] || p.SpecHash != d.workload.SpecHash && !d.workload.Paused && !stable || p.Status == Unknown {
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
	if err := r.saveRollouts(ctx, rolls); err != nil {
		return res, err
	}
	r.current.Store(&passView{templates: templates, services: svcs, splits: res.splits})
	ex := newExecutor(r, byKey, templates, pvcs, obs.Pods)
	if r.rolls != nil {
		// A workload rolling in the background is left alone until its
		// roll ends, its new pods too: the roll judges them, and a pass
		// restarting one that exited (restarted by passes only) would
		// hide its crash from the roll.
		plan, restart = r.rolls.exclude(plan), r.rolls.excludeNew(restart, byKey)
	}
	var held time.Duration
	if plan, held = r.inits.exclude(plan, r.now()); held > 0 && (res.RequeueAfter == 0 || held < res.RequeueAfter) {
		res.RequeueAfter = held
	}
	res.Errors = ex.run(ctx, plan, restart)
	res.Errors = append(res.Errors, r.releaseClaims(ctx, pvcs, obs)...)
	if !plan.Empty() || len(restart) > 0 {
		r.log().Debug("pass timing", "observe", observed.Round(time.Millisecond), "images", ex.imagesTook.Round(time.Millisecond),
			"total", time.Since(began).Round(time.Millisecond))
	}
	res.Restarts = ex.restarted
	if ex.requeue > 0 && (res.RequeueAfter == 0 || ex.requeue < res.RequeueAfter) {
		res.RequeueAfter = ex.requeue
	}
	// A rolling update whose new pods failed is rolled back now; the next
	// pass brings the old template back.
	for _, ro := range rolls {
		why, ok := ex.failed[ro.key]
		if !ok || ro.state.Phase == PhaseComplete {
			continue
		}
		if err := r.rollBack(ctx, ro, why); err != nil {
			res.Errors = append(res.Errors, err)
			continue
		}
		res.RolledBack = append(res.RolledBack, ro.state.rolledBack(ro.key, why))
	}
	if err := r.saveRollouts(ctx, rolls); err != nil {
		return res, err
	}
	return res, nil
}

// passView is what a pass read that routing needs.
type passView struct {
	templates map[string]*spec.PodTemplate
	services  []*spec.Service
	splits    map[string]Split
}

// rollouts reads the rollout records and advances each Deployment's.
// A dry run shapes the workloads the same way but reports the records as
// the lease holder wrote them: it knows the probes' verdicts.
func (r *Reconciler) rollouts(ctx context.Context, want []desired, obs Observed, dryRun bool) ([]*rolling, error) {
	states, err := ReadRollouts(ctx, r.Store)
	if err != nil {
		return nil, err
	}
	now := r.now()
	out := make([]*rolling, len(want))
	for i := range want {
		key := want[i].workload.Key()
		st := states[key]
		var saved []byte
		if st == nil {
			st = &RolloutState{}
		} else {
			saved, _ = json.Marshal(st)
		}
		ro := &rolling{key: key, d: &want[i], state: st, saved: saved}
		if dryRun && saved != nil {
			stored := *st
			r.progress(ro, obs, now)
			ro.state = &stored
		} else {
			r.progress(ro, obs, now)
		}
		out[i] = ro
	}
	return out, nil
}

// executor applies one plan.
type executor struct {
	r         *Reconciler
	byKey     map[string]desired
	templates map[string]*spec.PodTemplate
	claims    *claims
	pods      []PodStatus

	mu         sync.Mutex
	sems       map[string]chan struct{}
	failed     map[string]string // workload → why its new pods failed
	initFailed map[string]string // pod → why its init containers failed
	errs       []error
	events     []store.Event
	restarted  []string
	requeue    time.Duration
	imagesTook time.Duration
}

func newExecutor(r *Reconciler, byKey map[string]desired, templates map[string]*spec.PodTemplate, claims *claims, pods []PodStatus) *executor {
	return &executor{r: r, byKey: byKey, templates: templates, claims: claims, pods: pods,
		sems: map[string]chan struct{}{}, failed: map[string]string{}, initFailed: map[string]string{}}
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
	for _, key := range sortedKeys(replaces) {
		if e.r.rolls != nil {
			e.r.rolls.start(e, key, replaces[key], failedImage)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.roll(ctx, key, replaces[key], failedImage)
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
		tpl := e.template(r)
		images := append(slices.Clip(tpl.Spec.InitContainers), tpl.Spec.Containers...)
		if sandboxed(tpl.Spec) {
			images = append([]spec.Container{{Image: PauseImage}}, images...)
		}
		for _, c := range images {
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
	tpl := e.template(s)
	dk, err := e.r.Docker(s.Node)
	if err != nil {
		e.fail(fmt.Errorf("%s: run %s: %w", s.Node, s.Pod, err))
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	sandboxID := ""
	// ready closes once the sandbox runs (at once without one): the
	// containers are created meanwhile, and started after.
	ready := make(chan struct{})
	var sandboxErr error
	// A pod runs whole or not at all: one that failed part way is taken
	// down, and the next pass starts it afresh.
	sandboxFailed := func(err error) bool {
		err = fmt.Errorf("%s: pod %s: %w", s.Node, s.Pod, err)
		e.fail(err)
		e.event("Warning", "Failed", ns, s.Pod, s.Node, err.Error())
		takeDown(context.WithoutCancel(ctx), dk, ns, s.Pod, tpl)
		return false
	}
	if !sandboxed(tpl.Spec) {
		close(ready)
	} else {
		id, files, err := e.createSandbox(ctx, dk, ns, owner, runSpec{workload: s.Workload, pod: s.Pod, hash: s.SpecHash, revision: s.Revision, tpl: tpl})
		if err != nil {
			return sandboxFailed(err)
		}
		sandboxID = id
		if len(tpl.Spec.InitContainers) > 0 {
			// Init containers need it running, and run before the others.
			if err := e.runSandbox(ctx, dk, id, files); err != nil {
				return sandboxFailed(err)
			}
			close(ready)
		} else {
			go func() {
				defer close(ready)
				sandboxErr = e.runSandbox(ctx, dk, id, files)
			}()
		}
	}
	if len(tpl.Spec.InitContainers) > 0 {
		if err := e.runInits(ctx, dk, s, tpl, sandboxID); err != nil {
			err = fmt.Errorf("%s: pod %s: %w", s.Node, s.Pod, err)
			e.fail(err)
			reason := "Failed"
			var ie errInit
			if errors.As(err, &ie) {
				wait := e.r.inits.failed(s.Workload, e.r.now())
				reason = "BackOff"
				err = fmt.Errorf("%w; the pod is removed, and the next try waits %s (Init:Error)", err, wait)
				e.mu.Lock()
				e.initFailed[s.Pod] = err.Error()
				e.mu.Unlock()
			}
			e.event("Warning", reason, ns, s.Pod, s.Node, err.Error())
			takeDown(context.WithoutCancel(ctx), dk, ns, s.Pod, tpl)
			return false
		}
	}
	// The containers of a pod are created and started together.
	errs := make([]error, len(tpl.Spec.Containers))
	var wg sync.WaitGroup
	for i, c := range tpl.Spec.Containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.startContainer(ctx, dk, s, tpl, c, sandboxID, ready, &sandboxErr)
		}()
	}
	wg.Wait()
	<-ready
	if sandboxErr != nil {
		return sandboxFailed(sandboxErr)
	}
	if slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		takeDown(context.WithoutCancel(ctx), dk, ns, s.Pod, tpl) // failed and said so
		return false
	}
	e.r.inits.started(s.Workload)
	cpu, mem := podRequests(tpl.Spec)
	e.r.remember(ctx, PodStatus{Name: s.Pod, Namespace: ns, Owner: owner, Kind: "Deployment", Node: s.Node, Status: Running,
		Revision: s.Revision, SpecHash: s.SpecHash, Created: e.r.now().UTC(), MilliCPU: cpu, Memory: mem})
	e.event("Normal", "Started", ns, s.Pod, s.Node, fmt.Sprintf("started on %s: %s", s.Node, s.Reason))
	e.r.log().Info("started pod", "namespace", ns, "name", s.Pod, "machine", s.Node, "step", "run")
	return true
}

// template is the pod template a run starts: the Deployment's, or, for
// the stable set of a canary or blue-green rollout, that revision's.
func (e *executor) template(s planner.Run) *spec.PodTemplate {
	d := e.byKey[s.Workload]
	if s.SpecHash != d.workload.SpecHash {
		if t := e.templates[templateKey(d.workload.Namespace, d.workload.Name, s.SpecHash)]; t != nil {
			return t
		}
	}
	return &d.deploy.Template
}

// rolloutFailure is a new pod that will not do: not ready within the
// progress deadline, or crash-looping. The rollout is given up.
type rolloutFailure struct{ err error }

func (f rolloutFailure) Error() string { return f.err.Error() }

// roll runs one workload's replacements, as many at a time as its
// strategy's window allows: a start-first replacement holds a surge slot
// until its predecessor is gone, a stop-first one an unavailable slot
// until its successor is ready. The first failed new pod stops the
// roll; the pass then rolls the Deployment back.
func (e *executor) roll(ctx context.Context, key string, steps []planner.Replace, failedImage map[string]error) {
	d := e.byKey[key]
	surge, unavailable := d.window()
	var (
		mu          sync.Mutex
		cond        = sync.NewCond(&mu)
		extra, down int
		stopped     bool
		wg          sync.WaitGroup
	)
	for _, rp := range steps {
		if failedImage[rp.New.Node+" "+rp.New.Workload] != nil {
			continue
		}
		mu.Lock()
		stopFirst := false
		for !stopped {
			if !rp.StopFirst && extra < surge {
				extra++
				break
			}
			if down < max(unavailable, 1) && (unavailable > 0 || rp.StopFirst) {
				down, stopFirst = down+1, true
				break
			}
			cond.Wait()
		}
		if stopped {
			mu.Unlock()
			break
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.replace(ctx, rp, stopFirst)
			mu.Lock()
			defer mu.Unlock()
			if stopFirst {
				down--
			} else {
				extra--
			}
			if err != nil {
				stopped = true
				if f, ok := err.(rolloutFailure); ok {
					e.mu.Lock()
					if _, seen := e.failed[key]; !seen {
						e.failed[key] = f.err.Error()
					}
					e.mu.Unlock()
				}
			}
			cond.Broadcast()
		}()
	}
	wg.Wait()
}

// replace brings up rp's new pod and stops its old one: start-first
// (new, ready, then old stops) or stop-first.
func (e *executor) replace(ctx context.Context, rp planner.Replace, stopFirst bool) error {
	if stopFirst {
		e.stop(ctx, rp.Old)
	}
	if !e.start(ctx, rp.New) {
		e.mu.Lock()
		why, init := e.initFailed[rp.New.Pod]
		e.mu.Unlock()
		if init {
			return rolloutFailure{errors.New(why)}
		}
		return errors.New("start failed") // recorded by start
	}
	if err := e.waitReady(ctx, rp.New); err != nil {
		ns, _, _ := strings.Cut(rp.New.Workload, "/")
		e.event("Warning", "Unhealthy", ns, rp.New.Pod, rp.New.Node, err.Error())
		e.fail(err)
		return err
	}
	if e.r.AfterReady != nil {
		e.r.AfterReady(ctx, rp.New.Node)
	}
	if !stopFirst {
		e.stop(ctx, rp.Old)
	}
	return nil
}

// createOrAdopt creates container name, or, when an interrupted pass
// left it (the name is fleet's), returns that one.
func createOrAdopt(ctx context.Context, dk Docker, cfg *container.Config, host *container.HostConfig, name string) (string, error) {
	created, err := dk.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if errdefs.IsConflict(err) {
		if insp, ierr := dk.ContainerInspect(ctx, name); ierr == nil {
			return insp.ID, nil
		}
	}
	return created.ID, err
}

// startContainer creates container c of run s, joined to the pod's
// sandbox when it has one, and starts it once ready closes (the sandbox
// runs), unless the sandbox failed; a failure of its own is recorded
// (error and event) and returned.
func (e *executor) startContainer(ctx context.Context, dk Docker, s planner.Run, tpl *spec.PodTemplate, c spec.Container, sandboxID string,
	ready <-chan struct{}, sandboxErr *error) error {
	d := e.byKey[s.Workload]
	ns, owner := d.workload.Namespace, d.workload.Name
	failed := func(reason string, err error) error {
		e.fail(err)
		e.event("Warning", reason, ns, s.Pod, s.Node, err.Error())
		return err
	}
	env, err := d.configs.env(ns, c)
	if err != nil {
		// Kubernetes' CreateContainerConfigError: fixed by applying the
		// ConfigMap or Secret, after which a pass starts it.
		return failed("CreateContainerConfigError", fmt.Errorf("%s: pod %s: %w", s.Node, s.Pod, err))
	}
	mounts, binds, err := e.volumeMounts(ctx, dk, ns, s.Pod, s.Node, tpl.Spec, c)
	if err != nil {
		return failed("FailedMount", fmt.Errorf("%s: pod %s: %w", s.Node, s.Pod, err))
	}
	cfg, host := containerConfig(ns, owner, s.Pod, s.Revision, s.SpecHash, tpl.Spec, c, env, mounts, binds, d.nodePorts[c.Name])
	if sandboxID != "" {
		joinSandbox(cfg, host, sandboxID)
		passesRestart(tpl.Spec, host)
	}
	name := ContainerName(ns, s.Pod, c.Name)
	id, err := createOrAdopt(ctx, dk, cfg, host, name)
	if err != nil {
		return failed("Failed", fmt.Errorf("%s: create container %s: %w", s.Node, name, err))
	}
	if <-ready; *sandboxErr != nil {
		return *sandboxErr // said once by start
	}
	if err := dk.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return failed("Failed", fmt.Errorf("%s: start container %s: %w", s.Node, name, err))
	}
	return nil
}

// waitReady waits until every container of a new pod runs and, when it
// has a startup or readiness probe and the Reconciler can probe, until
// those pass, then minReadySeconds more: only then is its predecessor
// stopped. Not ready within the Deployment's progressDeadlineSeconds, or
// restarting over and over, is a rolloutFailure; a machine that cannot be
// asked is not.
func (e *executor) waitReady(ctx context.Context, s planner.Run) error {
	d := e.byKey[s.Workload]
	containers := e.template(s).Spec.Containers
	timeout := time.Duration(d.deploy.ProgressDeadlineSeconds) * time.Second
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errDeadline)
	defer cancel()
	dk, err := e.r.Docker(s.Node)
	if err != nil {
		return err
	}
	inspect := func() ([]container.InspectResponse, error) {
		var out []container.InspectResponse
		for _, c := range containers {
			insp, err := dk.ContainerInspect(ctx, ContainerName(d.workload.Namespace, s.Pod, c.Name))
			if err != nil {
				return out, err
			}
			if insp.ContainerJSONBase == nil || insp.State == nil {
				return out, fmt.Errorf("container %s: no state", c.Name)
			}
			out = append(out, insp)
		}
		return out, nil
	}
	crashing := func(running []container.InspectResponse) error {
		for i, insp := range running {
			if insp.RestartCount >= crashLoopRestarts {
				return rolloutFailure{fmt.Errorf("%s: new pod %s is crash-looping: container %s restarted %d times (last exit code %d)",
					s.Node, s.Pod, containers[i].Name, insp.RestartCount, insp.State.ExitCode)}
			}
			if insp.State.Status == "exited" && insp.HostConfig != nil && insp.HostConfig.RestartPolicy.Name == container.RestartPolicyDisabled {
				// A pod restarted by passes only (passesRestart): no
				// pass restarts it while the roll waits for it.
				return rolloutFailure{fmt.Errorf("%s: new pod %s: container %s exited with %d",
					s.Node, s.Pod, containers[i].Name, insp.State.ExitCode)}
			}
		}
		return nil
	}
	// failed says why the wait ended: the deadline (the rollout fails)
	// or anything else (it does not).
	failed := func(what string, lastErr error) error {
		if context.Cause(ctx) == errDeadline && lastErr == nil && (e.r.silent == nil || !e.r.silent(s.Node)) {
			return rolloutFailure{fmt.Errorf("%s: new pod %s %s within progressDeadlineSeconds (%s)", s.Node, s.Pod, what, timeout)}
		}
		if lastErr == nil {
			lastErr = context.Cause(ctx)
		}
		return fmt.Errorf("%s: new pod %s %s: %w; kept its predecessor", s.Node, s.Pod, what, lastErr)
	}
	gone := func() error {
		if e.r.silent != nil && e.r.silent(s.Node) {
			return fmt.Errorf("%s: new pod %s: the machine stopped answering; kept its predecessor", s.Node, s.Pod)
		}
		return nil
	}
	var running []container.InspectResponse
	for {
		if err := gone(); err != nil {
			return err
		}
		insps, err := inspect()
		if err == nil {
			if f := crashing(insps); f != nil {
				return f
			}
			all := true
			for _, insp := range insps {
				all = all && insp.State.Running
			}
			if all {
				running = insps
				break
			}
		}
		select {
		case <-ctx.Done():
			if errdefs.IsNotFound(err) {
				err = nil // removed or never created: the pod's own failure
			}
			return failed("not running", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if e.r.Probes != nil {
		// While the probes run, a crash loop ends the wait early.
		pctx, pcancel := context.WithCancelCause(ctx)
		defer pcancel(nil)
		go func() {
			for pctx.Err() == nil {
				select {
				case <-pctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
				if err := gone(); err != nil {
					pcancel(err)
				}
				if insps, err := inspect(); err == nil {
					if f := crashing(insps); f != nil {
						pcancel(f)
					}
				}
			}
		}()
		for i, c := range containers {
			if c.StartupProbe == nil && c.ReadinessProbe == nil {
				continue
			}
			insp := running[i]
			started, _ := time.Parse(time.RFC3339Nano, insp.State.StartedAt)
			ip := containerIP(insp)
			if ip == "" { // it joined the pod's sandbox
				if sb, err := dk.ContainerInspect(ctx, ContainerName(d.workload.Namespace, s.Pod, SandboxName)); err == nil {
					ip = containerIP(sb)
				}
			}
			t := probe.Target{Machine: s.Node, ContainerID: insp.ID, IP: ip, Ports: c.Ports}
			for _, p := range []*spec.Probe{c.StartupProbe, c.ReadinessProbe} {
				if p == nil {
					continue
				}
				if msg, ok := e.r.passes(pctx, p, t, started); !ok {
					switch cause := context.Cause(pctx); {
					case errors.As(cause, new(rolloutFailure)):
						return cause
					case cause != nil && cause != errDeadline && ctx.Err() == nil:
						return cause // the machine stopped answering
					}
					return failed("not ready ("+msg+")", nil)
				}
			}
			e.r.probed(insp.ID, started, true, true, "")
		}
	}
	if min := time.Duration(d.deploy.MinReadySeconds) * time.Second; min > 0 {
		select {
		case <-ctx.Done():
			return failed("not ready for minReadySeconds", nil)
		case <-time.After(min):
		}
		insps, err := inspect()
		if err != nil {
			return failed("not ready for minReadySeconds", err)
		}
		for i, insp := range insps {
			if !insp.State.Running || insp.RestartCount != running[i].RestartCount {
				return rolloutFailure{fmt.Errorf("%s: new pod %s: container %s stopped within minReadySeconds (%ds)", s.Node, s.Pod, containers[i].Name, d.deploy.MinReadySeconds)}
			}
		}
	}
	return nil
}

// errDeadline ends a new pod's wait at its Deployment's progress deadline.
var errDeadline = errors.New("progress deadline exceeded")

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
	sandbox := ""
	for _, p := range e.pods {
		if p.Name == s.Pod && p.Node == s.Node && p.Namespace == ns {
			for _, c := range p.Containers {
				ids = append(ids, c.ID)
			}
			if p.Sandbox != nil {
				sandbox = p.Sandbox.ID
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
	if sandbox != "" {
		// Last: the containers needed its network until they stopped.
		if err := dk.ContainerRemove(ctx, sandbox, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			e.fail(fmt.Errorf("%s: remove the sandbox of %s: %w", s.Node, s.Pod, err))
		}
	}
	if err := removePodVolumes(ctx, dk, ns, s.Pod); err != nil {
		e.fail(fmt.Errorf("%s: pod %s: %w", s.Node, s.Pod, err))
	}
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
	if p.sandboxLost() {
		if err := e.restartSandbox(ctx, dk, p); err != nil {
			e.fail(fmt.Errorf("%s: %w", p.Node, err))
			e.event("Warning", "Failed", p.Namespace, p.Name, p.Node, err.Error())
			return
		}
		e.mu.Lock()
		e.restarted = append(e.restarted, p.Namespace+"/"+p.Name)
		e.mu.Unlock()
		e.event("Normal", "SandboxChanged", p.Namespace, p.Name, p.Node, "the pod's network holder was started again, and its containers with it")
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
