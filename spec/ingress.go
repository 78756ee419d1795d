package spec

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// KindIngress is networking.k8s.io/v1 Ingress.
const KindIngress = "Ingress"

// Path types.
const (
	PathExact                  = "Exact"
	PathPrefix                 = "Prefix"
	PathImplementationSpecific = "ImplementationSpecific" // fleet treats it as Prefix
)

// Ingress routes HTTP(S) by host and path to Services, served by fleet
// serve's proxy, with certificates obtained automatically for its tls
// hosts.
type Ingress struct {
	Meta
	// IngressClassName is kept; fleet serves every Ingress it is given.
	IngressClassName string `json:"ingressClassName,omitempty"`
	// DefaultBackend takes requests no rule matches.
	DefaultBackend *IngressBackend `json:"defaultBackend,omitempty"`
	TLS            []IngressTLS    `json:"tls,omitempty"`
	Rules          []IngressRule   `json:"rules,omitempty"`
}

// IngressTLS lists hosts served over HTTPS. fleet obtains and renews
// their certificates itself (ACME, or its local CA with the
// fleet.dev/tls: internal annotation); SecretName is kept but unused.
type IngressTLS struct {
	Hosts      []string `json:"hosts,omitempty"`
	SecretName string   `json:"secretName,omitempty"`
}

// IngressRule routes one host ("" for any host; "*.example.com" matches
// one label) by path.
type IngressRule struct {
	Host  string        `json:"host,omitempty"`
	Paths []IngressPath `json:"paths"`
}

// IngressPath is one path of a rule.
type IngressPath struct {
	Path     string         `json:"path"`
	PathType string         `json:"pathType"`
	Backend  IngressBackend `json:"backend"`
}

// IngressBackend is a Service port, by number or by name.
type IngressBackend struct {
	Service string      `json:"service"`
	Port    IntOrString `json:"port"`
}

// AnnotationTLS picks where an Ingress's certificates come from: acme
// (default; the CA set by fleet serve --acme-ca) or internal (fleet's own
// local CA, for development).
const AnnotationTLS = "fleet.dev/tls"

var (
	ingressSpecSchema = schema{known: []string{"ingressClassName", "defaultBackend", "tls", "rules"}}
	ingressRuleSchema = schema{known: []string{"host", "http"}}
	ingressHTTPSchema = schema{known: []string{"paths"}}
	ingressPathSchema = schema{known: []string{"path", "pathType", "backend"}}
	backendSchema     = schema{known: []string{"service"}, unsupported: unsupported("resource")}
	backendSvcSchema  = schema{known: []string{"name", "port"}}
	backendPortSchema = schema{known: []string{"number", "name"}}
	ingressTLSSchema  = schema{known: []string{"hosts", "secretName"}}
)

// ingressSpec reads spec into ing. line is where spec is, or the object.
func (d *decoder) ingressSpec(n *yaml.Node, line int, ing *Ingress) {
	if !d.mapping(n, "spec", " with rules or defaultBackend") {
		if n == nil {
			d.errorf(line, "spec", "required: rules or defaultBackend")
		}
		return
	}
	d.fields(n, "spec", ingressSpecSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "ingressClassName":
			if s, ok := d.str(v, path); ok {
				ing.IngressClassName = s
			}
		case "defaultBackend":
			if b, ok := d.backend(v, path); ok {
				ing.DefaultBackend = &b
			}
		case "tls":
			for i, item := range d.list(v, path, " of hosts") {
				ipath := fmt.Sprintf("%s[%d]", path, i)
				if !d.mapping(item, ipath, " with hosts") {
					continue
				}
				var t IngressTLS
				d.fields(item, ipath, ingressTLSSchema, func(key string, v *yaml.Node, path string) {
					switch key {
					case "hosts":
						for j, h := range d.list(v, path, " of host names") {
							hpath := fmt.Sprintf("%s[%d]", path, j)
							if s, ok := d.str(h, hpath); ok {
								if msg := checkIngressHost(s); msg != "" {
									d.errorf(h.Line, hpath, "%s", msg)
								}
								t.Hosts = append(t.Hosts, s)
							}
						}
					case "secretName":
						if s, ok := d.str(v, path); ok {
							t.SecretName = s
							d.warnf(v.Line, path, "ignored: fleet obtains the certificate itself (%s: acme or internal)", AnnotationTLS)
						}
					}
				})
				ing.TLS = append(ing.TLS, t)
			}
		case "rules":
			for i, item := range d.list(v, path, " of rules") {
				ipath := fmt.Sprintf("%s[%d]", path, i)
				if !d.mapping(item, ipath, " with host and http") {
					continue
				}
				var r IngressRule
				haveHTTP := false
				d.fields(item, ipath, ingressRuleSchema, func(key string, v *yaml.Node, path string) {
					switch key {
					case "host":
						if s, ok := d.str(v, path); ok {
							if msg := checkIngressHost(s); msg != "" {
								d.errorf(v.Line, path, "%s", msg)
							}
							r.Host = s
						}
					case "http":
						haveHTTP = true
						if d.mapping(v, path, " with paths") {
							d.fields(v, path, ingressHTTPSchema, func(_ string, v *yaml.Node, path string) {
								r.Paths = d.ingressPaths(v, path)
							})
						}
					}
				})
				if !haveHTTP || len(r.Paths) == 0 {
					d.errorf(item.Line, ipath+".http.paths", "required: at least one path")
				}
				ing.Rules = append(ing.Rules, r)
			}
		}
	})
	if len(ing.Rules) == 0 && ing.DefaultBackend == nil {
		d.errorf(line, "spec", "required: rules or defaultBackend")
	}
}

func (d *decoder) ingressPaths(n *yaml.Node, path string) []IngressPath {
	var out []IngressPath
	for i, item := range d.list(n, path, " of paths") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, ipath, " with path, pathType and backend") {
			continue
		}
		p := IngressPath{Path: "/"}
		haveType, haveBackend := false, false
		d.fields(item, ipath, ingressPathSchema, func(key string, v *yaml.Node, path string) {
			switch key {
			case "path":
				if s, ok := d.str(v, path); ok {
					if !strings.HasPrefix(s, "/") {
						d.errorf(v.Line, path, "must start with /, got %q", s)
					}
					p.Path = s
				}
			case "pathType":
				if s, ok := d.oneOf(v, path, PathExact, PathPrefix, PathImplementationSpecific); ok {
					p.PathType, haveType = s, true
				}
			case "backend":
				if b, ok := d.backend(v, path); ok {
					p.Backend, haveBackend = b, true
				}
			}
		})
		if !haveType {
			d.errorf(item.Line, ipath+".pathType", "required: Exact, Prefix or ImplementationSpecific")
		}
		if !haveBackend {
			d.errorf(item.Line, ipath+".backend", "required")
		}
		out = append(out, p)
	}
	return out
}

// backend reads {service: {name, port: {number | name}}}.
func (d *decoder) backend(n *yaml.Node, path string) (IngressBackend, bool) {
	var b IngressBackend
	if !d.mapping(n, path, " with service") {
		return b, false
	}
	ok := false
	d.fields(n, path, backendSchema, func(_ string, v *yaml.Node, path string) {
		if !d.mapping(v, path, " with name and port") {
			return
		}
		havePort := false
		d.fields(v, path, backendSvcSchema, func(key string, v *yaml.Node, path string) {
			switch key {
			case "name":
				if s, good := d.str(v, path); good {
					if msg := checkDNSLabel(s); msg != "" {
						d.errorf(v.Line, path, "%s", msg)
					}
					b.Service = s
				}
			case "port":
				if !d.mapping(v, path, " with number or name") {
					return
				}
				n := 0
				d.fields(v, path, backendPortSchema, func(key string, v *yaml.Node, path string) {
					n++
					switch key {
					case "number":
						if p, good := d.port(v, path); good {
							b.Port = IntOrString{Int: p}
						}
					case "name":
						if s, good := d.str(v, path); good {
							b.Port = IntOrString{Str: s, IsStr: true}
						}
					}
				})
				if n != 1 {
					d.errorf(v.Line, path, "set exactly one of number and name")
				}
				havePort = true
			}
		})
		if b.Service == "" {
			d.errorf(v.Line, path+".name", "required")
		}
		if !havePort {
			d.errorf(v.Line, path+".port", "required: number or name")
		}
		ok = b.Service != ""
	})
	if !ok && b.Service == "" {
		d.errorf(n.Line, path+".service", "required")
	}
	return b, ok
}

// checkIngressHost accepts a DNS name, optionally with a leading "*."
// wildcard label; IP addresses are not hosts.
func checkIngressHost(s string) string {
	name := strings.TrimPrefix(s, "*.")
	if strings.Contains(name, "*") {
		return fmt.Sprintf("a wildcard may only be the whole first label (*.example.com), got %q", s)
	}
	if msg := checkDNSSubdomain(name); msg != "" {
		return "must be a DNS name: " + msg
	}
	if strings.Trim(name, "0123456789.") == "" {
		return fmt.Sprintf("must be a DNS name, not an IP address: %q", s)
	}
	return ""
}
