// Package node reports the state of each machine in the inventory by
// contacting all of them at once.
package node

import (
	"context"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/sshexec"
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

// Probe contacts every machine in parallel, each within timeout, so one
// slow or dead machine never delays the others.
func Probe(ctx context.Context, inv *inventory.Inventory, d Dialer, timeout time.Duration) []Status {
	out := make([]Status, len(inv.Machines))
	var wg sync.WaitGroup
	for i, m := range inv.Machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i] = probeOne(ctx, m, d)
		}()
	}
	wg.Wait()
	return out
}

func probeOne(ctx context.Context, m inventory.Machine, d Dialer) Status {
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
	ping, err := cli.Ping(ctx)
	if err != nil {
		return fail(err)
	}
	cli.NegotiateAPIVersionPing(ping)
	info, err := cli.Info(ctx)
	if err != nil {
		return fail(err)
	}
	st.Status = Ready
	st.DockerVersion = info.ServerVersion
	st.CPUs = float64(info.NCPU)
	st.Memory = info.MemTotal
	st.Containers = info.ContainersRunning
	if m.Capacity.MilliCPU > 0 {
		st.CPUs = float64(m.Capacity.MilliCPU) / 1000
	}
	if m.Capacity.MemoryBytes > 0 {
		st.Memory = m.Capacity.MemoryBytes
	}
	return done()
}
