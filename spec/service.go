package spec

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// NodePortMin and NodePortMax bound Service nodePorts, as Kubernetes'
// default service-node-port-range.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

var (
	serviceSpecSchema = schema{
		known: []string{"type", "selector", "ports", "externalName", "clusterIP"},
		unsupported: unsupported("clusterIPs", "externalIPs", "sessionAffinity", "sessionAffinityConfig",
			"loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass", "externalTrafficPolicy",
			"internalTrafficPolicy", "healthCheckNodePort", "publishNotReadyAddresses", "ipFamilies",
			"ipFamilyPolicy", "allocateLoadBalancerNodePorts", "trafficDistribution"),
	}
	servicePortSchema = schema{
		known: []string{"name", "protocol", "port", "targetPort", "nodePort", "appProtocol"},
	}
)

// servicePortLines remembers where a port was written.
type servicePortLines struct {
	entry, nodePort int
}

// serviceSpec reads spec into svc and applies the defaults. line is where
// spec is, or the object when there is no spec.
func (d *decoder) serviceSpec(n *yaml.Node, line int, svc *Service) {
	svc.Type = ServiceClusterIP
	svc.Selector = map[string]string{}
	var (
		portsLine    = line
		ports        []servicePortLines
		externalLine int
		clusterLine  int
	)
	if d.mapping(n, "spec", " with ports") {
		d.fields(n, "spec", serviceSpecSchema, func(key string, v *yaml.Node, path string) {
			switch key {
			case "type":
				if s, ok := d.oneOf(v, path, ServiceClusterIP, ServiceNodePort, ServiceLoadBalancer, ServiceExternalName); ok {
					svc.Type = s
				}
			case "selector":
				svc.Selector = d.labels(v, path)
			case "ports":
				portsLine = d.keyLine
				svc.Ports, ports = d.servicePorts(v, path)
			case "externalName":
				if s, ok := d.str(v, path); ok && s != "" {
					if msg := checkDNSSubdomain(strings.TrimSuffix(s, ".")); msg != "" {
						d.errorf(v.Line, path, "must be a DNS name: %s", msg)
					}
					svc.ExternalName, externalLine = s, v.Line
				}
			case "clusterIP":
				if s, ok := d.str(v, path); ok {
					if msg := checkClusterIP(s); msg != "" {
						d.errorf(v.Line, path, "%s", msg)
					}
					svc.ClusterIP, clusterLine = s, v.Line
				}
			}
		})
	}

	switch svc.Type {
	case ServiceExternalName:
		if svc.ExternalName == "" {
			d.errorf(line, "spec.externalName", "required when type is ExternalName")
		}
		if svc.ClusterIP != "" {
			d.errorf(clusterLine, "spec.clusterIP", "not allowed when type is ExternalName")
		}
	default:
		if len(svc.Ports) == 0 && len(ports) == 0 {
			d.errorf(portsLine, "spec.ports", "required: at least one port (only ExternalName services have none)")
		}
		if externalLine > 0 {
			d.errorf(externalLine, "spec.externalName", "only allowed when type is ExternalName")
		}
	}
	if svc.ClusterIP == "None" && (svc.Type == ServiceNodePort || svc.Type == ServiceLoadBalancer) {
		d.errorf(clusterLine, "spec.clusterIP", "may not be None when type is %s", svc.Type)
	}

	names := map[string]int{}
	seen := map[portKey]int{}
	nodePorts := map[portKey]int{}
	for i, p := range svc.Ports {
		ppath := fmt.Sprintf("spec.ports[%d]", i)
		l := ports[i]
		if len(svc.Ports) > 1 && p.Name == "" {
			d.errorf(l.entry, ppath+".name", "required when a Service has more than one port")
		}
		if p.Name != "" {
			if first, dup := names[p.Name]; dup {
				d.errorf(l.entry, ppath+".name", "duplicate port name %q (first at line %d)", p.Name, first)
			} else {
				names[p.Name] = l.entry
			}
		}
		if p.Port != 0 {
			k := portKey{p.Port, p.Protocol}
			if first, dup := seen[k]; dup {
				d.errorf(l.entry, ppath+".port", "duplicate port %d/%s (first at line %d)", k.port, k.protocol, first)
			} else {
				seen[k] = l.entry
			}
		}
		if p.Protocol != ProtocolTCP && svc.Type == ServiceLoadBalancer {
			// NodePort ports are Docker's port bindings, which carry UDP.
			d.errorf(l.entry, ppath+".protocol", "fleet's load balancer serves TCP only, got %s (a NodePort service can publish UDP)", p.Protocol)
		}
		if p.NodePort == 0 {
			continue
		}
		if svc.Type != ServiceNodePort && svc.Type != ServiceLoadBalancer {
			d.errorf(l.nodePort, ppath+".nodePort", "only allowed when type is NodePort or LoadBalancer")
			continue
		}
		k := portKey{p.NodePort, p.Protocol}
		if first, dup := nodePorts[k]; dup {
			d.errorf(l.nodePort, ppath+".nodePort", "duplicate nodePort %d/%s (first at line %d)", k.port, k.protocol, first)
		} else {
			nodePorts[k] = l.nodePort
		}
	}
}

func (d *decoder) servicePorts(n *yaml.Node, path string) ([]ServicePort, []servicePortLines) {
	var ports []ServicePort
	var lines []servicePortLines
	for i, item := range d.list(n, path, " of ports") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, ipath, " with port") {
			if isNull(item) {
				d.errorf(item.Line, ipath, "expected a mapping with port, got nothing")
			}
			continue
		}
		p := ServicePort{Protocol: ProtocolTCP}
		l := servicePortLines{entry: item.Line}
		havePort, haveTarget := false, false
		d.fields(item, ipath, servicePortSchema, func(key string, v *yaml.Node, path string) {
			switch key {
			case "name":
				if s, ok := d.str(v, path); ok && s != "" {
					if msg := checkPortName(s); msg != "" {
						d.errorf(v.Line, path, "%s", msg)
					}
					p.Name = s
				}
			case "protocol":
				if s, ok := d.protocol(v, path); ok {
					p.Protocol = s
				}
			case "port":
				havePort = true
				if port, ok := d.port(v, path); ok {
					p.Port = port
				}
			case "targetPort":
				if ref, ok := d.portRef(v, path); ok {
					p.TargetPort, haveTarget = ref, true
				}
			case "nodePort":
				if np, ok := d.integer(v, path); ok && np != 0 {
					if np < NodePortMin || np > NodePortMax {
						d.errorf(v.Line, path, "must be between %d and %d, got %d", NodePortMin, NodePortMax, np)
					}
					p.NodePort, l.nodePort = np, v.Line
				}
			case "appProtocol":
				if s, ok := d.str(v, path); ok {
					p.AppProtocol = s
				}
			}
		})
		if !havePort {
			d.errorf(item.Line, ipath+".port", "required")
		}
		if !haveTarget {
			p.TargetPort = IntOrString{Int: p.Port}
		}
		ports = append(ports, p)
		lines = append(lines, l)
	}
	return ports, lines
}
