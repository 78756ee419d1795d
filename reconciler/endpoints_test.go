package reconciler

import (
	"testing"

	"github.com/fleetdev/fleet/spec"
)

func TestEndpoints(t *testing.T) {
	tmpl := &spec.PodTemplate{Labels: map[string]string{"app": "web", "tier": "front"}, Spec: spec.PodSpec{Containers: []spec.Container{
		{Name: "web", Ports: []spec.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}}},
		{Name: "side", Ports: []spec.ContainerPort{{ContainerPort: 9090, Protocol: "TCP"}}},
	}}}
	templates := map[string]*spec.PodTemplate{templateKey("default", "web", "h1"): tmpl}
	pod := func(name, node string, ready bool, webPort int) PodStatus {
		p := PodStatus{Name: name, Namespace: "default", Owner: "web", SpecHash: "h1", Node: node, Status: Running, Ready: ready,
			Containers: []ContainerStatus{{Name: "side", Ports: map[string]int{"9090/tcp": 40000}}, {Name: "web"}}}
		if webPort > 0 {
			p.Containers[1].Ports = map[string]int{"8080/tcp": webPort}
		}
		return p
	}
	pods := []PodStatus{
		pod("web-1", "m1", true, 32001),
		pod("web-2", "m2", false, 32002),
		pod("web-3", "m3", true, 0),
		{Name: "db-1", Namespace: "default", Owner: "db", SpecHash: "h9", Node: "m1", Status: Running, Ready: true},
	}
	svc := &spec.Service{Type: "LoadBalancer", Selector: map[string]string{"app": "web"},
		Ports: []spec.ServicePort{{Name: "http", Port: 80, Protocol: "TCP", TargetPort: spec.IntOrString{Str: "http", IsStr: true}}}}
	svc.Namespace, svc.Name = "default", "web"
	other := &spec.Service{Type: "LoadBalancer", Selector: map[string]string{"app": "web"},
		Ports: []spec.ServicePort{{Port: 81, Protocol: "TCP", TargetPort: spec.IntOrString{Int: 7000}}}}
	other.Namespace, other.Name = "default", "other"
	addrs := map[string]string{"m1": "10.0.0.1", "m2": "10.0.0.2", "m3": "10.0.0.3"}
	got := endpoints([]*spec.Service{svc, other}, pods, templates, addrs, nil)
	if len(got) != 2 || got[1].Key() != "default/web:80" {
		t.Fatalf("got %+v", got)
	}
	t.Run("a named target port resolves to the published port; only ready pods are ready", func(t *testing.T) {
		web := got[1]
		if r := web.Ready(); len(r) != 1 || r[0] != "10.0.0.1:32001" {
			t.Fatalf("ready %v", r)
		}
		if len(web.Endpoints) != 3 || web.Endpoints[1].Addr != "10.0.0.2:32002" || web.Endpoints[1].Ready {
			t.Fatalf("endpoints %+v", web.Endpoints)
		}
		if web.Endpoints[2].Problem == "" {
			t.Fatalf("an unpublished port should say so: %+v", web.Endpoints[2])
		}
	})
	t.Run("a target port no container declares is a problem on every endpoint", func(t *testing.T) {
		for _, e := range got[0].Endpoints {
			if e.Ready || e.Problem == "" {
				t.Fatalf("%+v", e)
			}
		}
	})
}

// A pod whose consumed ConfigMap changed since it started carries a hash
// no longer computed: it keeps serving, by its revision's template, until
// the rolling update replaces it.
func TestEndpoints_PodOfAnOlderConfig(t *testing.T) {
	tmpl := &spec.PodTemplate{Labels: map[string]string{"app": "web"}, Spec: spec.PodSpec{Containers: []spec.Container{
		{Name: "web", Ports: []spec.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}}}}}}
	templates := map[string]*spec.PodTemplate{templateKey("default", "web", "new"): tmpl, revisionKey("default", "web", 3): tmpl}
	old := PodStatus{Name: "web-1", Namespace: "default", Owner: "web", SpecHash: "old", Revision: 3, Node: "m1", Status: Running, Ready: true,
		Containers: []ContainerStatus{{Name: "web", Ports: map[string]int{"8080/tcp": 32001}}}}
	svc := &spec.Service{Type: "LoadBalancer", Selector: map[string]string{"app": "web"},
		Ports: []spec.ServicePort{{Name: "http", Port: 80, Protocol: "TCP", TargetPort: spec.IntOrString{Str: "http", IsStr: true}}}}
	svc.Namespace, svc.Name = "default", "web"
	got := endpoints([]*spec.Service{svc}, []PodStatus{old}, templates, map[string]string{"m1": "10.0.0.1"}, nil)
	if r := got[0].Ready(); len(r) != 1 || r[0] != "10.0.0.1:32001" {
		t.Fatalf("ready endpoints %v, want the old pod's", r)
	}
}
