package reconciler

import (
	"testing"
	"time"

	"github.com/fleetdev/fleet/spec"
)

func TestContainerStatus_Backoff(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tt := range []struct {
		name string
		c    ContainerStatus
		want time.Duration
	}{
		{"the first restart does not wait", ContainerStatus{BackoffStep: 0}, 0},
		{"the second waits 10s", ContainerStatus{BackoffStep: 1, StartedAt: t0, FinishedAt: t0.Add(time.Second)}, 10 * time.Second},
		{"then it doubles", ContainerStatus{BackoffStep: 3, StartedAt: t0, FinishedAt: t0.Add(time.Second)}, 40 * time.Second},
		{"up to five minutes", ContainerStatus{BackoffStep: 40, StartedAt: t0, FinishedAt: t0.Add(time.Second)}, 5 * time.Minute},
		{"ten minutes of running forgive it", ContainerStatus{BackoffStep: 4, StartedAt: t0, FinishedAt: t0.Add(10 * time.Minute)}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.backoff(); got != tt.want {
				t.Fatalf("backoff() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPodStatus_Summarise(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tt := range []struct {
		name       string
		containers []ContainerStatus
		status     string
		ready      bool
		reason     string
		restarts   int
	}{
		{"running without probes is ready", []ContainerStatus{{State: "running"}}, Running, true, "", 0},
		{"a readiness probe not yet run is not ready", []ContainerStatus{{State: "running", Probes: "readiness"}}, Running, false, "NotProbed", 0},
		{"a failing readiness probe says why", []ContainerStatus{{State: "running", Probes: "readiness", Probed: true, Started: true, ProbeMessage: "Readiness probe failed: 503"}}, Running, false, "Unready", 0},
		{"a passing one is ready", []ContainerStatus{{State: "running", Probes: "liveness,readiness", Probed: true, Started: true, ProbeReady: true}}, Running, true, "", 0},
		{"Docker's unhealthy HEALTHCHECK is not ready", []ContainerStatus{{State: "running", Health: "unhealthy"}}, Running, false, "Unhealthy", 0},
		{"Docker restarting it is a crash loop", []ContainerStatus{{State: "running"}, {State: "restarting", Restarts: 3, ExitCode: 2}}, CrashLoopBackOff, false, CrashLoopBackOff, 3},
		{"waiting out fleet's back-off is a crash loop", []ContainerStatus{{State: "exited", ExitCode: 137, BackoffStep: 2, Carried: 2,
			StartedAt: now.Add(-5 * time.Second), FinishedAt: now.Add(-time.Second)}}, CrashLoopBackOff, false, CrashLoopBackOff, 2},
		{"past the back-off it is just stopped", []ContainerStatus{{State: "exited", ExitCode: 1, BackoffStep: 1,
			StartedAt: now.Add(-time.Minute), FinishedAt: now.Add(-30 * time.Second)}}, Failed, false, "Error", 0},
		{"out of memory says so", []ContainerStatus{{State: "exited", OOMKilled: true, ExitCode: 137}}, Failed, false, "OOMKilled", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := PodStatus{Containers: tt.containers}
			p.summarise(now)
			if p.Status != tt.status || p.Ready != tt.ready || p.Reason != tt.reason || p.Restarts != tt.restarts {
				t.Fatalf("got %s ready=%v reason=%q restarts=%d; want %s %v %q %d (%s)", p.Status, p.Ready, p.Reason, p.Restarts, tt.status, tt.ready, tt.reason, tt.restarts, p.Message)
			}
		})
	}
}

func TestProbesAllow(t *testing.T) {
	c := spec.Container{
		StartupProbe:   &spec.Probe{PeriodSeconds: 10, FailureThreshold: 30, SuccessThreshold: 1},
		ReadinessProbe: &spec.Probe{InitialDelaySeconds: 5, PeriodSeconds: 2, FailureThreshold: 3, SuccessThreshold: 1},
	}
	if got, want := probesAllow(c), 300*time.Second+5*time.Second+6*time.Second; got != want {
		t.Fatalf("probesAllow = %s, want %s (the startup probe's 30 tries of 10 s, then readiness)", got, want)
	}
	if got := probesAllow(spec.Container{}); got != 0 {
		t.Fatalf("no probes allow %s", got)
	}
}

func TestPodStatus_SandboxLost(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sandbox := func(state string, started time.Time) *ContainerStatus {
		return &ContainerStatus{Name: SandboxName, State: state, StartedAt: started}
	}
	app := func(state string, started time.Time) []ContainerStatus {
		return []ContainerStatus{{Name: "app", State: state, StartedAt: started}}
	}
	for _, tt := range []struct {
		name string
		p    PodStatus
		want bool
	}{
		{"no sandbox", PodStatus{Containers: app("running", t0)}, false},
		{"started before its containers", PodStatus{Sandbox: sandbox("running", t0), Containers: app("running", t0.Add(time.Millisecond))}, false},
		{"exited", PodStatus{Sandbox: sandbox("exited", t0), Containers: app("running", t0.Add(time.Second))}, true},
		{"started again after a running container", PodStatus{Sandbox: sandbox("running", t0.Add(time.Minute)), Containers: app("running", t0)}, true},
		{"a container not running does not count", PodStatus{Sandbox: sandbox("running", t0.Add(time.Minute)), Containers: app("exited", t0)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.sandboxLost(); got != tt.want {
				t.Fatalf("sandboxLost() = %v, want %v", got, tt.want)
			}
		})
	}
}
