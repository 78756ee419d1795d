package ingress

import (
	"strings"
	"testing"

	"github.com/fleetdev/fleet/spec"
)

func parseIngress(t *testing.T, manifest string) []spec.Object {
	t.Helper()
	r, err := spec.Parse("t.yaml", []byte(manifest), "default")
	if err != nil {
		t.Fatal(err)
	}
	return r.Objects
}

const tableManifest = `apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {type: LoadBalancer, selector: {app: api}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site}
spec:
  tls: [{hosts: [shop.test, "*.apps.test"]}]
  defaultBackend: {service: {name: web, port: {number: 80}}}
  rules:
  - host: shop.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /api/exact, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
  - host: "*.apps.test"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
  - http:
      paths:
      - {path: /static/, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: zz-late}
spec:
  rules:
  - host: shop.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /x, pathType: Prefix, backend: {service: {name: nope, port: {number: 80}}}}
`

func TestTable(t *testing.T) {
	var ings []*spec.Ingress
	svcs := map[string]*spec.Service{}
	for _, o := range parseIngress(t, tableManifest) {
		switch o := o.(type) {
		case *spec.Ingress:
			ings = append(ings, o)
		case *spec.Service:
			svcs[o.Namespace+"/"+o.Name] = o
		}
	}
	table, problems := Build(ings, svcs)
	if len(problems) != 2 || !strings.Contains(problems[0], "already routed by ingress default/site") || !strings.Contains(problems[1], "service nope not found") {
		t.Fatalf("problems %q", problems)
	}
	for _, tt := range []struct{ host, path, want string }{
		{"shop.test", "/api", "default/api:8080"},
		{"SHOP.test:443", "/api/v1", "default/api:8080"},
		{"shop.test", "/apiv1", "default/web:80"}, // not a whole element: default backend
		{"shop.test", "/api/exact", "default/web:80"},
		{"x.apps.test", "/anything", "default/api:8080"},
		{"y.x.apps.test", "/static/a.css", "default/api:8080"}, // one label only: falls to host-less rules
		{"other.test", "/static", "default/api:8080"},
		{"other.test", "/", "default/web:80"},
	} {
		got, ok := table.Match(tt.host, tt.path)
		if !ok || string(got) != tt.want {
			t.Errorf("Match(%q, %q) = %q %v, want %q", tt.host, tt.path, got, ok, tt.want)
		}
	}
	if iss, ok := table.TLSIssuer("a.apps.test"); !ok || iss != "acme" {
		t.Errorf("TLS for a wildcard host: %q %v", iss, ok)
	}
	if _, ok := table.TLSIssuer("other.test"); ok {
		t.Error("other.test has no tls section")
	}
	if got := table.Backends(); len(got) != 2 {
		t.Errorf("backends %v", got)
	}
}
