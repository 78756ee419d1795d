package reconciler

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/fleetdev/fleet/spec"
)

// nodePorts maps, per container name, a container port ("8080/tcp") to
// the machine port a NodePort Service publishes it on.
type nodePorts map[string]map[string]int

// nodePortsFor finds the NodePort Services of namespace ns selecting a
// pod of template t, and the machine ports they need its containers to
// bind. fleet has no agent to forward a node port from every machine, so
// a pod binds its Services' node ports itself, on the machine it runs on.
func nodePortsFor(ns string, t *spec.PodTemplate, svcs []*spec.Service) nodePorts {
	out := nodePorts{}
	for _, s := range svcs {
		if s.Type != spec.ServiceNodePort || !s.Selects(ns, t.Labels) {
			continue
		}
		for _, sp := range s.Ports {
			if sp.NodePort == 0 {
				continue
			}
			for _, c := range t.Spec.Containers {
				for _, cp := range c.Ports {
					if sp.TargetPort.IsStr && cp.Name != sp.TargetPort.Str || !sp.TargetPort.IsStr && cp.ContainerPort != sp.TargetPort.Int ||
						!strings.EqualFold(cmp.Or(cp.Protocol, "TCP"), cmp.Or(sp.Protocol, "TCP")) {
						continue
					}
					if out[c.Name] == nil {
						out[c.Name] = map[string]int{}
					}
					out[c.Name][portKey(cp.ContainerPort, cp.Protocol)] = sp.NodePort
				}
			}
		}
	}
	return out
}

// held lists the machine ports as "30080/tcp".
func (n nodePorts) held() []string {
	var out []string
	for _, ports := range n {
		for key, np := range ports {
			_, proto, _ := strings.Cut(key, "/")
			out = append(out, strconv.Itoa(np)+"/"+proto)
		}
	}
	sort.Strings(out)
	return out
}

// hash folds the node ports into a template's hash: pods bind them when
// created, so a change of node ports replaces the pods.
func (n nodePorts) hash(base string) string {
	if len(n) == 0 {
		return base
	}
	var parts []string
	for c, ports := range n {
		for key, np := range ports {
			parts = append(parts, fmt.Sprintf("%s:%s=%d", c, key, np))
		}
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(base + "|" + strings.Join(parts, ",")))
	return hex.EncodeToString(sum[:])[:len(base)]
}
