package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/store"
)

// fakeEngines hands out Docker clients pointed at test HTTP servers, or an
// error, per machine.
type fakeEngines map[string]any

func (f fakeEngines) Docker(name string) (*client.Client, error) {
	switch v := f[name].(type) {
	case error:
		return nil, v
	case string:
		return client.NewClientWithOpts(client.WithHost(v), client.WithAPIVersionNegotiation())
	}
	return nil, fmt.Errorf("no engine for %s", name)
}

func engine(t *testing.T, handler http.HandlerFunc) string {
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String()
}

func dockerAPI(ncpu int, mem int64, hang <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if hang != nil {
			<-hang
		}
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Server", "Docker/20.10.24 (linux)")
		switch {
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			fmt.Fprint(w, `[{"Id":"1"},{"Id":"2"}]`)
		case r.URL.Path == "/_ping":
			fmt.Fprint(w, "OK")
		case len(r.URL.Path) > 5 && r.URL.Path[len(r.URL.Path)-5:] == "/info":
			fmt.Fprintf(w, `{"NCPU":%d,"MemTotal":%d,"ServerVersion":"20.10.24","ContainersRunning":4}`, ncpu, mem)
		default:
			http.NotFound(w, r)
		}
	}
}

func TestProbe(t *testing.T) {
	inv, err := inventory.Parse("inv.yaml", []byte(`
machines:
  - name: a
    address: 10.0.0.1
  - name: b
    address: 10.0.0.2
    capacity: {cpu: 500m, memory: 1Gi}
  - name: c
    address: 10.0.0.3
  - name: d
    address: 10.0.0.4
`))
	if err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	defer close(hang)
	engines := fakeEngines{
		"a": engine(t, dockerAPI(8, 16<<30, nil)),
		"b": engine(t, dockerAPI(8, 16<<30, nil)),
		"c": errors.New("c (10.0.0.3:22): connect: connection refused"),
		"d": engine(t, dockerAPI(8, 16<<30, hang)),
	}
	start := time.Now()
	got := Probe(context.Background(), inv, engines, Options{Timeout: 300 * time.Millisecond})
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a hung engine held Probe for %s", took)
	}
	byName := map[string]Status{}
	for _, s := range got {
		byName[s.Name] = s
	}
	t.Run("a healthy machine is Ready with Docker's figures", func(t *testing.T) {
		a := byName["a"]
		if a.Status != Ready || a.CPUs != 8 || a.Memory != 16<<30 || a.Containers != 4 || a.DockerVersion != "20.10.24" {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("the inventory's capacity overrides Docker's", func(t *testing.T) {
		b := byName["b"]
		if b.Status != Ready || b.CPUs != 0.5 || b.Memory != 1<<30 {
			t.Fatalf("%+v", b)
		}
	})
	t.Run("an unreachable machine is NotReady with a reason", func(t *testing.T) {
		c := byName["c"]
		if c.Status != NotReady || c.Reason != "unreachable" || c.Error == "" {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("a hung machine is NotReady after its own timeout", func(t *testing.T) {
		d := byName["d"]
		if d.Status != NotReady || d.Reason != "unreachable (timed out)" {
			t.Fatalf("%+v", d)
		}
	})
}

// memFacts is an in-memory FactCache.
type memFacts map[string]store.NodeFacts

func (m memFacts) NodeFacts(_ context.Context, name string) (store.NodeFacts, bool, error) {
	f, ok := m[name]
	return f, ok, nil
}

func (m memFacts) SaveNodeFacts(_ context.Context, f store.NodeFacts) error {
	m[f.Name] = f
	return nil
}

func TestProbe_FactCache(t *testing.T) {
	inv, err := inventory.Parse("inv.yaml", []byte("machines:\n  - name: a\n    address: 10.0.0.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	var infoCalls int
	api := dockerAPI(8, 16<<30, nil)
	engines := fakeEngines{"a": engine(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/info") {
			infoCalls++
		}
		api(w, r)
	})}
	now := time.Unix(1000, 0)
	facts := memFacts{}
	opts := Options{Facts: facts, Now: func() time.Time { return now }}

	first := Probe(context.Background(), inv, engines, opts)[0]
	if first.Status != Ready || infoCalls != 1 || facts["a"].NCPU != 8 {
		t.Fatalf("first probe: %+v, info calls %d, facts %+v", first, infoCalls, facts)
	}
	t.Run("fresh facts spare the /info call and count running containers", func(t *testing.T) {
		now = now.Add(time.Minute)
		got := Probe(context.Background(), inv, engines, opts)[0]
		if infoCalls != 1 || got.CPUs != 8 || got.Memory != 16<<30 || got.Containers != 2 || got.DockerVersion != "20.10.24" {
			t.Fatalf("%+v, info calls %d", got, infoCalls)
		}
	})
	t.Run("stale facts are asked again", func(t *testing.T) {
		now = now.Add(time.Hour)
		Probe(context.Background(), inv, engines, opts)
		if infoCalls != 2 {
			t.Fatalf("info calls %d, want 2", infoCalls)
		}
	})
	t.Run("a changed engine version is asked again", func(t *testing.T) {
		f := facts["a"]
		f.DockerVersion = "19.03"
		f.ObservedAt = now
		facts["a"] = f
		Probe(context.Background(), inv, engines, opts)
		if infoCalls != 3 || facts["a"].DockerVersion != "20.10.24" {
			t.Fatalf("info calls %d, facts %+v", infoCalls, facts["a"])
		}
	})
}
