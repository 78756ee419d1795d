package main

import (
	"encoding/json"
	"fmt"

	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// allocateNodePorts gives every port of a NodePort Service in objs a
// nodePort: the one it asks for, else the one it already had among the
// stored Services, else the lowest free one. A nodePort another Service holds
// is a problem naming both.
func allocateNodePorts(stored []store.Object, objs []spec.Object) []string {
	type nodePort struct {
		port     int
		protocol string
	}
	taken := map[nodePort]holder{}
	previous := map[string]int{} // ns/name/port/protocol → nodePort
	applying := applyingServices(objs)
	for _, o := range stored {
		var s spec.Service
		if json.Unmarshal(o.Spec, &s) != nil {
			continue
		}
		for _, p := range s.Ports {
			if p.NodePort == 0 {
				continue
			}
			previous[fmt.Sprintf("%s/%s/%d/%s", o.Namespace, o.Name, p.Port, p.Protocol)] = p.NodePort
			if !applying[holder{o.Namespace, o.Name}] {
				taken[nodePort{p.NodePort, p.Protocol}] = holder{o.Namespace, o.Name}
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
				p.NodePort = previous[fmt.Sprintf("%s/%s/%d/%s", s.Namespace, s.Name, p.Port, p.Protocol)]
			}
			if p.NodePort == 0 {
				wanting = append(wanting, p)
				continue
			}
			if h, dup := taken[nodePort{p.NodePort, p.Protocol}]; dup {
				problems = append(problems, fmt.Sprintf("%s:%d: Service/%s: spec.ports[%d].nodePort: %d/%s is already used by service %s/%s",
					s.Source.File, s.Source.Line, s.Name, i, p.NodePort, p.Protocol, h.ns, h.name))
				continue
			}
			taken[nodePort{p.NodePort, p.Protocol}] = holder{s.Namespace, s.Name}
		}
	}
	free := func(n int) bool {
		for np := range taken {
			if np.port == n {
				return false
			}
		}
		return true
	}
	next := spec.NodePortMin
	for _, p := range wanting {
		for next <= spec.NodePortMax && !free(next) {
			next++
		}
		if next > spec.NodePortMax {
			problems = append(problems, fmt.Sprintf("no free nodePort left in %d-%d", spec.NodePortMin, spec.NodePortMax))
			break
		}
		p.NodePort = next
		taken[nodePort{next, p.Protocol}] = holder{"", "(this apply)"}
	}
	return problems
}

// holder is a Service holding a port.
type holder struct{ ns, name string }

// applyingServices are the Services among objs.
func applyingServices(objs []spec.Object) map[holder]bool {
	out := map[holder]bool{}
	for _, o := range objs {
		if m := o.Metadata(); m.Kind == spec.KindService {
			out[holder{m.Namespace, m.Name}] = true
		}
	}
	return out
}

// checkLoadBalancerPorts refuses a port of a LoadBalancer Service in objs
// that another LoadBalancer Service (of any namespace) already has: they
// all listen on fleet's one load balancer address.
func checkLoadBalancerPorts(stored []store.Object, objs []spec.Object) []string {
	applying := applyingServices(objs)
	taken := map[string]holder{} // port/protocol → Service
	for _, o := range stored {
		var s spec.Service
		if json.Unmarshal(o.Spec, &s) != nil || s.Type != spec.ServiceLoadBalancer || applying[holder{o.Namespace, o.Name}] {
			continue
		}
		for _, p := range s.Ports {
			taken[fmt.Sprintf("%d/%s", p.Port, p.Protocol)] = holder{o.Namespace, o.Name}
		}
	}
	var problems []string
	for _, o := range objs {
		s, ok := o.(*spec.Service)
		if !ok || s.Type != spec.ServiceLoadBalancer {
			continue
		}
		for i, p := range s.Ports {
			key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
			if h, dup := taken[key]; dup && h != (holder{s.Namespace, s.Name}) {
				problems = append(problems, fmt.Sprintf("%s:%d: Service/%s: spec.ports[%d].port: %s on the load balancer is already used by service %s/%s "+
					"(every LoadBalancer Service listens on fleet's one load balancer address): choose another port",
					s.Source.File, s.Source.Line, s.Name, i, key, h.ns, h.name))
				continue
			}
			taken[key] = holder{s.Namespace, s.Name}
		}
	}
	return problems
}
