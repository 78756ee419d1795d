// Package probe runs single attempts of Kubernetes container probes
// (httpGet, tcpSocket, exec) against containers on remote Docker machines.
// It makes one attempt and reports its outcome; periods, thresholds and
// the resulting container state belong to the caller.
package probe

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/fleetdev/fleet/spec"
)

// DefaultTimeout bounds an attempt whose probe leaves TimeoutSeconds 0, as
// in Kubernetes.
const DefaultTimeout = time.Second

// Target is one container to probe.
type Target struct {
	// Machine is the inventory name of the machine the container runs on.
	Machine string
	// ContainerID is the Docker container ID, used by exec probes.
	ContainerID string
	// IP is the container's address on its machine (the Docker bridge
	// network), used by httpGet and tcpSocket probes.
	IP string
	// Ports are the container's declared ports, to resolve named ports.
	Ports []spec.ContainerPort
}

// Dialer opens a connection from the machine named (through its SSH
// connection) to addr. It should honour ctx; Run bounds a tcpSocket
// attempt even when it does not.
type Dialer func(ctx context.Context, machine, network, addr string) (net.Conn, error)

// Docker is the part of a machine's Docker API exec probes use;
// *client.Client satisfies it.
type Docker interface {
	ContainerExecCreate(ctx context.Context, container string, options container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, config container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
}

var _ Docker = (*client.Client)(nil)

// Runner runs probe attempts. It holds no state between attempts and is
// safe for concurrent use.
type Runner struct {
	// Dial reaches a container's address for httpGet and tcpSocket
	// probes; without it those probes fail.
	Dial Dialer
	// Docker returns the Docker API of the machine named, for exec
	// probes; without it those probes fail.
	Docker func(machine string) (Docker, error)
}

// Result is one attempt's outcome.
type Result struct {
	// OK is true when the container passed the probe.
	OK bool
	// Message says why the attempt failed, in kubelet's words and naming
	// the target where kubelet does; it is empty when OK.
	Message string
}

func ok() Result { return Result{OK: true} }

func failf(format string, args ...any) Result {
	return Result{Message: fmt.Sprintf(format, args...)}
}

// Run makes one attempt of p against t, bounded by p.TimeoutSeconds
// (DefaultTimeout when 0). When a probe sets more than one handler, the
// first of exec, httpGet and tcpSocket is used, in kubelet's order. Run
// reports every problem, including missing fields, as a failed Result.
func (r *Runner) Run(ctx context.Context, p *spec.Probe, t Target) Result {
	if r == nil {
		r = &Runner{}
	}
	if p == nil || p.Exec == nil && p.HTTPGet == nil && p.TCPSocket == nil {
		return failf("probe has no handler")
	}
	timeout := DefaultTimeout
	if p.TimeoutSeconds > 0 {
		timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if p.Exec != nil {
		return r.exec(ctx, timeout, p.Exec, t)
	}
	// A plain deadline, so that errors read "context deadline exceeded"
	// as kubelet's do.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if p.HTTPGet != nil {
		return r.httpGet(ctx, p.HTTPGet, t)
	}
	return r.tcpSocket(ctx, p.TCPSocket, t)
}

// address resolves port against t's ports and joins it with t's IP.
func address(port spec.IntOrString, t Target) (string, error) {
	if t.IP == "" {
		return "", fmt.Errorf("no address for container %s on %s", shortID(t.ContainerID), t.Machine)
	}
	n := port.Int
	if port.IsStr {
		var found bool
		n, found = namedPort(port.Str, t.Ports)
		if !found {
			// kubelet's last resort: a number written as a string.
			var err error
			if n, err = strconv.Atoi(port.Str); err != nil {
				return "", fmt.Errorf("no port named %q on container %s", port.Str, shortID(t.ContainerID))
			}
		}
	}
	if n < 1 || n > 65535 {
		return "", fmt.Errorf("invalid port number: %d", n)
	}
	return net.JoinHostPort(t.IP, strconv.Itoa(n)), nil
}

func namedPort(name string, ports []spec.ContainerPort) (int, bool) {
	for _, p := range ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// shortID is the 12-character form Docker prints.
func shortID(id string) string {
	if id == "" {
		return "(no id)"
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
