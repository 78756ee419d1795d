package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/node"
)

func newGetCmd(g *globals) *cobra.Command {
	var output string
	var ns nsFlags
	cmd := &cobra.Command{
		Use:   "get RESOURCE[,RESOURCE...]",
		Short: "Show resources: nodes, deploy, pods, ns, events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			kinds := strings.Split(args[0], ",")
			for i, k := range kinds {
				if i > 0 && output != "json" && output != "yaml" {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				var err error
				switch k {
				case "nodes", "node", "no":
					err = getNodes(cmd, g, output)
				case "deploy", "deployment", "deployments":
					err = getDeployments(cmd, g, ns, output)
				case "pods", "pod", "po":
					err = getPods(cmd, g, ns, output)
				case "ns", "namespace", "namespaces":
					err = getNamespaces(cmd, g, output)
				case "events", "event", "ev":
					err = getEvents(cmd, g, ns, output)
				default:
					err = fmt.Errorf("get %s: unknown resource type (known: nodes, deploy, pods, ns, events)", k)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide, json or yaml")
	ns.add(cmd)
	return cmd
}

func getNodes(cmd *cobra.Command, g *globals, output string) error {
	s, err := g.open(cmd.Context())
	if err != nil {
		return err
	}
	defer s.Close()
	statuses := node.Probe(cmd.Context(), s.inv, s.pool, node.Options{Timeout: g.dialTimeout + 2*time.Second, Facts: s.store})
	w := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printList(w, output, statuses)
	}
	headers := []string{"NAME", "STATUS", "ADDRESS", "DOCKER", "CPUS", "MEMORY", "CONTAINERS", "REASON"}
	if output == "wide" {
		headers = append(headers, "LABELS", "LATENCY")
	}
	t := newTable(w, headers...)
	for _, st := range statuses {
		cols := []string{st.Name, st.Status, st.Address, dash(st.DockerVersion), "-", "-", "-", dash(st.Reason)}
		if st.Status == node.Ready {
			cols[4] = fmt.Sprintf("%g", st.CPUs)
			cols[5] = humanBytes(st.Memory)
			cols[6] = fmt.Sprint(st.Containers)
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
