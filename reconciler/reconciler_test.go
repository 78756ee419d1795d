package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// fakeDocker is one machine's engine in memory; createErr makes creates fail.
type fakeDocker struct {
	mu         sync.Mutex
	containers map[string]*container.Summary // by ID
	nextID     int
	createErr  error
	listErr    error
	creates    int
}

func newFakeDocker() *fakeDocker { return &fakeDocker{containers: map[string]*container.Summary{}} }

func (f *fakeDocker) VolumeCreate(_ context.Context, o volume.CreateOptions) (volume.Volume, error) {
	return volume.Volume{Name: o.Name}, nil
}

func (f *fakeDocker) VolumeRemove(context.Context, string, bool) error { return nil }

func (f *fakeDocker) ContainerWait(context.Context, string, container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	ch := make(chan container.WaitResponse, 1)
	ch <- container.WaitResponse{}
	return ch, make(chan error)
}

func (f *fakeDocker) CopyToContainer(context.Context, string, string, io.Reader, container.CopyToContainerOptions) error {
	return nil
}

func (f *fakeDocker) ContainerStatPath(context.Context, string, string) (container.PathStat, error) {
	return container.PathStat{}, errdefs.NotFound(errors.New("no such path"))
}

func (f *fakeDocker) VolumeList(context.Context, volume.ListOptions) (volume.ListResponse, error) {
	return volume.ListResponse{}, nil
}

func (f *fakeDocker) ContainerList(_ context.Context, _ container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []container.Summary
	for _, c := range f.containers {
		out = append(out, *c)
	}
	return out, nil
}

func (f *fakeDocker) ContainerCreate(_ context.Context, cfg *container.Config, _ *container.HostConfig, _ *network.NetworkingConfig, _ *ocispec.Platform, name string) (container.CreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	if f.createErr != nil {
		return container.CreateResponse{}, f.createErr
	}
	for _, c := range f.containers {
		if c.Names[0] == "/"+name {
			return container.CreateResponse{}, errdefs.Conflict(fmt.Errorf("name %s in use", name))
		}
	}
	f.nextID++
	id := fmt.Sprintf("c%03d", f.nextID)
	f.containers[id] = &container.Summary{ID: id, Names: []string{"/" + name}, Image: cfg.Image, Labels: cfg.Labels, State: "created", Created: int64(f.nextID)}
	return container.CreateResponse{ID: id}, nil
}

func (f *fakeDocker) ContainerStart(_ context.Context, id string, _ container.StartOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return errdefs.NotFound(errors.New("no such container"))
	}
	c.State = "running"
	return nil
}

func (f *fakeDocker) ContainerStop(_ context.Context, id string, _ container.StopOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.containers[id]; ok {
		c.State = "exited"
	}
	return nil
}

func (f *fakeDocker) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
	return nil
}

func (f *fakeDocker) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for cid, c := range f.containers {
		if cid == id || c.Names[0] == "/"+id {
			return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: cid, State: &container.State{Running: c.State == "running"}}}, nil
		}
	}
	return container.InspectResponse{}, errdefs.NotFound(errors.New("no such container"))
}

func (f *fakeDocker) count(state string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.containers {
		if state == "" || c.State == state {
			n++
		}
	}
	return n
}

// fakeStore serves Deployments from memory and keeps events.
type fakeStore struct {
	mu          sync.Mutex // passes save machines' pods in parallel
	objs        []store.Object
	events      []store.Event
	machinePods []store.MachinePods
	rollouts    map[string][]byte
}

func (s *fakeStore) List(_ context.Context, kind, _ string) ([]store.Object, error) {
	var out []store.Object
	for _, o := range s.objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out, nil
}

func (s *fakeStore) Revisions(context.Context, string, string, string) ([]store.Revision, error) {
	return []store.Revision{{Revision: 1}}, nil
}

func (s *fakeStore) AddEvents(_ context.Context, evs ...store.Event) error {
	s.events = append(s.events, evs...)
	return nil
}

func (s *fakeStore) SaveMachinePods(_ context.Context, m store.MachinePods) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.machinePods {
		if s.machinePods[i].Machine == m.Machine {
			s.machinePods[i] = m
			return nil
		}
	}
	s.machinePods = append(s.machinePods, m)
	return nil
}

func (s *fakeStore) AllMachinePods(context.Context) ([]store.MachinePods, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.machinePods, nil
}

func (s *fakeStore) Rollouts(context.Context) ([]store.Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Rollout
	for k, b := range s.rollouts {
		ns, name, _ := strings.Cut(k, "/")
		out = append(out, store.Rollout{Namespace: ns, Name: name, State: b})
	}
	return out, nil
}

func (s *fakeStore) SaveRolloutState(_ context.Context, ns, name string, state []byte, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rollouts == nil {
		s.rollouts = map[string][]byte{}
	}
	s.rollouts[ns+"/"+name] = state
	return nil
}

func (s *fakeStore) Change(context.Context, string, string, string, time.Time, func([]byte) (store.Write, error)) (store.Applied, error) {
	return store.Applied{}, errors.New("fakeStore: Change not supported")
}

func (s *fakeStore) Blob(context.Context, string) ([]byte, bool, error) { return nil, false, nil }
func (s *fakeStore) PutBlob(context.Context, string, []byte, time.Time) error {
	return errors.New("fakeStore: PutBlob not supported")
}
func (s *fakeStore) DeleteBlobs(context.Context, string) (int64, error)      { return 0, nil }
func (s *fakeStore) Blobs(context.Context, string) ([]store.BlobInfo, error) { return nil, nil }

func (s *fakeStore) set(t *testing.T, name, image string, replicas int) {
	t.Helper()
	res, err := spec.Parse("app.yaml", []byte(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: %d
  template:
    spec:
      containers:
      - {name: web, image: %q}
`, name, replicas, image)), "default")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res.Objects[0])
	for i, o := range s.objs {
		if o.Name == name {
			s.objs[i].Spec = b
			return
		}
	}
	s.objs = append(s.objs, store.Object{Kind: "Deployment", Namespace: "default", Name: name, Spec: b})
}

type okImages struct{ calls int }

func (i *okImages) Ensure(context.Context, string, []string) map[string]error {
	i.calls++
	return nil
}

func newTestReconciler(machines map[string]*fakeDocker, st *fakeStore) *Reconciler {
	return &Reconciler{
		Store: st,
		Probe: func(context.Context) []node.Status {
			var out []node.Status
			for _, n := range []string{"m1", "m2", "m3"} {
				if _, ok := machines[n]; ok {
					out = append(out, node.Status{Name: n, Status: node.Ready, CPUs: 2, Memory: 4 << 30})
				}
			}
			return out
		},
		Docker: func(m string) (Docker, error) {
			d, ok := machines[m]
			if !ok {
				return nil, fmt.Errorf("no machine %s", m)
			}
			return d, nil
		},
		Images: &okImages{},
		Now:    func() time.Time { return time.Unix(1000, 0) },
	}
}

func TestReconciler_Pass(t *testing.T) {
	ctx := context.Background()
	machines := map[string]*fakeDocker{"m1": newFakeDocker(), "m2": newFakeDocker(), "m3": newFakeDocker()}
	st := &fakeStore{}
	st.set(t, "web", "demo:v1", 3)
	r := newTestReconciler(machines, st)

	res, err := r.Pass(ctx, Options{Prune: true})
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("first pass: %v %v", err, res.Errors)
	}
	for name, m := range machines {
		if m.count("running") != 1 {
			t.Errorf("%s runs %d containers, want 1 (spread)", name, m.count("running"))
		}
	}
	t.Run("a second pass does nothing", func(t *testing.T) {
		res, err := r.Pass(ctx, Options{Prune: true})
		if err != nil || !res.Converged() {
			t.Fatalf("not converged: %v %s", err, res.Summary())
		}
	})
	t.Run("a stopped pod is started again in place", func(t *testing.T) {
		for _, c := range machines["m2"].containers {
			c.State = "exited"
		}
		res, _ := r.Pass(ctx, Options{Prune: true})
		if len(res.Restarts) != 1 || machines["m2"].count("running") != 1 {
			t.Fatalf("restarts %v, m2 running %d", res.Restarts, machines["m2"].count("running"))
		}
	})
	t.Run("a new image replaces every pod, start-first", func(t *testing.T) {
		st.set(t, "web", "demo:v2", 3)
		res, err := r.Pass(ctx, Options{Prune: true})
		if err != nil || len(res.Errors) > 0 {
			t.Fatalf("%v %v", err, res.Errors)
		}
		total := 0
		for _, m := range machines {
			for _, c := range m.containers {
				total++
				if c.Image != "demo:v2" {
					t.Errorf("old container left: %+v", c)
				}
			}
		}
		if total != 3 {
			t.Fatalf("%d containers after the replace, want 3", total)
		}
	})
	t.Run("containers nothing desires are pruned, others' are not", func(t *testing.T) {
		st.objs = nil
		machines["m1"].containers["foreign"] = &container.Summary{ID: "foreign", Names: []string{"/db"}, State: "running", Labels: map[string]string{}}
		if _, err := r.Pass(ctx, Options{Prune: true}); err != nil {
			t.Fatal(err)
		}
		for name, m := range machines {
			for id := range m.containers {
				if id != "foreign" {
					t.Errorf("%s still runs %s", name, id)
				}
			}
		}
		if _, ok := machines["m1"].containers["foreign"]; !ok {
			t.Fatal("a container without fleet's labels was removed")
		}
	})
}

func TestReconciler_PassFailures(t *testing.T) {
	ctx := context.Background()
	machines := map[string]*fakeDocker{"m1": newFakeDocker(), "m2": newFakeDocker()}
	machines["m2"].createErr = errors.New("no space left on device")
	st := &fakeStore{}
	st.set(t, "web", "demo:v1", 2)
	r := newTestReconciler(machines, st)
	res, err := r.Pass(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Error(), "m2: create container") || !strings.Contains(res.Errors[0].Error(), "no space left") {
		t.Fatalf("errors %v, want one naming m2 and the create step", res.Errors)
	}
	if machines["m1"].count("running") != 1 {
		t.Fatalf("m1 should still start its replica")
	}
	if res.Converged() {
		t.Fatal("a pass with errors is not converged")
	}
	var warned bool
	for _, e := range st.events {
		warned = warned || (e.Type == "Warning" && e.Machine == "m2")
	}
	if !warned {
		t.Fatalf("no warning event for m2: %+v", st.events)
	}
	t.Run("dry run changes nothing", func(t *testing.T) {
		machines["m2"].createErr = nil
		before := machines["m2"].creates
		res, err := r.Pass(ctx, Options{DryRun: true})
		if err != nil || res.Plan.Empty() || machines["m2"].creates != before {
			t.Fatalf("dry run: %v, plan %v, creates %d → %d", err, res.Plan, before, machines["m2"].creates)
		}
	})
}

func TestReconciler_PassListFailure(t *testing.T) {
	ctx := context.Background()
	machines := map[string]*fakeDocker{"m1": newFakeDocker(), "m2": newFakeDocker(), "m3": newFakeDocker()}
	st := &fakeStore{}
	st.set(t, "web", "demo:v1", 3)
	r := newTestReconciler(machines, st)
	now := time.Unix(1000, 0)
	r.Now = func() time.Time { return now }
	if res, err := r.Pass(ctx, Options{Prune: true}); err != nil || len(res.Errors) > 0 {
		t.Fatalf("first pass: %v %v", err, res.Errors)
	}

	t.Run("a machine that answers but cannot list keeps its pods counted", func(t *testing.T) {
		machines["m2"].listErr = errors.New("context deadline exceeded")
		now = now.Add(10 * time.Second)
		res, err := r.Pass(ctx, Options{Prune: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Plan.Empty() {
			t.Fatalf("planned %v; m2's last-seen pod should still count", res.Plan)
		}
		var unknown int
		for _, p := range res.Observed.Pods {
			if p.Node == "m2" && p.Status == Unknown {
				unknown++
			}
		}
		if unknown != 1 || res.Converged() {
			t.Fatalf("m2 shows %d Unknown pods, converged %v; want 1, false", unknown, res.Converged())
		}
	})
	t.Run("one that cannot be listed and no longer answers pings is lost at once", func(t *testing.T) {
		r.silent = func(m string) bool { return m == "m2" }
		defer func() { r.silent = nil }()
		res, err := r.Pass(ctx, Options{DryRun: true}) // marks m2 as cut off
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Plan.Steps) != 1 || !strings.Contains(res.Plan.Steps[0].String(), "lost with m2") {
			t.Fatalf("plan %v; want m2's pod replaced elsewhere", res.Plan)
		}
	})
	t.Run("pods older than its return are stopped first when there are too many", func(t *testing.T) {
		// m2 lists again; meanwhile its pod was replaced elsewhere (a
		// fourth pod on m1 or m3 stands for the replacement).
		machines["m2"].listErr = nil
		st.set(t, "web", "demo:v1", 4)
		now = now.Add(10 * time.Second)
		if _, err := r.Pass(ctx, Options{Prune: true}); err != nil {
			t.Fatal(err)
		}
		for name, m := range machines {
			for _, c := range m.containers {
				c.Created = now.Unix()
				if name == "m2" {
					c.Created = now.Add(-time.Minute).Unix()
				}
			}
		}
		st.set(t, "web", "demo:v1", 3)
		now = now.Add(10 * time.Second)
		res, err := r.Pass(ctx, Options{Prune: true})
		if err != nil {
			t.Fatal(err)
		}
		var stops []string
		for _, s := range res.Plan.Steps {
			stops = append(stops, s.String())
		}
		if len(stops) != 1 || !strings.Contains(stops[0], "on m2") || !strings.Contains(stops[0], "unreachable") {
			t.Fatalf("steps %v; want the pod older than m2's return stopped", stops)
		}
	})
}
