// Package ingress turns Ingress objects into what fleet's proxy routes by
// (a table from host and path to a Service port), and keeps the
// certificates of their TLS hosts: ACME through certmagic, or a local CA
// for development, all stored in the state file.
package ingress

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/fleetdev/fleet/spec"
)

// Backend names a Service port: "namespace/service:port", the key the
// load balancer's pools go by.
type Backend string

// BackendOf is the key of port on namespace/service.
func BackendOf(namespace, service string, port int) Backend {
	return Backend(namespace + "/" + service + ":" + strconv.Itoa(port))
}

// Table routes a request's host and path to a Backend. It is immutable
// once built; Build makes a new one on every change.
type Table struct {
	exact     map[string]*paths // by host, lower case
	wildcard  map[string]*paths // by the suffix after "*."
	anyHost   *paths
	fallback  Backend
	tlsHosts  map[string]string // host or "*.suffix" → "acme" or "internal"
	hostNames []string
}

type paths struct {
	exact    map[string]Backend
	prefixes []prefix // longest first
}

type prefix struct {
	path    string // without a trailing slash, "" for "/"
	backend Backend
}

// Build makes the table of ings. Service ports named in backends are
// resolved by services (namespace/name → Service); problems (an unknown
// service or port name, two Ingresses claiming one host and path) are
// returned, each naming the Ingress, and leave the rest working.
func Build(ings []*spec.Ingress, services map[string]*spec.Service) (*Table, []string) {
	t := &Table{exact: map[string]*paths{}, wildcard: map[string]*paths{}, tlsHosts: map[string]string{}}
	var problems []string
	sorted := slices.Clone(ings)
	sort.Slice(sorted, func(i, j int) bool {
		return sorted[i].Namespace+"/"+sorted[i].Name < sorted[j].Namespace+"/"+sorted[j].Name
	})
	claimed := map[string]string{} // host path type → ingress
	for _, ing := range sorted {
		who := "ingress " + ing.Namespace + "/" + ing.Name
		resolve := func(b spec.IngressBackend) (Backend, bool) {
			svc := services[ing.Namespace+"/"+b.Service]
			if svc == nil {
				problems = append(problems, fmt.Sprintf("%s: service %s not found in namespace %s", who, b.Service, ing.Namespace))
				return "", false
			}
			for _, p := range svc.Ports {
				if b.Port.IsStr && p.Name == b.Port.Str || !b.Port.IsStr && p.Port == b.Port.Int {
					return BackendOf(ing.Namespace, b.Service, p.Port), true
				}
			}
			problems = append(problems, fmt.Sprintf("%s: service %s has no port %s", who, b.Service, b.Port))
			return "", false
		}
		if ing.DefaultBackend != nil && t.fallback == "" {
			if b, ok := resolve(*ing.DefaultBackend); ok {
				t.fallback = b
			}
		}
		for _, r := range ing.Rules {
			host := strings.ToLower(r.Host)
			set := t.set(host)
			for _, p := range r.Paths {
				b, ok := resolve(p.Backend)
				if !ok {
					continue
				}
				typ := p.PathType
				if typ == spec.PathImplementationSpecific {
					typ = spec.PathPrefix
				}
				key := host + " " + p.Path + " " + typ
				if first, dup := claimed[key]; dup {
					problems = append(problems, fmt.Sprintf("%s: host %q path %s (%s) already routed by %s; ignored", who, r.Host, p.Path, typ, first))
					continue
				}
				claimed[key] = who
				if typ == spec.PathExact {
					set.exact[p.Path] = b
				} else {
					set.prefixes = append(set.prefixes, prefix{path: strings.TrimSuffix(p.Path, "/"), backend: b})
				}
			}
			sort.SliceStable(set.prefixes, func(i, j int) bool { return len(set.prefixes[i].path) > len(set.prefixes[j].path) })
		}
		issuer := ing.Annotations[spec.AnnotationTLS]
		if issuer == "" {
			issuer = "acme"
		}
		for _, tls := range ing.TLS {
			for _, h := range tls.Hosts {
				h = strings.ToLower(h)
				if _, ok := t.tlsHosts[h]; !ok {
					t.tlsHosts[h] = issuer
					t.hostNames = append(t.hostNames, h)
				}
			}
		}
	}
	sort.Strings(t.hostNames)
	return t, problems
}

func (t *Table) set(host string) *paths {
	var m map[string]*paths
	switch {
	case host == "":
		if t.anyHost == nil {
			t.anyHost = &paths{exact: map[string]Backend{}}
		}
		return t.anyHost
	case strings.HasPrefix(host, "*."):
		m, host = t.wildcard, host[2:]
	default:
		m = t.exact
	}
	if m[host] == nil {
		m[host] = &paths{exact: map[string]Backend{}}
	}
	return m[host]
}

// Match finds the backend for a request: the rules of the exact host,
// else of a wildcard matching it (one label), else of rules without a
// host; within them an Exact path, else the longest Prefix matching
// whole path elements; else the default backend.
func (t *Table) Match(host, path string) (Backend, bool) {
	host = strings.ToLower(stripPort(host))
	var sets []*paths
	if s := t.exact[host]; s != nil {
		sets = append(sets, s)
	}
	if _, suffix, ok := strings.Cut(host, "."); ok {
		if s := t.wildcard[suffix]; s != nil {
			sets = append(sets, s)
		}
	}
	if t.anyHost != nil {
		sets = append(sets, t.anyHost)
	}
	for _, s := range sets {
		if b, ok := s.match(path); ok {
			return b, true
		}
	}
	return t.fallback, t.fallback != ""
}

func (p *paths) match(path string) (Backend, bool) {
	if b, ok := p.exact[path]; ok {
		return b, true
	}
	for _, pr := range p.prefixes {
		if pr.path == "" || path == pr.path || strings.HasPrefix(path, pr.path) && path[len(pr.path)] == '/' {
			return pr.backend, true
		}
	}
	return "", false
}

// TLSIssuer says whether host is served over HTTPS, and by which issuer
// ("acme" or "internal").
func (t *Table) TLSIssuer(host string) (string, bool) {
	host = strings.ToLower(stripPort(host))
	if iss, ok := t.tlsHosts[host]; ok {
		return iss, true
	}
	if _, suffix, ok := strings.Cut(host, "."); ok {
		if iss, ok := t.tlsHosts["*."+suffix]; ok {
			return iss, true
		}
	}
	return "", false
}

// TLSHosts lists the hosts of every tls section, sorted.
func (t *Table) TLSHosts() []string { return slices.Clone(t.hostNames) }

// TLSIssuers maps each tls host to its issuer ("acme" or "internal").
func (t *Table) TLSIssuers() map[string]string { return maps.Clone(t.tlsHosts) }

// Backends lists every backend the table can route to.
func (t *Table) Backends() []Backend {
	seen := map[Backend]bool{}
	add := func(p *paths) {
		if p == nil {
			return
		}
		for _, b := range p.exact {
			seen[b] = true
		}
		for _, pr := range p.prefixes {
			seen[pr.backend] = true
		}
	}
	for _, p := range t.exact {
		add(p)
	}
	for _, p := range t.wildcard {
		add(p)
	}
	add(t.anyHost)
	if t.fallback != "" {
		seen[t.fallback] = true
	}
	out := make([]Backend, 0, len(seen))
	for b := range seen {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i]
	}
	return host
}
