package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/store"
)

func newGetCmd(g *globals) *cobra.Command {
	var output string
	var ns nsFlags
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "get RESOURCE[,RESOURCE...]",
		Short: "Show resources: nodes, deploy, pods, svc, endpoints, cm, secrets, pvc, ns, events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			v := &view{g: g}
			defer v.close()
			kinds := strings.Split(args[0], ",")
			for i, k := range kinds {
				if i > 0 && output != "json" && output != "yaml" {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				var err error
				switch k {
				case "nodes", "node", "no":
					err = getNodes(cmd, v, output)
				case "deploy", "deployment", "deployments":
					err = getDeployments(cmd, v, ns, output)
				case "pods", "pod", "po":
					err = getPods(cmd, v, ns, output)
				case "ns", "namespace", "namespaces":
					err = getNamespaces(cmd, g, output)
				case "events", "event", "ev":
					err = getEvents(cmd, g, ns, output)
				case "svc", "service", "services":
					err = getServices(cmd, v, ns, output)
				case "endpoints", "ep":
					err = getEndpoints(cmd, v, ns, output)
				case "configmaps", "configmap", "cm":
					err = getConfigs(cmd, v, ns, "ConfigMap", output, false)
				case "secrets", "secret":
					err = getConfigs(cmd, v, ns, "Secret", output, showSecrets)
				case "pvc", "persistentvolumeclaim", "persistentvolumeclaims":
					err = getClaims(cmd, v, ns, output)
				default:
					err = fmt.Errorf("get %s: unknown resource type (known: nodes, deploy, pods, svc, endpoints, cm, secrets, pvc, ns, events)", k)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide, json or yaml")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "show Secret values with -o json|yaml (hidden otherwise)")
	ns.add(cmd)
	return cmd
}

// view opens the session and looks at the machines at most once per get,
// however many kinds it lists: `get nodes,deploy,pods` probes once and
// lists containers once.
type view struct {
	g      *globals
	s      *session
	nodes  []node.Status
	probed bool
	obs    *reconciler.Observed
}

func (v *view) session(ctx context.Context) (*session, error) {
	if v.s == nil {
		s, err := v.g.open(ctx)
		if err != nil {
			return nil, err
		}
		v.s = s
	}
	return v.s, nil
}

func (v *view) probe(ctx context.Context) ([]node.Status, error) {
	s, err := v.session(ctx)
	if err != nil {
		return nil, err
	}
	if !v.probed {
		v.nodes, v.probed = s.probe(ctx), true
	}
	return v.nodes, nil
}

func (v *view) observed(ctx context.Context) (*session, reconciler.Observed, error) {
	nodes, err := v.probe(ctx)
	if err != nil {
		return nil, reconciler.Observed{}, err
	}
	if v.obs == nil {
		r := v.s.reconciler()
		r.Probe = func(context.Context) []node.Status { return nodes }
		obs := r.Observe(ctx)
		v.obs = &obs
	}
	return v.s, *v.obs, nil
}

func (v *view) close() {
	if v.s != nil {
		v.s.Close()
	}
}

func getNodes(cmd *cobra.Command, v *view, output string) error {
	statuses, err := v.probe(cmd.Context())
	if err != nil {
		return err
	}
	if err := v.since(cmd.Context(), statuses); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printList(w, output, statuses)
	}
	headers := []string{"NAME", "STATUS", "SINCE", "ADDRESS", "DOCKER", "CPUS", "MEMORY", "CONTAINERS", "REASON"}
	if output == "wide" {
		headers = append(headers, "LABELS", "LATENCY")
	}
	t := newTable(w, headers...)
	for _, st := range statuses {
		since := "-"
		if !st.Since.IsZero() {
			since = age(st.Since)
		}
		cols := []string{st.Name, st.Status, since, st.Address, dash(st.DockerVersion), "-", "-", "-", dash(st.Reason)}
		if st.Status == node.Ready {
			cols[5] = fmt.Sprintf("%g", st.CPUs)
			cols[6] = humanBytes(st.Memory)
			cols[7] = fmt.Sprint(st.Containers)
		}
		if output == "wide" {
			cols = append(cols, labelString(st.Labels), st.Latency.Round(time.Millisecond).String())
		}
		t.row(cols...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if output == "wide" {
		for _, st := range statuses {
			if st.Error != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", st.Name, st.Error)
			}
		}
	}
	return nil
}

// since sets, on each machine whose status matches the last
// NodeReady/NodeNotReady event fleet serve recorded for it, when that was.
func (v *view) since(ctx context.Context, statuses []node.Status) error {
	s, err := v.session(ctx)
	if err != nil {
		return err
	}
	evs, err := s.store.Events(ctx, "", 5000)
	if err != nil {
		return err
	}
	last := map[string]store.Event{}
	for _, e := range evs { // newest first
		if e.Kind != "Node" || e.Reason != "NodeReady" && e.Reason != "NodeNotReady" {
			continue
		}
		if _, ok := last[e.Machine]; !ok {
			last[e.Machine] = e
		}
	}
	for i := range statuses {
		e, ok := last[statuses[i].Name]
		if ok && (e.Reason == "NodeReady") == (statuses[i].Status == node.Ready) {
			statuses[i].Since = e.At
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func labelString(l map[string]string) string {
	if len(l) == 0 {
		return "<none>"
	}
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
