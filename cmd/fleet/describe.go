package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newDescribeCmd(g *globals) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "describe deploy/NAME",
		Short: "Show a Deployment in detail: template, revisions, pods, events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := parseRef(args[0])
			if err != nil {
				return err
			}
			if kind != "Deployment" {
				return fmt.Errorf("describe %s: only deployments can be described so far", args[0])
			}
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			o, ok, err := s.store.Get(cmd.Context(), "Deployment", ns, name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("deployment %s not found in namespace %s (fleet get deploy -A lists them)", name, ns)
			}
			d, err := decodeDeployment(o)
			if err != nil {
				return err
			}
			obs := s.reconciler().Observe(cmd.Context())
			views, err := deployViews(cmd.Context(), s, obs, ns)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, v := range views {
				if v.Name != name {
					continue
				}
				fmt.Fprintf(w, "Name:          %s\nNamespace:     %s\nCreated:       %s\nGeneration:    %d\n", v.Name, v.Namespace, o.CreatedAt.Local().Format(time.RFC3339), v.Generation)
				fmt.Fprintf(w, "Selector:      %s\nReplicas:      %d desired | %d updated | %d ready | %d available\n", labelString(d.Selector), v.Replicas, v.UpToDate, v.Ready, v.Available)
				fmt.Fprintf(w, "Strategy:      %s\nRevision:      %d (template %s)\n", d.Strategy.Type, v.Revision, d.PodSpecHash())
			}
			fmt.Fprintf(w, "Pod template:\n  Labels: %s\n", labelString(d.Template.Labels))
			if len(d.Template.Spec.NodeSelector) > 0 {
				fmt.Fprintf(w, "  Node selector: %s\n", labelString(d.Template.Spec.NodeSelector))
			}
			for _, c := range d.Template.Spec.Containers {
				fmt.Fprintf(w, "  Container %s:\n    Image: %s\n", c.Name, c.Image)
				if len(c.Command) > 0 {
					fmt.Fprintf(w, "    Command: %s\n", strings.Join(c.Command, " "))
				}
				if len(c.Args) > 0 {
					fmt.Fprintf(w, "    Args: %s\n", strings.Join(c.Args, " "))
				}
				for _, p := range c.Ports {
					fmt.Fprintf(w, "    Port: %d/%s\n", p.ContainerPort, p.Protocol)
				}
				fmt.Fprintf(w, "    Requests: cpu %dm, memory %s; limits: cpu %dm, memory %s\n",
					c.Resources.Requests.MilliCPU, humanBytes(c.Resources.Requests.Memory), c.Resources.Limits.MilliCPU, humanBytes(c.Resources.Limits.Memory))
				for _, e := range c.Env {
					fmt.Fprintf(w, "    Env: %s=%s\n", e.Name, e.Value)
				}
			}
			revs, _ := s.store.Revisions(cmd.Context(), "Deployment", ns, name)
			fmt.Fprintln(w, "Revisions:")
			for _, r := range revs {
				fmt.Fprintf(w, "  %d  %s  %s  %s\n", r.Revision, r.TemplateHash, r.CreatedAt.Local().Format(time.RFC3339), r.ChangeCause)
			}
			fmt.Fprintln(w, "Pods:")
			t := newTable(w, "  NAME", "STATUS", "NODE", "REVISION", "AGE")
			for _, p := range obs.Pods {
				if p.Namespace == ns && p.Owner == name {
					t.row("  "+p.Name, p.Status, p.Node, fmt.Sprint(p.Revision), age(p.Created))
				}
			}
			t.flush()
			evs, _ := s.store.Events(cmd.Context(), ns, 0)
			var mine []string
			for _, e := range evs {
				if e.Name == name || strings.HasPrefix(e.Name, name+"-") {
					mine = append(mine, fmt.Sprintf("  %s  %-7s  %-16s  %s", e.At.Local().Format("15:04:05"), e.Type, e.Reason, e.Message))
				}
			}
			if len(mine) > 20 {
				mine = mine[len(mine)-20:]
			}
			sort.Strings(mine)
			fmt.Fprintln(w, "Events:")
			for _, l := range mine {
				fmt.Fprintln(w, l)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	return cmd
}
