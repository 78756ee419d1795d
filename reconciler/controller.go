package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/probe"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// LeaseStore is the lease part of the state file.
type LeaseStore interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (store.Lease, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Controller is `fleet serve`: it holds the lease and runs a pass whenever
// something changes (the desired state, a container on a machine, a
// machine's reachability) and on a periodic resync. Events only wake the
// loop; every pass re-reads everything (level-triggered).
type Controller struct {
	R      *Reconciler
	Leases LeaseStore
	Holder string
	// Version changes when the desired state does.
	Version func(ctx context.Context) (string, error)
	// Probe is the full probe (capacity, labels) used at start and when a
	// machine comes back.
	Probe func(ctx context.Context) []node.Status
	// Ping checks one machine quickly over its pooled connection.
	Ping func(ctx context.Context, machine string) error
	// Watch streams container events from one machine until ctx ends or
	// the stream breaks; each receive wakes the loop.
	Watch    func(ctx context.Context, machine string) (<-chan struct{}, <-chan error)
	Machines []string
	// NodeInterval is how often each machine is pinged. Default 500ms.
	NodeInterval time.Duration
	// NodeTimeout is how long a machine may go without answering before
	// it is NotReady and its pods are placed elsewhere. Default 2s.
	NodeTimeout time.Duration
	// Resync runs a pass at least this often. Default 10s.
	Resync time.Duration
	// VersionPoll is how often the desired state is checked. Default 50ms.
	VersionPoll time.Duration
	// Probes runs probe attempts; without it no probes run (readiness
	// then is running, or Docker's HEALTHCHECK).
	Probes *probe.Runner
	// Routes, when set, receives the endpoints of every Service port
	// after every pass (and whenever a pod is about to stop): the load
	// balancer's input.
	Routes func(ctx context.Context, eps []ServicePortEndpoints)
	// Drain, when set, waits until no request is in flight to addrs (or
	// ctx ends); a pod's endpoints are drained before it is stopped.
	Drain func(ctx context.Context, addrs []string)
	// Stats, when set, is what the load balancer measured for requests
	// to addrs: a canary with analysis is judged by it.
	Stats func(addrs []string) CanaryStats
	Log   *slog.Logger

	mu      sync.Mutex
	nodes   map[string]*watched
	routeMu sync.Mutex // one route computation at a time
	lastObs Observed
	lastEps []ServicePortEndpoints
	// what the last pass read, for reroute
	lastTemplates map[string]*spec.PodTemplate
	lastServices  []*spec.Service
	lastSplits    map[string]Split
	lastRollouts  map[string]*RolloutState
	lastAnalyses  map[string]*spec.CanaryAnalysis
	routed        bool            // route has run once
	stopping      map[string]bool // namespace/pod@machine
	wake          chan struct{}
}

type watched struct {
	status      node.Status
	lastOK      time.Time
	ready       bool
	since       time.Time // of the current state
	recoveredAt time.Time // last NotReady → Ready
}

// LeaseName is the lease passes hold.
const LeaseName = "reconcile"

// LeaseTTL is how long serve's lease lasts unrenewed: how long a killed
// serve keeps others waiting. It is renewed every fifth of that.
const LeaseTTL = 15 * time.Second

// AcquireLease takes the reconcile lease for holder until now+ttl. While
// another holder's lease runs it returns store.ErrLeaseHeld with that lease
// at once, or, with wait, polls every second until the lease is free or
// ctx ends (then it returns ctx's error), calling waiting once first. A
// serve restarted after a crash waits out the old one's lease this way.
func AcquireLease(ctx context.Context, leases LeaseStore, holder string, ttl time.Duration, now func() time.Time, wait bool, waiting func(store.Lease)) (store.Lease, error) {
	said := false
	for {
		lease, err := leases.AcquireLease(ctx, LeaseName, holder, ttl, now())
		if !errors.Is(err, store.ErrLeaseHeld) || !wait {
			return lease, err
		}
		if !said && waiting != nil {
			waiting(lease)
			said = true
		}
		select {
		case <-ctx.Done():
			return lease, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (c *Controller) defaults() {
	if c.NodeInterval <= 0 {
		c.NodeInterval = 500 * time.Millisecond
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 2 * time.Second
	}
	if c.Resync <= 0 {
		c.Resync = 10 * time.Second
	}
	if c.VersionPoll <= 0 {
		c.VersionPoll = 50 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Log = c.Log.With("component", "controller")
}

func (c *Controller) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run serves until ctx ends; the pass in flight then finishes, and the
// lease is released.
func (c *Controller) Run(ctx context.Context) error {
	c.defaults()
	c.wake = make(chan struct{}, 1)
	c.nodes = map[string]*watched{}
	_, err := AcquireLease(ctx, c.Leases, c.Holder, LeaseTTL, c.R.now, true, func(l store.Lease) {
		c.Log.Info("waiting for the reconcile lease", "holder", l.Holder, "until", l.ExpiresAt.Local().Format(time.TimeOnly))
	})
	if ctx.Err() != nil {
		return nil // asked to stop while waiting
	}
	if err != nil {
		return err
	}
	c.Log.Info("holding the reconcile lease", "holder", c.Holder)
	now := c.R.now()
	defer c.Leases.ReleaseLease(context.WithoutCancel(ctx), LeaseName, c.Holder)
	for _, st := range c.Probe(ctx) {
		c.nodes[st.Name] = &watched{status: st, ready: st.Status == node.Ready, lastOK: now, since: now}
	}
	// The reconciler sees machines as the monitor does: no dial timeouts
	// on dead machines inside a pass.
	c.R.Probe = c.snapshot
	if c.R.ListTimeout <= 0 || c.R.ListTimeout > c.NodeTimeout/2 {
		c.R.ListTimeout = c.NodeTimeout / 2
	}
	c.R.returnedAt = c.returnedAt
	c.R.silent = c.silent
	c.stopping = map[string]bool{}
	if c.Routes != nil {
		c.R.BeforeStop = c.beforeStop
		c.R.AfterReady = c.afterReady
	}

	var wg sync.WaitGroup
	bg, stop := context.WithCancel(ctx)
	c.R.rolls = newRolls(bg, c.poke)
	defer func() { stop(); wg.Wait(); c.R.rolls.wait() }()
	for _, m := range c.Machines {
		wg.Add(2)
		go func() { defer wg.Done(); c.monitor(bg, m) }()
		go func() { defer wg.Done(); c.watch(bg, m) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.pollVersion(bg) }()
	// The lease is renewed on its own clock: a pass may take longer than
	// the lease (fifty container starts on a busy machine do).
	lost := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(LeaseTTL / 5)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-t.C:
			}
			if _, err := c.Leases.AcquireLease(bg, LeaseName, c.Holder, LeaseTTL, c.R.now()); err != nil && bg.Err() == nil {
				lost <- err
				return
			}
		}
	}()

	var health *Health
	if c.Probes != nil {
		c.R.Probes = c.Probes
		health = &Health{R: c.R, Runner: c.Probes, Changed: func() {
			// The load balancer hears of a readiness change at once,
			// before the pass that confirms it.
			if c.Routes != nil {
				c.reroute(bg)
			}
			c.poke()
		}}
		defer health.Stop()
	}

	resync := time.NewTicker(c.Resync)
	defer resync.Stop()
	judge := time.NewTicker(canaryJudgeInterval)
	defer judge.Stop()
	c.poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-lost:
			return fmt.Errorf("lost the reconcile lease: %w", err)
		case <-judge.C:
			if c.judgeCanaries(bg) {
				c.poke()
			}
			continue
		case <-resync.C:
		case <-c.wake:
		}
		// The step in flight finishes even when asked to stop.
		passCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		res, err := c.R.Pass(passCtx, Options{Prune: true})
		cancel()
		if err != nil {
			c.Log.Error("pass failed", "err", err)
			continue
		}
		if health != nil {
			health.Sync(bg, res.Observed.Pods, res.templates)
		}
		c.mu.Lock()
		c.lastSplits, c.lastRollouts, c.lastAnalyses = res.splits, res.Rollouts, res.analyses
		c.mu.Unlock()
		// A pass that acted observed the machines before it did: its new
		// pods were routed as they became ready, its stopped ones taken
		// out before they stopped, and the confirming pass routes anew.
		if c.Routes != nil && (res.Plan.Empty() || !c.routedOnce()) {
			c.route(bg, res.Observed, res.templates, res.services)
		}
		for _, rb := range res.RolledBack {
			c.Log.Warn("rollout failed; rolled back", "rollout", rb)
		}
		if c.judgeCanaries(bg) {
			c.poke()
		}
		c.Log.Debug("pass", "summary", res.Summary(), "running", res.Current, "desired", res.Desired)
		if !res.Plan.Empty() || len(res.Restarts) > 0 || len(res.Errors) > 0 {
			c.Log.Info("pass", "summary", res.Summary(), "running", res.Current, "desired", res.Desired)
			for _, e := range res.Errors {
				c.Log.Warn("step failed", "err", e)
			}
			// Confirm soon rather than at the next resync.
			time.AfterFunc(200*time.Millisecond, c.poke)
		}
		if res.RequeueAfter > 0 {
			time.AfterFunc(res.RequeueAfter+10*time.Millisecond, c.poke)
		}
	}
}

// snapshot is the machines as the monitor last saw them.
func (c *Controller) snapshot(context.Context) []node.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []node.Status
	for _, m := range c.Machines {
		w, ok := c.nodes[m]
		if !ok {
			continue
		}
		st := w.status
		if !w.ready {
			st.Status = node.NotReady
			if st.Reason == "" {
				st.Reason = "unreachable"
			}
		}
		out = append(out, st)
	}
	return out
}

func (c *Controller) silent(machine string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.nodes[machine]
	return ok && c.R.now().Sub(w.lastOK) >= c.NodeTimeout/2
}

func (c *Controller) returnedAt(machine string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.nodes[machine]; ok {
		return w.recoveredAt
	}
	return time.Time{}
}

// monitor pings one machine every NodeInterval (one ping in flight at a
// time) and checks every tick whether it has been silent for NodeTimeout:
// a hung machine is declared NotReady when its silence reaches the
// timeout, not when a ping finally gives up.
func (c *Controller) monitor(ctx context.Context, machine string) {
	tick := time.NewTicker(c.NodeInterval / 5)
	defer tick.Stop()
	var inflight chan error
	var lastSent time.Time
	var lastErr error
	for {
		var result error
		gotResult := false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case result = <-inflight:
			inflight, gotResult = nil, true
		}
		now := c.R.now()
		if inflight == nil && now.Sub(lastSent) >= c.NodeInterval {
			inflight, lastSent = make(chan error, 1), now
			go func(res chan<- error) {
				pctx, cancel := context.WithTimeout(ctx, c.NodeTimeout)
				defer cancel()
				res <- c.Ping(pctx, machine)
			}(inflight)
		}
		if gotResult && result != nil {
			lastErr = result
		}
		c.mu.Lock()
		w := c.nodes[machine]
		if w == nil {
			w = &watched{status: node.Status{Name: machine}, since: now}
			c.nodes[machine] = w
		}
		var event *store.Event
		switch {
		case gotResult && result == nil && !w.ready:
			w.ready, w.since, w.recoveredAt, w.lastOK = true, now, now, now
			w.status.Status, w.status.Reason, w.status.Error = node.Ready, "", ""
			event = &store.Event{At: now, Type: "Normal", Reason: "NodeReady", Kind: "Node", Name: machine, Machine: machine, Message: machine + " answers again"}
		case gotResult && result == nil:
			w.lastOK = now
		case w.ready && now.Sub(w.lastOK) >= c.NodeTimeout:
			why := lastErr
			if why == nil || !gotResult && inflight != nil {
				why = fmt.Errorf("no answer to /_ping for %s", now.Sub(w.lastOK).Round(time.Millisecond))
			}
			w.ready, w.since = false, now
			w.status.Status, w.status.Reason, w.status.Error = node.NotReady, reasonOf(why), why.Error()
			event = &store.Event{At: now, Type: "Warning", Reason: "NodeNotReady", Kind: "Node", Name: machine, Machine: machine,
				Message: fmt.Sprintf("%s has not answered for %s: %v", machine, now.Sub(w.lastOK).Round(time.Millisecond), why)}
		}
		needFull := event != nil && w.ready && w.status.CPUs == 0
		c.mu.Unlock()
		if event != nil {
			c.Log.Info(event.Reason, "machine", machine, "message", event.Message)
			c.R.Store.AddEvents(ctx, *event)
			c.poke()
		}
		if needFull {
			c.refresh(ctx, machine)
		}
	}
}

// refresh takes a full probe of the machines, to learn the capacity of one
// that was down when serve started.
func (c *Controller) refresh(ctx context.Context, machine string) {
	for _, st := range c.Probe(ctx) {
		if st.Name != machine || st.Status != node.Ready {
			continue
		}
		c.mu.Lock()
		c.nodes[machine].status = st
		c.mu.Unlock()
	}
}

func reasonOf(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || strings.HasPrefix(err.Error(), "no answer") {
		return "unreachable (timed out)"
	}
	return "unreachable"
}

// watch streams container events from one machine, waking the loop on
// each, and resubscribes after a broken stream.
func (c *Controller) watch(ctx context.Context, machine string) {
	for ctx.Err() == nil {
		c.mu.Lock()
		ready := c.nodes[machine] != nil && c.nodes[machine].ready
		c.mu.Unlock()
		if ready {
			sctx, cancel := context.WithCancel(ctx)
			evs, errs := c.Watch(sctx, machine)
			// Events while no stream was open are lost: a pass catches up.
			c.poke()
		stream:
			for {
				select {
				case <-ctx.Done():
					cancel()
					return
				case _, ok := <-evs:
					if !ok {
						break stream
					}
					// The engine reports a death a moment before its
					// container list shows it: look now, and again shortly.
					c.Log.Debug("container event", "machine", machine)
					for _, d := range []time.Duration{50, 200, 400, 800} {
						time.AfterFunc(d*time.Millisecond, c.poke)
					}
				case err := <-errs:
					if err != nil && ctx.Err() == nil {
						c.Log.Info("event stream ended; resubscribing", "machine", machine, "err", err)
					}
					break stream
				}
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *Controller) pollVersion(ctx context.Context) {
	last, _ := c.Version(ctx)
	t := time.NewTicker(c.VersionPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := c.Version(ctx)
		if err == nil && v != last {
			last = v
			c.poke()
		}
	}
}

// route hands the load balancer every Service port's endpoints, without
// the pods being stopped.
// The pass's templates and services are reused: nothing is read again.
func (c *Controller) route(ctx context.Context, obs Observed, templates map[string]*spec.PodTemplate, svcs []*spec.Service) {
	c.routeMu.Lock()
	defer c.routeMu.Unlock()
	c.routeLocked(ctx, obs, templates, svcs)
}

// routeLocked is route with c.routeMu held.
func (c *Controller) routeLocked(ctx context.Context, obs Observed, templates map[string]*spec.PodTemplate, svcs []*spec.Service) {
	obs = c.refreshed(ctx, obs)
	c.mu.Lock()
	splits := c.lastSplits
	c.mu.Unlock()
	eps := endpointsOf(svcs, obs, templates, splits)
	present := map[string]bool{}
	for _, p := range obs.Pods {
		present[p.Namespace+"/"+p.Name+"@"+p.Node] = true
	}
	c.mu.Lock()
	for k := range c.stopping {
		if !present[k] {
			delete(c.stopping, k)
		}
	}
	c.lastEps, c.lastObs, c.lastTemplates, c.lastServices, c.routed = eps, obs, templates, svcs, true
	c.mu.Unlock()
	c.publish(ctx, eps)
}

// reroute recomputes the endpoints from the last observation with the
// probe verdicts as they are now. It reads that observation under
// routeMu, so it never publishes a view older than one already
// published, and does nothing before the first pass has routed.
func (c *Controller) reroute(ctx context.Context) {
	c.routeMu.Lock()
	defer c.routeMu.Unlock()
	c.mu.Lock()
	obs, templates, svcs, routed := c.lastObs, c.lastTemplates, c.lastServices, c.routed
	c.mu.Unlock()
	if !routed {
		return
	}
	c.routeLocked(ctx, obs, templates, svcs)
}

// refreshed is obs with each pod's readiness as the probes say now: an
// observation a pass made a while ago (or one that overlapped a
// background roll) must not undo a verdict given since.
func (c *Controller) refreshed(ctx context.Context, obs Observed) Observed {
	pods := make([]PodStatus, len(obs.Pods))
	now := c.R.now()
	for i, p := range obs.Pods {
		p.Containers = append([]ContainerStatus(nil), p.Containers...)
		if p.Status != Unknown {
			for j := range p.Containers {
				c.R.recall(ctx, &p.Containers[j])
			}
			p.summarise(now)
		}
		pods[i] = p
	}
	obs.Pods = pods
	return obs
}

// publish hands eps to Routes with the stopping pods' endpoints marked
// not ready.
func (c *Controller) publish(ctx context.Context, eps []ServicePortEndpoints) {
	c.mu.Lock()
	out := make([]ServicePortEndpoints, len(eps))
	for i, e := range eps {
		out[i] = e
		out[i].Endpoints = append([]Endpoint(nil), e.Endpoints...)
		for j := range out[i].Endpoints {
			ep := &out[i].Endpoints[j]
			if c.stopping[e.Namespace+"/"+ep.Pod+"@"+ep.Node] {
				ep.Ready = false
			}
		}
	}
	c.mu.Unlock()
	c.Routes(ctx, out)
}

// beforeStop takes a pod out of the load balancer and waits for its
// requests in flight to finish, before the reconciler stops it.
func (c *Controller) beforeStop(ctx context.Context, ns, pod, machine string) {
	c.mu.Lock()
	c.stopping[ns+"/"+pod+"@"+machine] = true
	eps := c.lastEps
	c.mu.Unlock()
	var addrs []string
	for _, e := range eps {
		for _, ep := range e.Endpoints {
			if e.Namespace == ns && ep.Pod == pod && ep.Node == machine && ep.Addr != "" {
				addrs = append(addrs, ep.Addr)
			}
		}
	}
	if len(addrs) == 0 {
		return
	}
	c.publish(ctx, eps)
	if c.Drain != nil {
		dctx, cancel := context.WithTimeout(ctx, drainTimeout)
		c.Drain(dctx, addrs)
		cancel()
	}
}

// drainTimeout bounds the wait for a stopping pod's requests in flight.
const drainTimeout = 30 * time.Second

func (c *Controller) routedOnce() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.routed
}

// afterReady routes a new pod as soon as it is ready, in the middle of a
// pass (a rolling update's old pods stop only after): its machine is
// listed again and the endpoints recomputed from that.
func (c *Controller) afterReady(ctx context.Context, machine string) {
	pods, err := c.R.listPods(ctx, machine)
	if err != nil {
		c.Log.Info("listing a machine for a new pod's endpoints", "machine", machine, "err", err)
		return
	}
	c.routeMu.Lock()
	defer c.routeMu.Unlock()
	c.mu.Lock()
	obs, routed := c.lastObs, c.routed
	// The pass in progress knows the new pods' template.
	if v := c.R.current.Load(); v != nil {
		c.lastTemplates, c.lastServices, c.lastSplits = v.templates, v.services, v.splits
	}
	templates, svcs := c.lastTemplates, c.lastServices
	c.mu.Unlock()
	if !routed {
		return
	}
	merged := make([]PodStatus, 0, len(obs.Pods)+len(pods))
	for _, p := range obs.Pods {
		if p.Node != machine {
			merged = append(merged, p)
		}
	}
	obs.Pods = append(merged, pods...)
	c.routeLocked(ctx, obs, templates, svcs)
}

// CanaryStats is what the load balancer measured for a canary's pods.
type CanaryStats struct {
	Requests, Errors uint64
	P99              time.Duration
}

// canaryJudgeInterval is how often canaries with analysis are judged
// between passes.
const canaryJudgeInterval = time.Second

// judgeCanaries compares each canary's answers at the load balancer
// with its analysis limits, as the last pass read them, and rolls back
// those that exceed them (reading the state file only then), reporting
// whether it did.
func (c *Controller) judgeCanaries(ctx context.Context) bool {
	if c.Stats == nil {
		return false
	}
	c.mu.Lock()
	rollouts, analyses, eps := c.lastRollouts, c.lastAnalyses, c.lastEps
	c.mu.Unlock()
	acted := false
	for key, st := range rollouts {
		a := analyses[key]
		if a == nil || st.Strategy != spec.Canary || !st.Split || st.Phase == PhaseComplete || st.Phase == PhaseFailed {
			continue
		}
		ns, name, _ := strings.Cut(key, "/")
		var addrs []string
		for _, e := range eps {
			if e.Namespace != ns {
				continue
			}
			for _, ep := range e.Endpoints {
				if ep.Canary && ep.Addr != "" && ep.owner == name {
					addrs = append(addrs, ep.Addr)
				}
			}
		}
		if len(addrs) == 0 {
			continue
		}
		reason := verdict(a, c.Stats(addrs))
		if reason == "" {
			continue
		}
		aborted, err := c.R.abort(ctx, key, st.Revision, reason)
		if err != nil {
			c.Log.Warn("canary analysis", "deployment", key, "err", err)
			continue
		}
		if aborted {
			c.Log.Warn("canary aborted; rolled back", "deployment", key, "reason", reason)
			acted = true
		}
	}
	return acted
}
