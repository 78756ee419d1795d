package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/spec"
)

// svcView is one Service as `get svc` shows it.
type svcView struct {
	Name      string             `json:"name"`
	Namespace string             `json:"namespace"`
	Type      string             `json:"type"`
	Ports     []spec.ServicePort `json:"ports"`
	Selector  map[string]string  `json:"selector"`
	// Ready and Endpoints count the selected pods that can take traffic,
	// and all the selected pods, over the Service's ports.
	Ready     int       `json:"readyEndpoints"`
	Endpoints int       `json:"endpoints"`
	Routed    string    `json:"routed"`
	Created   time.Time `json:"created"`
}

// routed says how fleet serves a Service type today.
func routed(typ string) string {
	switch typ {
	case "LoadBalancer":
		return "fleet serve --lb-address"
	case "NodePort":
		return "node ports on its pods' machines"
	}
	return "no (stored only)"
}

func getServices(cmd *cobra.Command, v *view, ns nsFlags, output string) error {
	s, obs, err := v.observed(cmd.Context())
	if err != nil {
		return err
	}
	objs, err := s.store.List(cmd.Context(), "Service", ns.filter())
	if err != nil {
		return err
	}
	eps, err := s.reconciler().Endpoints(cmd.Context(), obs)
	if err != nil {
		return err
	}
	views := []svcView{}
	for _, o := range objs {
		svc, err := decodeStored[spec.Service](o)
		if err != nil {
			return err
		}
		sv := svcView{Name: o.Name, Namespace: o.Namespace, Type: svc.Type, Ports: svc.Ports, Selector: svc.Selector, Routed: routed(svc.Type), Created: o.CreatedAt}
		for _, e := range eps {
			if e.Namespace == o.Namespace && e.Service == o.Name {
				sv.Ready += len(e.Ready())
				sv.Endpoints += len(e.Endpoints)
			}
		}
		views = append(views, sv)
	}
	w := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printList(w, output, views)
	}
	headers := []string{"NAME", "TYPE", "PORT(S)", "ENDPOINTS", "ROUTED BY", "AGE"}
	if ns.all {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	if output == "wide" {
		headers = append(headers, "SELECTOR")
	}
	t := newTable(w, headers...)
	for _, sv := range views {
		var ports []string
		for _, p := range sv.Ports {
			ps := strconv.Itoa(p.Port)
			if p.NodePort > 0 {
				ps += ":" + strconv.Itoa(p.NodePort)
			}
			ports = append(ports, ps+"/"+p.Protocol)
		}
		cols := []string{sv.Name, sv.Type, dash(strings.Join(ports, ",")), fmt.Sprintf("%d/%d ready", sv.Ready, sv.Endpoints), sv.Routed, age(sv.Created)}
		if ns.all {
			cols = append([]string{sv.Namespace}, cols...)
		}
		if output == "wide" {
			cols = append(cols, labelString(sv.Selector))
		}
		t.row(cols...)
	}
	return t.flush()
}

func getEndpoints(cmd *cobra.Command, v *view, ns nsFlags, output string) error {
	s, obs, err := v.observed(cmd.Context())
	if err != nil {
		return err
	}
	eps, err := s.reconciler().Endpoints(cmd.Context(), obs)
	if err != nil {
		return err
	}
	var mine []reconciler.ServicePortEndpoints
	for _, e := range eps {
		if ns.filter() == "" || e.Namespace == ns.filter() {
			mine = append(mine, e)
		}
	}
	if mine == nil {
		mine = []reconciler.ServicePortEndpoints{}
	}
	w := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printList(w, output, mine)
	}
	headers := []string{"NAME", "PORT", "READY", "NOT READY"}
	if ns.all {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	t := newTable(w, headers...)
	for _, e := range mine {
		var ready, not []string
		for _, ep := range e.Endpoints {
			switch {
			case ep.Ready:
				ready = append(ready, ep.Addr)
			case ep.Addr != "":
				not = append(not, ep.Addr+" ("+ep.Pod+")")
			case output == "wide":
				not = append(not, ep.Pod+": "+ep.Problem)
			default:
				not = append(not, ep.Pod)
			}
		}
		cols := []string{e.Service, strconv.Itoa(e.Port.Port), dash(strings.Join(ready, ",")), dash(strings.Join(not, ","))}
		if ns.all {
			cols = append([]string{e.Namespace}, cols...)
		}
		t.row(cols...)
	}
	return t.flush()
}
