package reconciler

import (
	"reflect"
	"testing"

	"github.com/fleetdev/fleet/spec"
)

func TestNodePortsFor(t *testing.T) {
	tmpl := &spec.PodTemplate{Labels: map[string]string{"app": "web"}, Spec: spec.PodSpec{Containers: []spec.Container{
		{Name: "web", Ports: []spec.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}}},
	}}}
	np := &spec.Service{Type: spec.ServiceNodePort, Selector: map[string]string{"app": "web"},
		Ports: []spec.ServicePort{{Port: 80, Protocol: "TCP", TargetPort: spec.IntOrString{Str: "http", IsStr: true}, NodePort: 30080}}}
	np.Namespace = "default"
	lb := &spec.Service{Type: spec.ServiceLoadBalancer, Selector: map[string]string{"app": "web"},
		Ports: []spec.ServicePort{{Port: 81, Protocol: "TCP", TargetPort: spec.IntOrString{Int: 8080}, NodePort: 30081}}}
	lb.Namespace = "default"
	other := &spec.Service{Type: spec.ServiceNodePort, Selector: map[string]string{"app": "web"},
		Ports: []spec.ServicePort{{Port: 80, Protocol: "TCP", TargetPort: spec.IntOrString{Int: 8080}, NodePort: 30082}}}
	other.Namespace = "prod"

	got := nodePortsFor("default", tmpl, []*spec.Service{np, lb, other})
	if want := (nodePorts{"web": {"8080/tcp": 30080}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v (only NodePort services of the namespace)", got, want)
	}
	if held := got.held(); !reflect.DeepEqual(held, []string{"30080/tcp"}) {
		t.Fatalf("held %v", held)
	}
	t.Run("the hash changes with the node ports and not without them", func(t *testing.T) {
		if h := (nodePorts{}).hash("abcdef0123"); h != "abcdef0123" {
			t.Fatalf("no node ports changed the hash: %s", h)
		}
		h1 := got.hash("abcdef0123")
		h2 := nodePorts{"web": {"8080/tcp": 30099}}.hash("abcdef0123")
		if h1 == "abcdef0123" || h1 == h2 || len(h1) != 10 {
			t.Fatalf("hashes %s %s", h1, h2)
		}
	})
}
