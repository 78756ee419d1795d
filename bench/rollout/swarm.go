package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/fleetdev/fleet/bench/benchkit"
	"github.com/fleetdev/fleet/sandbox"
	"github.com/fleetdev/fleet/sshexec"
)

// serviceName is the Swarm service's name.
const serviceName = "rollbench"

// swarmBench is Swarm's side: a service of the same image and replicas,
// health-checked like fleet's readiness probe, published on the routing
// mesh, updated with `docker service update --image`.
type swarmBench struct {
	config
	sb   *sandbox.Sandbox
	pool *sshexec.Pool
	mgr  sandbox.Host
	d    *client.Client
	// noMesh says why the rollouts run without load, when they do.
	noMesh string
}

func (s *swarmBench) url() string { return fmt.Sprintf("http://%s:%d/", s.mgr.Address, s.swarmPort) }

// run makes the hosts a Swarm, creates the service at v1, rolls it to
// v2 with the default update settings, back to v1 (not measured), to v2
// again with start-first, and takes the Swarm down.
func (s *swarmBench) run(ctx context.Context) (stopFirst, startFirst phase) {
	mgr, run, leave := benchkit.Swarm(ctx, s.sb)
	atExit(leave)
	s.mgr = mgr
	d, err := s.pool.Docker(mgr.Name)
	check(err)
	s.d = d
	// The routing mesh balances with the kernel's IPVS; without it a
	// published port refuses every connection, and Swarm's attempts to
	// program it on every task change would only slow Swarm down. Then
	// the rollouts are timed without load and the service publishes
	// nothing.
	if code, _, err := s.sb.Exec(ctx, mgr.Name, "test", "-e", "/proc/net/ip_vs"); err != nil || code != 0 {
		s.noMesh = "no routing mesh: this kernel has no IPVS (/proc/net/ip_vs is missing on the hosts), which Swarm's mesh needs"
	}
	s.create(ctx)
	atExit(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d.ServiceRemove(cctx, serviceName)
	})
	if !waitUntil(s.wait, 250*time.Millisecond, func() bool { return s.converged(ctx, "fleet-demo:v1") }) {
		fatalf("swarm: %d tasks of v1 not running and healthy after %s", s.replicas, s.wait)
	}
	if s.noMesh == "" {
		client := &http.Client{Timeout: 2 * time.Second}
		ok := 0
		if !waitUntil(s.wait, 100*time.Millisecond, func() bool {
			if version, reason := get(ctx, client, s.url()); reason == "" && version == "v1" {
				ok++
			} else {
				ok = 0
			}
			return ok >= 20
		}) {
			s.noMesh = fmt.Sprintf("no routing mesh: %s did not answer in %s", s.url(), s.wait)
		}
	}
	stopFirst = s.update(ctx, "fleet-demo:v2")
	run(mgr.Name, "docker", "service", "update", "--detach=false", "--no-resolve-image", "--image", "fleet-demo:v1", serviceName)
	if !waitUntil(s.wait, 250*time.Millisecond, func() bool { return s.converged(ctx, "fleet-demo:v1") }) {
		fatalf("swarm: back to v1, %d tasks not running and healthy after %s", s.replicas, s.wait)
	}
	startFirst = s.update(ctx, "fleet-demo:v2", "--update-order", "start-first")
	run(mgr.Name, "docker", "service", "rm", serviceName)
	// Leaving the Swarm stops the service's containers only when they are
	// gone already; wait for that, so the sandbox is as it was.
	waitUntil(s.wait, 500*time.Millisecond, func() bool {
		list, err := d.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+serviceName))})
		return err == nil && len(list) == 0
	})
	return stopFirst, startFirst
}

// create makes the service with the API rather than the docker CLI: the
// CLI's --health-cmd runs through /bin/sh, which the demo image does not
// have, and `/demo check` must be exec'd directly. Its update and rollback
// settings are those `docker service create` sets by default.
func (s *swarmBench) create(ctx context.Context) {
	replicas := uint64(s.replicas)
	defaults := &swarm.UpdateConfig{Parallelism: 1, Delay: 0, FailureAction: swarm.UpdateFailureActionPause,
		Monitor: 5 * time.Second, MaxFailureRatio: 0, Order: swarm.UpdateOrderStopFirst}
	rollback := *defaults
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: serviceName},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: "fleet-demo:v1",
				// Fleet's readiness probe, as a HEALTHCHECK: every second,
				// unhealthy after one failure.
				Healthcheck: &container.HealthConfig{
					Test:     []string{"CMD", "/demo", "check", "http://127.0.0.1:8080/ready"},
					Interval: time.Second, Timeout: time.Second, Retries: 1,
				},
			},
		},
		Mode:           swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		UpdateConfig:   defaults,
		RollbackConfig: &rollback,
	}
	if s.noMesh == "" {
		spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{
			Protocol: swarm.PortConfigProtocolTCP, TargetPort: 8080, PublishedPort: uint32(s.swarmPort),
			PublishMode: swarm.PortConfigPublishModeIngress,
		}}}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.d.ServiceCreate(cctx, spec, swarm.ServiceCreateOptions{QueryRegistry: false}); err != nil {
		fatalf("swarm: create service %s: %v", serviceName, err)
	}
}

// converged says whether exactly the service's replicas run, every one
// image and healthy (Swarm marks a task running only once its
// HEALTHCHECK passed).
func (s *swarmBench) converged(ctx context.Context, image string) bool {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tasks, err := s.d.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceName))})
	if err != nil {
		return false
	}
	want, other := 0, 0
	for _, t := range tasks {
		if t.Status.State != swarm.TaskStateRunning {
			continue
		}
		if t.DesiredState == swarm.TaskStateRunning && t.Spec.ContainerSpec != nil && t.Spec.ContainerSpec.Image == image {
			want++
		} else {
			other++
		}
	}
	return want == s.replicas && other == 0
}

// update runs `docker service update --image image` on the manager under
// load and times it, and, beside it, when every task ran the new image.
func (s *swarmBench) update(ctx context.Context, image string, flags ...string) phase {
	var l *load
	if s.noMesh == "" {
		l = startLoad(s.url(), s.rate, s.workers, maxLoad)
	}
	t0 := time.Now()
	var converged atomic.Int64
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for pollCtx.Err() == nil {
			if s.converged(pollCtx, image) {
				converged.Store(int64(time.Since(t0)))
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	argv := append([]string{"docker", "service", "update", "--detach=false", "--no-resolve-image", "--image", image}, flags...)
	argv = append(argv, serviceName)
	cctx, cancel := context.WithTimeout(ctx, s.wait)
	code, out, err := s.sb.Exec(cctx, s.mgr.Name, argv...)
	cancel()
	wall := time.Since(t0)
	var p phase
	switch {
	case err != nil || code != 0:
		p.note = fmt.Sprintf("did not finish in %s", s.wait)
		if err == nil {
			p.note = fmt.Sprintf("docker service update: exit %d", code)
		}
		p.more = append(p.more, fmt.Sprintf("%s: exit %d, %v: %s", strings.Join(argv, " "), code, err, lastLine(out)))
	default:
		p.done, p.wall = true, wall
	}
	// The CLI returns after its own 5 s stability check; the tasks are
	// usually there before it.
	select {
	case <-polled:
	case <-time.After(max(s.wait-time.Since(t0), 0)):
	}
	stopPoll()
	<-polled
	if c := time.Duration(converged.Load()); c > 0 {
		p.converged = c
		p.more = append(p.more, fmt.Sprintf("all %d tasks on %s, running and healthy after %s (seen by polling the manager every 250ms); docker service update returned after %s", s.replicas, image, benchkit.Secs(c), benchkit.Secs(wall)))
	} else {
		p.more = append(p.more, fmt.Sprintf("the %d tasks were not all on %s and healthy after %s", s.replicas, image, s.wait))
	}
	if l == nil {
		p.noLoad = s.noMesh
		return p
	}
	time.Sleep(2 * time.Second)
	p.load = l.stop()
	return p
}
