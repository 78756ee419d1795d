package reconciler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/errdefs"

	"github.com/fleetdev/fleet/planner"
	"github.com/fleetdev/fleet/spec"
)

// LabelInit marks an init container: it runs to completion before the
// pod's containers start, and is removed once it succeeded.
const LabelInit = "fleet.init"

// errInit is a pod whose init container failed: the pod is taken down,
// and its Deployment waits out a back-off before the next try.
type errInit struct{ err error }

func (e errInit) Error() string { return e.err.Error() }

// runInits runs the init containers of run s one after another in the
// pod's sandbox, each to completion; the first that fails ends it.
func (e *executor) runInits(ctx context.Context, dk Docker, s planner.Run, tpl *spec.PodTemplate, sandboxID string) error {
	d := e.byKey[s.Workload]
	ns, owner := d.workload.Namespace, d.workload.Name
	// They may take long (a schema migration): the progress deadline.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(d.deploy.ProgressDeadlineSeconds, 60))*time.Second)
	defer cancel()
	for _, c := range tpl.Spec.InitContainers {
		env, err := d.configs.env(ns, c)
		if err != nil {
			return fmt.Errorf("init container %s: %w", c.Name, err)
		}
		mounts, binds, err := e.volumeMounts(ctx, dk, ns, s.Pod, s.Node, tpl.Spec, c)
		if err != nil {
			return fmt.Errorf("init container %s: %w", c.Name, err)
		}
		cfg, host := containerConfig(ns, owner, s.Pod, s.Revision, s.SpecHash, tpl.Spec, c, env, mounts, binds, nil)
		joinSandbox(cfg, host, sandboxID)
		cfg.Labels[LabelInit] = "true"
		delete(cfg.Labels, LabelProbes)
		host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyDisabled}
		name := ContainerName(ns, s.Pod, c.Name)
		created, err := dk.ContainerCreate(ctx, cfg, host, nil, nil, name)
		if errdefs.IsConflict(err) {
			// Left by an interrupted pass: run it afresh.
			dk.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
			created, err = dk.ContainerCreate(ctx, cfg, host, nil, nil, name)
		}
		if err != nil {
			return fmt.Errorf("create init container %s: %w", name, err)
		}
		waitCh, errCh := dk.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
		if err := dk.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
			return fmt.Errorf("start init container %s: %w", name, err)
		}
		var code int64
		select {
		case res := <-waitCh:
			code = res.StatusCode
		case err := <-errCh:
			return fmt.Errorf("wait for init container %s: %w", name, err)
		case <-ctx.Done():
			return errInit{fmt.Errorf("init container %s did not finish within progressDeadlineSeconds", c.Name)}
		}
		if code != 0 {
			return errInit{fmt.Errorf("init container %s exited with %d", c.Name, code)}
		}
		if err := dk.ContainerRemove(ctx, created.ID, container.RemoveOptions{}); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove init container %s: %w", name, err)
		}
		e.event("Normal", "Initialized", ns, s.Pod, s.Node, fmt.Sprintf("init container %s completed", c.Name))
	}
	return nil
}

// takeDown removes what a pod that failed to start left: its init
// containers, its sandbox and its emptyDir volumes.
func takeDown(ctx context.Context, dk Docker, ns, pod string, tpl *spec.PodTemplate) {
	for _, c := range append(slices.Clip(tpl.Spec.InitContainers), tpl.Spec.Containers...) {
		dk.ContainerRemove(ctx, ContainerName(ns, pod, c.Name), container.RemoveOptions{Force: true})
	}
	dk.ContainerRemove(ctx, ContainerName(ns, pod, SandboxName), container.RemoveOptions{Force: true})
	removePodVolumes(ctx, dk, ns, pod)
}

// initBackoff holds back Deployments whose init containers fail: 10 s,
// doubling to 5 min, as a crash loop; reset by a pod that started.
type initBackoff struct {
	mu    sync.Mutex
	steps map[string]int       // workload → failures in a row
	until map[string]time.Time // workload → no new pod before
}

func (b *initBackoff) failed(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.steps == nil {
		b.steps, b.until = map[string]int{}, map[string]time.Time{}
	}
	b.steps[key]++
	wait := min(10*time.Second<<(b.steps[key]-1), 5*time.Minute)
	b.until[key] = now.Add(wait)
	return wait
}

func (b *initBackoff) started(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.steps, key)
	delete(b.until, key)
}

// holding reports how long workload key is still held back.
func (b *initBackoff) holding(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.until[key].Sub(now)
}

// exclude drops the starts of workloads held back, and says when the
// first hold ends.
func (b *initBackoff) exclude(plan planner.Plan, now time.Time) (planner.Plan, time.Duration) {
	var kept []planner.Step
	var next time.Duration
	for _, st := range plan.Steps {
		_, stop := st.(planner.Stop)
		if wait := b.holding(planner.WorkloadOf(st), now); !stop && wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		kept = append(kept, st)
	}
	plan.Steps = kept
	return plan, next
}
