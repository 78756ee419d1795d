package spec

import (
	"reflect"
	"strings"
	"testing"
)

const ingressManifest = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: site
  annotations: {fleet.dev/tls: internal}
spec:
  tls:
  - hosts: [shop.example.test]
  defaultBackend:
    service: {name: fallback, port: {number: 80}}
  rules:
  - host: shop.example.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
`

func TestParse_Ingress(t *testing.T) {
	r, err := Parse("site.yaml", []byte(ingressManifest), "default")
	if err != nil {
		t.Fatal(err)
	}
	ing := r.Objects[0].(*Ingress)
	want := []IngressRule{{Host: "shop.example.test", Paths: []IngressPath{
		{Path: "/api", PathType: PathPrefix, Backend: IngressBackend{Service: "api", Port: IntOrString{Str: "http", IsStr: true}}},
		{Path: "/", PathType: PathExact, Backend: IngressBackend{Service: "web", Port: IntOrString{Int: 80}}},
	}}}
	if !reflect.DeepEqual(ing.Rules, want) || ing.DefaultBackend.Service != "fallback" || ing.TLS[0].Hosts[0] != "shop.example.test" || ing.Annotations[AnnotationTLS] != "internal" {
		t.Fatalf("got %+v", ing)
	}
	for _, tt := range []struct{ name, from, to, want string }{
		{"a path must be absolute", "path: /api,", "path: api,", `site.yaml:15: Ingress/site: spec.rules[0].http.paths[0].path: must start with /, got "api"`},
		{"pathType is required", "pathType: Exact, ", "", `site.yaml:16: Ingress/site: spec.rules[0].http.paths[1].pathType: required: Exact, Prefix or ImplementationSpecific`},
		{"a backend port is a number or a name, not both", "port: {number: 80}}}}", "port: {number: 80, name: x}}}}", `site.yaml:16: Ingress/site: spec.rules[0].http.paths[1].backend.service.port: set exactly one of number and name`},
		{"a host is a DNS name", "- host: shop.example.test", "- host: 10.0.0.1", `site.yaml:12: Ingress/site: spec.rules[0].host: must be a DNS name, not an IP address: "10.0.0.1"`},
		{"a wildcard is a whole first label", "- host: shop.example.test", "- host: s*.example.test", `site.yaml:12: Ingress/site: spec.rules[0].host: a wildcard may only be the whole first label (*.example.com), got "s*.example.test"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("site.yaml", []byte(strings.Replace(ingressManifest, tt.from, tt.to, 1)), "default")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v\nwant %s", err, tt.want)
			}
		})
	}
}
