package reconciler

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/fleetdev/fleet/probe"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// Health runs the probes of every running container that has any, with
// kubelet's semantics: the startup probe first (liveness and readiness
// wait for it), then liveness and readiness, each on its own period with
// its thresholds. Verdicts go to the Reconciler's memory (the next
// listing, and the state file, show them); a container that fails its
// liveness or startup probe is stopped, and the next pass starts it
// again after its back-off. Owned by a Controller.
type Health struct {
	R      *Reconciler
	Runner *probe.Runner
	// Changed is called when a readiness verdict changes or a container
	// was stopped: the controller passes soon.
	Changed func()

	mu      sync.Mutex
	workers map[string]context.CancelFunc // by container ID and start time
	running sync.WaitGroup
}

// workerKey names one run of one container: a restarted container is
// probed afresh.
func workerKey(c ContainerStatus) string { return c.ID + "@" + c.StartedAt.String() }

// Sync starts probing the running containers with probes in pods and
// stops probing those gone, stopped or restarted. templates finds a pod's
// template by namespace, owner and spec hash.
func (h *Health) Sync(ctx context.Context, pods []PodStatus, templates map[string]*spec.PodTemplate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.workers == nil {
		h.workers = map[string]context.CancelFunc{}
	}
	want := map[string]bool{}
	for _, p := range pods {
		tmpl := templateOf(templates, p)
		if tmpl == nil || p.Status == Unknown {
			continue
		}
		ps := &tmpl.Spec
		for _, c := range p.Containers {
			if c.State != "running" || c.Probes == "" {
				continue
			}
			sc := containerSpec(ps, c.Name)
			if sc == nil {
				continue
			}
			k := workerKey(c)
			want[k] = true
			if _, ok := h.workers[k]; ok {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			h.workers[k] = cancel
			w := &prober{h: h, pod: p, c: c, spec: sc, grace: ps.TerminationGracePeriodSeconds,
				target: probe.Target{Machine: p.Node, ContainerID: c.ID, IP: p.PodIP(), Ports: sc.Ports}}
			if c.Probed {
				// Verdicts recorded earlier (by a serve before this one, or
				// a replacement's gate) hold until a probe says otherwise:
				// a controller restart does not make ready pods unready.
				w.started, w.ready, w.msg = c.Started, c.ProbeReady, c.ProbeMessage
			}
			h.running.Add(1)
			go func() {
				defer h.running.Done()
				w.run(wctx)
			}()
		}
	}
	for k, cancel := range h.workers {
		if !want[k] {
			cancel()
			delete(h.workers, k)
		}
	}
}

// Stop ends all probing and waits for the probers to exit (a container
// being stopped for a failed probe finishes stopping).
func (h *Health) Stop() {
	h.mu.Lock()
	for k, cancel := range h.workers {
		cancel()
		delete(h.workers, k)
	}
	h.mu.Unlock()
	h.running.Wait()
}

func templateKey(ns, owner, hash string) string { return ns + "/" + owner + "@" + hash }

// revisionKey keys the template of a Deployment's revision.
func revisionKey(ns, owner string, rev int64) string {
	return ns + "/" + owner + "#" + strconv.FormatInt(rev, 10)
}

// templateOf is the template pod p runs: by its spec hash, else by its
// revision. A pod whose consumed ConfigMap or Secret changed since it
// started carries a hash no longer computed; until it is replaced, it is
// probed and serves as its revision's template says.
func templateOf(templates map[string]*spec.PodTemplate, p PodStatus) *spec.PodTemplate {
	if t := templates[templateKey(p.Namespace, p.Owner, p.SpecHash)]; t != nil {
		return t
	}
	return templates[revisionKey(p.Namespace, p.Owner, p.Revision)]
}

func containerSpec(ps *spec.PodSpec, name string) *spec.Container {
	for i := range ps.Containers {
		if ps.Containers[i].Name == name {
			return &ps.Containers[i]
		}
	}
	return nil
}

// prober probes one run of one container.
type prober struct {
	h      *Health
	pod    PodStatus
	c      ContainerStatus
	spec   *spec.Container
	grace  int
	target probe.Target

	mu      sync.Mutex
	started bool
	ready   bool
	msg     string
}

func (w *prober) run(ctx context.Context) {
	if !w.c.Probed {
		w.started = w.spec.StartupProbe == nil
		w.ready = w.started && w.spec.ReadinessProbe == nil
	}
	w.report()
	if !w.started {
		ok := w.loop(ctx, w.spec.StartupProbe, "Startup", func(ok bool, msg string, fails int) bool {
			if ok {
				w.set(func() { w.started, w.ready, w.msg = true, w.spec.ReadinessProbe == nil, "" })
				return false
			}
			w.set(func() { w.msg = "Startup probe failed: " + msg })
			return fails < w.spec.StartupProbe.FailureThreshold
		})
		if !ok {
			w.kill(ctx, "Startup")
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
	var wg sync.WaitGroup
	if p := w.spec.ReadinessProbe; p != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			successes := 0
			w.loop(ctx, p, "Readiness", func(ok bool, msg string, fails int) bool {
				if ok {
					successes++
					if successes >= max(p.SuccessThreshold, 1) {
						w.set(func() { w.ready, w.msg = true, "" })
					}
					return true
				}
				successes = 0
				if fails >= p.FailureThreshold {
					w.set(func() { w.ready, w.msg = false, "Readiness probe failed: "+msg })
				} else {
					w.set(func() { w.msg = "Readiness probe failed: " + msg })
				}
				return true
			})
		}()
	}
	if p := w.spec.LivenessProbe; p != nil {
		if !w.loop(ctx, p, "Liveness", func(ok bool, msg string, fails int) bool {
			return ok || fails < p.FailureThreshold
		}) {
			w.kill(ctx, "Liveness")
		}
	}
	wg.Wait()
}

// loop runs p from the container's start plus its initial delay, every
// period, handing each result to judge (with the count of failures in a
// row) until judge says stop or ctx ends. It returns judge's last word:
// false means the probe failed for good.
func (w *prober) loop(ctx context.Context, p *spec.Probe, kind string, judge func(ok bool, msg string, fails int) bool) bool {
	start := w.c.StartedAt.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
	wait := time.Until(start)
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return true
		case <-time.After(max(wait, 0)):
		}
		wait = period
		res := w.h.Runner.Run(ctx, p, w.target)
		if ctx.Err() != nil {
			return true
		}
		if res.OK {
			fails = 0
		} else {
			fails++
			if fails == 1 || fails == p.FailureThreshold {
				w.event("Warning", "Unhealthy", fmt.Sprintf("%s probe failed (%d/%d) for container %s: %s", kind, fails, p.FailureThreshold, w.c.Name, res.Message))
			}
		}
		if !judge(res.OK, res.Message, fails) {
			return res.OK
		}
	}
}

func (w *prober) set(f func()) {
	w.mu.Lock()
	f()
	w.mu.Unlock()
	w.report()
}

func (w *prober) report() {
	w.mu.Lock()
	started, ready, msg := w.started, w.ready, w.msg
	w.mu.Unlock()
	if w.h.R.probed(w.c.ID, w.c.StartedAt, started, ready, msg) && w.h.Changed != nil {
		w.h.Changed()
	}
}

// kill stops the container after a failed liveness or startup probe; the
// next pass starts it again, after its back-off.
func (w *prober) kill(ctx context.Context, kind string) {
	if ctx.Err() != nil {
		return
	}
	w.event("Normal", "Killing", fmt.Sprintf("container %s failed its %s probe and will be restarted", w.c.Name, strings.ToLower(kind)))
	w.h.R.log().Info("stopping a container that failed its probe", "namespace", w.pod.Namespace, "name", w.pod.Name,
		"container", w.c.Name, "machine", w.pod.Node, "probe", kind)
	d, err := w.h.R.Docker(w.pod.Node)
	if err == nil {
		grace := w.grace
		if grace <= 0 {
			grace = 30
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(grace)*time.Second+opTimeout)
		err = d.ContainerStop(sctx, w.c.ID, container.StopOptions{Timeout: &grace})
		cancel()
	}
	if err != nil {
		w.event("Warning", "Failed", fmt.Sprintf("stop container %s after its failed %s probe: %v", w.c.Name, strings.ToLower(kind), err))
	}
	if w.h.Changed != nil {
		w.h.Changed()
	}
}

func (w *prober) event(typ, reason, msg string) {
	ev := store.Event{At: w.h.R.now(), Type: typ, Reason: reason, Namespace: w.pod.Namespace, Kind: "Pod", Name: w.pod.Name, Machine: w.pod.Node, Message: msg}
	if err := w.h.R.Store.AddEvents(context.Background(), ev); err != nil {
		w.h.R.log().Warn("cannot record an event", "err", err)
	}
}
