package reconciler

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/fleetdev/fleet/spec"
)

// Endpoint is one pod behind one Service port: the machine's address and
// the port Docker published for the pod's container port there.
type Endpoint struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	// Addr is host:port as the load balancer dials it; empty when the
	// container port is not published (see Problem).
	Addr  string `json:"addr,omitempty"`
	Ready bool   `json:"ready"`
	// Canary marks the new pods of a canary or blue-green rollout: they
	// get the port's CanaryPercent of requests.
	Canary bool `json:"canary,omitempty"`

	owner string // the pod's Deployment
	// Problem says why a selected pod cannot be an endpoint.
	Problem string `json:"problem,omitempty"`
}

// ServicePortEndpoints is one port of one Service and its endpoints.
type ServicePortEndpoints struct {
	Namespace string           `json:"namespace"`
	Service   string           `json:"service"`
	Type      string           `json:"type"`
	Port      spec.ServicePort `json:"port"`
	// Annotations of the Service (the load balancer reads its mode and
	// policy from them).
	Annotations map[string]string `json:"annotations,omitempty"`
	Endpoints   []Endpoint        `json:"endpoints"`
	// Split is set while a rollout splits traffic between the Canary
	// endpoints (CanaryPercent of requests) and the others.
	Split         bool `json:"split,omitempty"`
	CanaryPercent int  `json:"canaryPercent,omitempty"`
}

// ReadySplit is the addresses of the ready endpoints, old and new.
func (s ServicePortEndpoints) ReadySplit() (stable, canary []string) {
	for _, e := range s.Endpoints {
		switch {
		case !e.Ready || e.Addr == "":
		case e.Canary:
			canary = append(canary, e.Addr)
		default:
			stable = append(stable, e.Addr)
		}
	}
	return stable, canary
}

// Ready is the addresses of the ready endpoints.
func (s ServicePortEndpoints) Ready() []string {
	var out []string
	for _, e := range s.Endpoints {
		if e.Ready && e.Addr != "" {
			out = append(out, e.Addr)
		}
	}
	return out
}

// Key names the port: namespace/service:port.
func (s ServicePortEndpoints) Key() string {
	return s.Namespace + "/" + s.Service + ":" + strconv.Itoa(s.Port.Port)
}

// Endpoints reads every Service from the state file and finds the pods
// each selects among obs, by their template's labels: a pod's endpoint
// is its machine's address and the port Docker published for the target
// container port; it is ready when the pod is.
func (r *Reconciler) Endpoints(ctx context.Context, obs Observed) ([]ServicePortEndpoints, error) {
	_, templates, svcs, err := r.readDesired(ctx)
	if err != nil {
		return nil, err
	}
	return endpointsOf(svcs, obs, templates, nil), nil
}

// endpointsOf is the endpoints of svcs among obs's pods, with the traffic
// splits of rollouts in progress (by namespace/deployment).
func endpointsOf(svcs []*spec.Service, obs Observed, templates map[string]*spec.PodTemplate, splits map[string]Split) []ServicePortEndpoints {
	if len(svcs) == 0 {
		return nil
	}
	addrs := map[string]string{}
	for _, n := range obs.Nodes {
		addrs[n.Name] = n.Address
	}
	return endpoints(svcs, obs.Pods, templates, addrs, splits)
}

// endpoints is the pure part of Endpoints.
func endpoints(svcs []*spec.Service, pods []PodStatus, templates map[string]*spec.PodTemplate, addrs map[string]string, splits map[string]Split) []ServicePortEndpoints {
	var out []ServicePortEndpoints
	for _, s := range svcs {
		for _, port := range s.Ports {
			spe := ServicePortEndpoints{Namespace: s.Namespace, Service: s.Name, Type: s.Type, Port: port,
				Annotations: s.Annotations, Endpoints: []Endpoint{}}
			for _, p := range pods {
				t := templateOf(templates, p)
				if t == nil || !s.Selects(p.Namespace, t.Labels) {
					continue
				}
				ep := endpointOf(p, t, port, addrs[p.Node])
				if sp, ok := splits[p.Namespace+"/"+p.Owner]; ok {
					spe.Split, spe.CanaryPercent = true, sp.Percent
					ep.Canary = p.SpecHash == sp.Hash
				}
				spe.Endpoints = append(spe.Endpoints, ep)
			}
			sort.Slice(spe.Endpoints, func(i, j int) bool { return spe.Endpoints[i].Pod < spe.Endpoints[j].Pod })
			out = append(out, spe)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

func endpointOf(p PodStatus, t *spec.PodTemplate, port spec.ServicePort, host string) Endpoint {
	e := Endpoint{Pod: p.Name, Node: p.Node, owner: p.Owner}
	// The container and container port the target port means.
	cname, cport := "", 0
	for _, c := range t.Spec.Containers {
		for _, cp := range c.Ports {
			if port.TargetPort.IsStr && cp.Name == port.TargetPort.Str || !port.TargetPort.IsStr && cp.ContainerPort == port.TargetPort.Int {
				if strings.EqualFold(cp.Protocol, port.Protocol) || cp.Protocol == "" {
					cname, cport = c.Name, cp.ContainerPort
				}
			}
		}
	}
	if cport == 0 {
		e.Problem = fmt.Sprintf("no container declares port %s: fleet publishes declared ports only", port.TargetPort)
		return e
	}
	key := portKey(cport, port.Protocol)
	published := p.Containers
	if p.Sandbox != nil { // the pod's ports are published on its sandbox
		published, cname = []ContainerStatus{*p.Sandbox}, SandboxName
	}
	for _, c := range published {
		if c.Name != cname {
			continue
		}
		if hp := c.Ports[key]; hp > 0 && host != "" {
			e.Addr = net.JoinHostPort(host, strconv.Itoa(hp))
		}
	}
	if e.Addr == "" {
		e.Problem = "container port " + key + " is not published (yet)"
		return e
	}
	e.Ready = p.Ready && p.Status == Running
	return e
}

// portKey names a container port as Docker does: "8080/tcp" (TCP when
// the protocol is not given).
func portKey(port int, protocol string) string {
	return strconv.Itoa(port) + "/" + strings.ToLower(cmp.Or(protocol, "TCP"))
}
