// Package node reports the state of each machine in the inventory by
// contacting all of them at once.
package node

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/sshexec"
	"github.com/fleetdev/fleet/store"
)

// Node statuses.
const (
	Ready    = "Ready"
	NotReady = "NotReady"
)

// Status is one machine as observed now.
type Status struct {
	Name          string            `json:"name" yaml:"name"`
	Address       string            `json:"address" yaml:"address"`
	Status        string            `json:"status" yaml:"status"`
	Reason        string            `json:"reason,omitempty" yaml:"reason,omitempty"`
	Error         string            `json:"error,omitempty" yaml:"error,omitempty"`
	DockerVersion string            `json:"dockerVersion,omitempty" yaml:"dockerVersion,omitempty"`
	CPUs          float64           `json:"cpus" yaml:"cpus"`
	Memory        int64             `json:"memory" yaml:"memory"`
	Containers    int               `json:"containers" yaml:"containers"`
	Labels        map[string]string `json:"labels" yaml:"labels"`
	// Since is when the machine last changed between Ready and NotReady,
	// as fleet serve recorded it (zero when no change was recorded).
	Since time.Time `json:"since,omitzero" yaml:"since,omitempty"`
	// Latency is how long contacting the machine took.
	Latency time.Duration `json:"-" yaml:"-"`
	// LatencyMs is Latency in milliseconds, for scripts.
	LatencyMs int64 `json:"latencyMs" yaml:"latencyMs"`
}

// Dialer gives a Docker client per machine; *sshexec.Pool satisfies it.
type Dialer interface {
	Docker(name string) (*client.Client, error)
}

var _ Dialer = (*sshexec.Pool)(nil)

// FactCache remembers what engines said about themselves; *store.Store
// satisfies it.
type FactCache interface {
	NodeFacts(ctx context.Context, name string) (store.NodeFacts, bool, error)
	SaveNodeFacts(ctx context.Context, f store.NodeFacts) error
}

var _ FactCache = (*store.Store)(nil)

// Options tune Probe.
type Options struct {
	// Timeout bounds contacting one machine. Default 2s.
	Timeout time.Duration
	// Facts caches CPU and memory figures between runs; nil asks every
	// engine's /info every time.
	Facts FactCache
	// MaxAge is how long cached figures are trusted. Default 10m. Cached
	// figures are never used if the engine's version changed; a replaced
	// machine is refused by host key checking before this matters.
	MaxAge time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Probe contacts every machine in parallel, each within its own timeout,
// so one slow or dead machine never delays the others.
//
// Docker's /info is slow (the engine runs helper binaries to answer it), so
// when fresh cached figures exist Probe asks only /_ping (which carries the
// engine version) and the list of running containers.
func Probe(ctx context.Context, inv *inventory.Inventory, d Dialer, opts Options) []Status {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	out := make([]Status, len(inv.Machines))
	var wg sync.WaitGroup
	for i, m := range inv.Machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
			defer cancel()
			out[i] = probeOne(ctx, m, d, opts)
		}()
	}
	wg.Wait()
	return out
}

func probeOne(ctx context.Context, m inventory.Machine, d Dialer, opts Options) Status {
	start := time.Now()
	st := Status{Name: m.Name, Address: m.Address, Status: NotReady, Labels: m.Labels}
	done := func() Status {
		st.Latency = time.Since(start)
		st.LatencyMs = st.Latency.Milliseconds()
		return st
	}
	fail := func(err error) Status {
		st.Reason = sshexec.Reason(err)
		st.Error = err.Error()
		return done()
	}
	cli, err := d.Docker(m.Name)
	if err != nil {
		return fail(err)
	}
	version, err := Ping(ctx, cli)
	if err != nil {
		return fail(err)
	}
	var cached store.NodeFacts
	var fresh bool
	if opts.Facts != nil {
		f, ok, err := opts.Facts.NodeFacts(ctx, m.Name)
		fresh = err == nil && ok && f.DockerVersion == version && f.Address == m.Address &&
			opts.Now().Sub(f.ObservedAt) < opts.MaxAge
		cached = f
	}
	if fresh {
		running, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("status", "running"))})
		if err != nil {
			return fail(err)
		}
		st.DockerVersion, st.CPUs, st.Memory, st.Containers = cached.DockerVersion, float64(cached.NCPU), cached.MemTotal, len(running)
	} else {
		info, err := cli.Info(ctx)
		if err != nil {
			return fail(err)
		}
		st.DockerVersion, st.CPUs, st.Memory, st.Containers = info.ServerVersion, float64(info.NCPU), info.MemTotal, info.ContainersRunning
		if opts.Facts != nil {
			// A failed save only costs the next run an /info call.
			_ = opts.Facts.SaveNodeFacts(ctx, store.NodeFacts{
				Name: m.Name, Address: m.Address, EngineID: info.ID, DockerVersion: info.ServerVersion,
				NCPU: info.NCPU, MemTotal: info.MemTotal, ObservedAt: opts.Now().UTC(),
			})
		}
	}
	st.Status = Ready
	if m.Capacity.MilliCPU > 0 {
		st.CPUs = float64(m.Capacity.MilliCPU) / 1000
	}
	if m.Capacity.MemoryBytes > 0 {
		st.Memory = m.Capacity.MemoryBytes
	}
	return done()
}

// Ping asks the engine's /_ping, which proves the API answers, and returns
// the engine version from its Server header ("Docker/20.10.24 (linux)").
// It also settles the API version the client speaks. Unlike the Docker
// client's own Ping, its errors keep the machine and the failed step.
func Ping(ctx context.Context, cli *client.Client) (string, error) {
	base := cli.DaemonHost()
	if u, err := url.Parse(base); err == nil && u.Scheme != "http" && u.Scheme != "https" {
		base = "http://" + u.Host // tcp:// in tests; the dialer decides where it goes
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, base+"/_ping", nil)
	if err != nil {
		return "", err
	}
	resp, err := cli.HTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return "", &sshexec.OpError{Machine: req.Host, Step: sshexec.StepDocker, Err: fmt.Errorf("/_ping answered %s", resp.Status)}
	}
	cli.NegotiateAPIVersionPing(types.Ping{APIVersion: resp.Header.Get("Api-Version")})
	version := resp.Header.Get("Server")
	version = strings.TrimPrefix(version, "Docker/")
	if i := strings.IndexByte(version, ' '); i >= 0 {
		version = version[:i]
	}
	return version, nil
}
