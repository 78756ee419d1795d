package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// allocateNodePorts gives every port of a NodePort Service in objs a
// nodePort: the one it asks for, else the one it already had in the
// state file, else the lowest free one. A nodePort another Service holds
// is a problem naming both.
func allocateNodePorts(ctx context.Context, st *store.Store, objs []spec.Object) ([]string, error) {
	stored, err := st.List(ctx, "Service", "")
	if err != nil {
		return nil, err
	}
	type holder struct{ ns, name string }
	taken := map[int]holder{}
	previous := map[string]int{} // ns/name/port → nodePort
	applying := map[holder]bool{}
	for _, o := range objs {
		if m := o.Metadata(); m.Kind == spec.KindService {
			applying[holder{m.Namespace, m.Name}] = true
		}
	}
	for _, o := range stored {
		var s spec.Service
		if json.Unmarshal(o.Spec, &s) != nil {
			continue
		}
		for _, p := range s.Ports {
			if p.NodePort == 0 {
				continue
			}
			previous[fmt.Sprintf("%s/%s/%d", o.Namespace, o.Name, p.Port)] = p.NodePort
			if !applying[holder{o.Namespace, o.Name}] {
				taken[p.NodePort] = holder{o.Namespace, o.Name}
			}
		}
	}
	var problems []string
	var wanting []*spec.ServicePort
	for _, o := range objs {
		s, ok := o.(*spec.Service)
		if !ok || s.Type != spec.ServiceNodePort {
			continue
		}
		for i := range s.Ports {
			p := &s.Ports[i]
			if p.NodePort == 0 {
				p.NodePort = previous[fmt.Sprintf("%s/%s/%d", s.Namespace, s.Name, p.Port)]
			}
			if p.NodePort == 0 {
				wanting = append(wanting, p)
				continue
			}
			if h, dup := taken[p.NodePort]; dup {
				problems = append(problems, fmt.Sprintf("%s:%d: Service/%s: spec.ports[%d].nodePort: %d is already used by service %s/%s",
					s.Source.File, s.Source.Line, s.Name, i, p.NodePort, h.ns, h.name))
				continue
			}
			taken[p.NodePort] = holder{s.Namespace, s.Name}
		}
	}
	next := spec.NodePortMin
	for _, p := range wanting {
		for next <= spec.NodePortMax && taken[next] != (holder{}) {
			next++
		}
		if next > spec.NodePortMax {
			problems = append(problems, fmt.Sprintf("no free nodePort left in %d-%d", spec.NodePortMin, spec.NodePortMax))
			break
		}
		p.NodePort = next
		taken[next] = holder{"", "(this apply)"}
	}
	return problems, nil
}
