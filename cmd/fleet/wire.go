package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/fleetdev/fleet/image"
	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/probe"
	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/sshexec"
)

// probe contacts every machine of the session at once: each gets the dial
// timeout plus 2 s for its Docker requests.
func (s *session) probe(ctx context.Context) []node.Status {
	return node.Probe(ctx, s.inv, s.pool, node.Options{Timeout: s.dialTimeout + 2*time.Second, Facts: s.store})
}

// reconciler wires a Reconciler to this session's machines and state.
func (s *session) reconciler() *reconciler.Reconciler {
	return &reconciler.Reconciler{
		Store:  s.store,
		Probe:  s.probe,
		Docker: func(m string) (reconciler.Docker, error) { return s.pool.Docker(m) },
		Images: &pusher{pool: s.pool},
		Probes: s.prober(),
		Log:    s.log,
	}
}

// prober runs container probes through each machine's SSH connection to
// the container's address there: no port need be published.
func (s *session) prober() *probe.Runner {
	return &probe.Runner{
		Dial: func(ctx context.Context, m, network, addr string) (net.Conn, error) {
			cl, err := s.pool.Client(ctx, m)
			if err != nil {
				return nil, err
			}
			return cl.DialContext(ctx, network, addr)
		},
		Docker: func(m string) (probe.Docker, error) { return s.pool.Docker(m) },
	}
}

// pusher makes images present with fleet's registry-less push from the
// local Docker engine; an image the local engine lacks must already be on
// the machine.
type pusher struct {
	pool *sshexec.Pool

	once  sync.Once
	local *client.Client
	err   error
}

func (p *pusher) Ensure(ctx context.Context, ref string, machines []string) map[string]error {
	p.once.Do(func() {
		p.local, p.err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	})
	failed := map[string]error{}
	var targets []image.Target
	for _, m := range machines {
		d, err := p.pool.Docker(m)
		if err != nil {
			failed[m] = err
			continue
		}
		targets = append(targets, image.Target{Name: m, Docker: d})
	}
	haveLocal := false
	if p.err == nil {
		_, err := p.local.ImageInspect(ctx, ref)
		haveLocal = err == nil
	}
	if !haveLocal {
		// Nothing to push from: the image must be on each machine already.
		for _, t := range targets {
			if _, err := t.Docker.ImageInspect(ctx, ref); err != nil {
				if errdefs.IsNotFound(err) {
					err = fmt.Errorf("image %s is neither in the local Docker engine nor on %s: build or load it locally and fleet pushes it", ref, t.Name)
				}
				failed[t.Name] = err
			}
		}
		return failed
	}
	results, err := image.Push(ctx, image.LocalEngine{Client: p.local}, ref, targets)
	if err != nil {
		for _, t := range targets {
			failed[t.Name] = err
		}
		return failed
	}
	for _, r := range results {
		if r.Err != nil {
			failed[r.Machine] = r.Err
		}
	}
	return failed
}
