package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/reconciler"
)

func newDescribeCmd(g *globals) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "describe deploy/NAME | pod/NAME",
		Short: "Show a Deployment (template, revisions, pods, events) or a pod (containers, last exit, log tail, events) in detail",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := parseRef(args[0])
			if err != nil {
				return err
			}
			if kind != "Deployment" && kind != "Pod" {
				return fmt.Errorf("describe %s: only deployments and pods can be described so far", args[0])
			}
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			if kind == "Pod" {
				return describePod(cmd, s, ns, name)
			}
			o, d, err := loadDeployment(cmd.Context(), s, ns, name)
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
				for _, e := range c.EnvFrom {
					if e.ConfigMapRef != nil {
						fmt.Fprintf(w, "    Env from: ConfigMap %s (prefix %q)\n", e.ConfigMapRef.Name, e.Prefix)
					} else {
						fmt.Fprintf(w, "    Env from: Secret %s (prefix %q)\n", e.SecretRef.Name, e.Prefix)
					}
				}
				for _, e := range c.Env {
					switch {
					case e.ValueFrom == nil:
						fmt.Fprintf(w, "    Env: %s=%s\n", e.Name, e.Value)
					case e.ValueFrom.ConfigMapKeyRef != nil:
						fmt.Fprintf(w, "    Env: %s from ConfigMap %s key %s\n", e.Name, e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Key)
					default:
						fmt.Fprintf(w, "    Env: %s from Secret %s key %s\n", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
					}
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

// describePod prints one pod as found on its machine: each container's
// state, last exit, restarts, probes and the tail of its log, then the
// pod's events.
func describePod(cmd *cobra.Command, s *session, ns, name string) error {
	ctx := cmd.Context()
	obs := s.reconciler().Observe(ctx)
	var found []reconciler.PodStatus
	for _, p := range obs.Pods {
		if p.Namespace == ns && p.Name == name {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return fmt.Errorf("pod %s not found in namespace %s (fleet get pods -A lists them)", name, ns)
	}
	w := cmd.OutOrStdout()
	for _, p := range found {
		fmt.Fprintf(w, "Name:          %s\nNamespace:     %s\nNode:          %s\nControlled by: Deployment/%s\n", p.Name, p.Namespace, p.Node, p.Owner)
		fmt.Fprintf(w, "Created:       %s\nRevision:      %d (template %s)\n", p.Created.Local().Format(time.RFC3339), p.Revision, p.SpecHash)
		fmt.Fprintf(w, "Status:        %s\nReady:         %v\nRestarts:      %d\n", p.Status, p.Ready, p.Restarts)
		if p.Reason != "" {
			fmt.Fprintf(w, "Reason:        %s\nMessage:       %s\n", p.Reason, p.Message)
		}
		fmt.Fprintln(w, "Containers:")
		for _, c := range p.Containers {
			fmt.Fprintf(w, "  %s:\n    Container ID: %s\n    Image:        %s\n    IP:           %s\n", c.Name, c.ID, c.Image, dash(p.PodIP()))
			fmt.Fprintf(w, "    State:        %s", c.State)
			if c.State == "running" && !c.StartedAt.IsZero() {
				fmt.Fprintf(w, " since %s", c.StartedAt.Local().Format(time.RFC3339))
			}
			fmt.Fprintln(w)
			if !c.FinishedAt.IsZero() {
				fmt.Fprintf(w, "    Last exit:    code %d at %s", c.ExitCode, c.FinishedAt.Local().Format(time.RFC3339))
				if c.OOMKilled {
					fmt.Fprint(w, " (OOMKilled)")
				}
				if c.Error != "" {
					fmt.Fprintf(w, " (%s)", c.Error)
				}
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "    Ready:        %v\n    Restarts:     %d\n", c.Ready, c.Restarts+c.Carried)
			if c.Probes != "" {
				fmt.Fprintf(w, "    Probes:       %s\n", c.Probes)
			}
			if c.Health != "" {
				fmt.Fprintf(w, "    Health:       %s (Docker HEALTHCHECK)\n", c.Health)
			}
			if c.Reason != "" {
				fmt.Fprintf(w, "    Reason:       %s: %s\n", c.Reason, c.Message)
			}
			if p.Status == reconciler.Unknown {
				continue
			}
			fmt.Fprintf(w, "    Log (last %d lines):\n", logTail)
			lines, err := containerLog(ctx, s, p.Node, c.ID)
			if err != nil {
				fmt.Fprintf(w, "      (cannot read the log: %v)\n", err)
			}
			for _, l := range lines {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
		evs, _ := s.store.Events(ctx, ns, 500) // oldest first
		fmt.Fprintln(w, "Events:")
		for _, e := range evs {
			if e.Kind == "Pod" && e.Name == p.Name && e.Machine == p.Node {
				fmt.Fprintf(w, "  %s  %-7s  %-16s  %s\n", e.At.Local().Format("15:04:05"), e.Type, e.Reason, e.Message)
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}

// logTail is how many lines of each container's log describe shows.
const logTail = 20

// containerLog is the last logTail lines of a container's stdout and
// stderr, read over the machine's Docker API.
func containerLog(ctx context.Context, s *session, machine, id string) ([]string, error) {
	d, err := s.pool.Docker(machine)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc, err := d.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(logTail)})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	// Containers run without a TTY: the stream is multiplexed.
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 1<<20)); err != nil {
		return nil, err
	}
	text := strings.TrimRight(buf.String(), "\n")
	if text == "" {
		return nil, nil
	}
	return strings.Split(text, "\n"), nil
}
