package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/fleetdev/fleet/planner"
	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

func stepMachine(s planner.Step) string {
	switch s := s.(type) {
	case planner.Run:
		return s.Node
	case planner.Stop:
		return s.Node
	case planner.Replace:
		return s.New.Node
	}
	return "?"
}

// nsFlags are -n and -A.
type nsFlags struct {
	namespace string
	all       bool
}

func (n *nsFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&n.namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVarP(&n.all, "all-namespaces", "A", false, "every namespace")
}

// filter is the namespace to list ("" for all).
func (n *nsFlags) filter() string {
	if n.all {
		return ""
	}
	return n.namespace
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// deployView is one Deployment with its observed replicas.
type deployView struct {
	Name       string            `json:"name"`
	Namespace  string            `json:"namespace"`
	Replicas   int               `json:"replicas"`
	Ready      int               `json:"readyReplicas"`
	UpToDate   int               `json:"updatedReplicas"`
	Available  int               `json:"availableReplicas"`
	Generation int64             `json:"generation"`
	Revision   int64             `json:"revision"`
	Images     []string          `json:"images"`
	Selector   map[string]string `json:"selector"`
	Created    time.Time         `json:"created"`
}

func decodeDeployment(o store.Object) (*spec.Deployment, error) {
	var d spec.Deployment
	if err := json.Unmarshal(o.Spec, &d); err != nil {
		return nil, fmt.Errorf("decode Deployment %s/%s: %w", o.Namespace, o.Name, err)
	}
	return &d, nil
}

func deployViews(ctx context.Context, s *session, obs reconciler.Observed, ns string) ([]deployView, error) {
	objs, err := s.store.List(ctx, "Deployment", ns)
	if err != nil {
		return nil, err
	}
	var out []deployView
	for _, o := range objs {
		d, err := decodeDeployment(o)
		if err != nil {
			return nil, err
		}
		out = append(out, deployViewOf(ctx, s, obs, o, d))
	}
	return out, nil
}

// deployViewOf is stored Deployment o (decoded: d) with its pods in obs.
func deployViewOf(ctx context.Context, s *session, obs reconciler.Observed, o store.Object, d *spec.Deployment) deployView {
	v := deployView{Name: o.Name, Namespace: o.Namespace, Replicas: d.Replicas, Generation: o.Generation, Selector: d.Selector, Created: o.CreatedAt}
	revs, _ := s.store.Revisions(ctx, "Deployment", o.Namespace, o.Name)
	if len(revs) > 0 {
		v.Revision = revs[len(revs)-1].Revision
	}
	for _, c := range d.Template.Spec.Containers {
		v.Images = append(v.Images, c.Image)
	}
	for _, p := range obs.Pods {
		if p.Namespace != o.Namespace || p.Owner != o.Name {
			continue
		}
		if p.Ready {
			v.Ready++
			v.Available++
		}
		// A pod carries the revision of its template (a template brought
		// back gets a new revision): the latest is up to date.
		if p.Revision == v.Revision {
			v.UpToDate++
		}
	}
	return v
}

func getDeployments(cmd *cobra.Command, v *view, ns nsFlags, output string) error {
	s, obs, err := v.observed(cmd.Context())
	if err != nil {
		return err
	}
	views, err := deployViews(cmd.Context(), s, obs, ns.filter())
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printList(w, output, views)
	}
	headers := []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}
	if ns.all {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	if output == "wide" {
		headers = append(headers, "IMAGES", "REVISION", "SELECTOR")
	}
	t := newTable(w, headers...)
	for _, v := range views {
		cols := []string{v.Name, fmt.Sprintf("%d/%d", v.Ready, v.Replicas), fmt.Sprint(v.UpToDate), fmt.Sprint(v.Available), age(v.Created)}
		if ns.all {
			cols = append([]string{v.Namespace}, cols...)
		}
		if output == "wide" {
			cols = append(cols, strings.Join(v.Images, ","), fmt.Sprint(v.Revision), labelString(v.Selector))
		}
		t.row(cols...)
	}
	return t.flush()
}

func getPods(cmd *cobra.Command, v *view, ns nsFlags, output string) error {
	_, obs, err := v.observed(cmd.Context())
	if err != nil {
		return err
	}
	var pods []reconciler.PodStatus
	for _, p := range obs.Pods {
		if ns.filter() == "" || p.Namespace == ns.filter() {
			pods = append(pods, p)
		}
	}
	if pods == nil {
		pods = []reconciler.PodStatus{}
	}
	w := cmd.OutOrStdout()
	for _, n := range obs.Nodes {
		if n.Reason != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: machine %s is NotReady (%s): its pods are shown as last seen, Unknown\n", n.Name, n.Reason)
		}
	}
	if output == "json" || output == "yaml" {
		return printList(w, output, pods)
	}
	headers := []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE", "REVISION"}
	if ns.all {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	if output == "wide" {
		headers = append(headers, "IP", "IMAGE", "CONTAINER", "REASON")
	}
	t := newTable(w, headers...)
	for _, p := range pods {
		ready, ip := 0, dash(p.PodIP())
		for _, c := range p.Containers {
			if c.Ready {
				ready++
			}
		}
		cols := []string{p.Name, fmt.Sprintf("%d/%d", ready, len(p.Containers)), p.Status, restarts(p), age(p.Created), p.Node, fmt.Sprint(p.Revision)}
		if ns.all {
			cols = append([]string{p.Namespace}, cols...)
		}
		if output == "wide" {
			reason := dash(p.Reason)
			if p.Message != "" {
				reason += ": " + p.Message
			}
			cols = append(cols, ip, p.Image, p.ContainerID, reason)
		}
		t.row(cols...)
	}
	return t.flush()
}

// restarts reads as kubectl's: "3 (42s ago)" when the last stop is known.
func restarts(p reconciler.PodStatus) string {
	var last time.Time
	for _, c := range p.Containers {
		if c.Restarts+c.Carried > 0 && c.FinishedAt.After(last) {
			last = c.FinishedAt
		}
	}
	if p.Restarts == 0 || last.IsZero() {
		return fmt.Sprint(p.Restarts)
	}
	return fmt.Sprintf("%d (%s ago)", p.Restarts, age(last))
}

type nsView struct {
	Name    string    `json:"name"`
	Status  string    `json:"status"`
	Created time.Time `json:"created"`
}

func getNamespaces(cmd *cobra.Command, g *globals, output string) error {
	st, err := store.Open(cmd.Context(), g.state)
	if err != nil {
		return err
	}
	defer st.Close()
	objs, err := st.List(cmd.Context(), "Namespace", "")
	if err != nil {
		return err
	}
	views := []nsView{{Name: "default", Status: "Active"}}
	for _, o := range objs {
		if o.Name == "default" {
			views[0].Created = o.CreatedAt
			continue
		}
		views = append(views, nsView{Name: o.Name, Status: "Active", Created: o.CreatedAt})
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	if output == "json" || output == "yaml" {
		return printList(cmd.OutOrStdout(), output, views)
	}
	t := newTable(cmd.OutOrStdout(), "NAME", "STATUS", "AGE")
	for _, v := range views {
		a := "-"
		if !v.Created.IsZero() {
			a = age(v.Created)
		}
		t.row(v.Name, v.Status, a)
	}
	return t.flush()
}

type eventView struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Object  string    `json:"object"`
	Machine string    `json:"machine,omitempty"`
	Message string    `json:"message"`
	NS      string    `json:"namespace"`
}

func getEvents(cmd *cobra.Command, g *globals, ns nsFlags, output string) error {
	st, err := store.Open(cmd.Context(), g.state)
	if err != nil {
		return err
	}
	defer st.Close()
	evs, err := st.Events(cmd.Context(), ns.filter(), 500)
	if err != nil {
		return err
	}
	views := []eventView{}
	for _, e := range evs {
		views = append(views, eventView{Time: e.At, Type: e.Type, Reason: e.Reason, Object: strings.ToLower(e.Kind) + "/" + e.Name, Machine: e.Machine, Message: e.Message, NS: e.Namespace})
	}
	if output == "json" || output == "yaml" {
		return printList(cmd.OutOrStdout(), output, views)
	}
	t := newTable(cmd.OutOrStdout(), "TIME", "TYPE", "REASON", "OBJECT", "MACHINE", "MESSAGE")
	for _, v := range views {
		t.row(v.Time.Local().Format("15:04:05.000"), v.Type, v.Reason, v.Object, dash(v.Machine), v.Message)
	}
	return t.flush()
}

// parseRef reads TYPE/NAME (deploy/web, deployment/web, deployments/web).
func parseRef(ref string) (kind, name string, err error) {
	t, n, ok := strings.Cut(ref, "/")
	if !ok || n == "" {
		return "", "", fmt.Errorf("%q: want TYPE/NAME, e.g. deploy/web", ref)
	}
	switch t {
	case "deploy", "deployment", "deployments", "deployment.apps":
		return "Deployment", n, nil
	case "svc", "service", "services":
		return "Service", n, nil
	case "ns", "namespace", "namespaces":
		return "Namespace", n, nil
	case "po", "pod", "pods":
		return "Pod", n, nil
	case "ing", "ingress", "ingresses":
		return "Ingress", n, nil
	case "cm", "configmap", "configmaps":
		return "ConfigMap", n, nil
	case "secret", "secrets":
		return "Secret", n, nil
	case "pvc", "persistentvolumeclaim", "persistentvolumeclaims":
		return "PersistentVolumeClaim", n, nil
	}
	return "", "", fmt.Errorf("%q: unknown type %q (known: deploy, svc, ing, cm, secret, pvc, ns, pod)", ref, t)
}

func newScaleCmd(g *globals) *cobra.Command {
	var replicas int
	var ns string
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "scale deploy/NAME --replicas=N",
		Short: "Set a Deployment's replica count",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := parseRef(args[0])
			if err != nil {
				return err
			}
			if kind != "Deployment" {
				return fmt.Errorf("scale %s: only Deployments scale", args[0])
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas=%d: must be 0 or more", replicas)
			}
			if !cmd.Flags().Changed("replicas") {
				return fmt.Errorf("scale %s: --replicas is required", args[0])
			}
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			_, err = s.store.Update(cmd.Context(), "Deployment", ns, name, time.Now(), func(b []byte) ([]byte, error) {
				var d spec.Deployment
				if err := json.Unmarshal(b, &d); err != nil {
					return nil, err
				}
				d.Replicas = replicas
				return json.Marshal(&d)
			})
			if err != nil {
				return fmt.Errorf("scale %s in namespace %s: %w", args[0], ns, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment.apps/%s scaled to %d\n", name, replicas)
			if !wf.wait {
				return nil
			}
			return converge(cmd, s, g, reconciler.Options{Prune: true}, wf)
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 0, "the new replica count")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	wf.add(cmd)
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var mf manifestFlags
	var wf waitFlags
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete (-f FILE | TYPE/NAME)",
		Short: "Remove objects from the desired state; their containers are stopped (ns/NAME: everything in the namespace)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			type ref struct{ kind, ns, name string }
			var refs []ref
			ns := mf.namespace
			if ns == "" {
				ns = "default"
			}
			switch {
			case len(args) == 1 && len(mf.files) > 0:
				return fmt.Errorf("delete: give -f or TYPE/NAME, not both")
			case len(args) == 1:
				kind, name, err := parseRef(args[0])
				if err != nil {
					return err
				}
				if kind == "Pod" {
					return fmt.Errorf("delete %s: pods belong to their Deployment and are not in the desired state; scale or delete the Deployment", args[0])
				}
				if kind == "Namespace" {
					nsRefs, err := namespaceContents(cmd, g, name, yes)
					if err != nil {
						return err
					}
					for _, r := range nsRefs {
						refs = append(refs, ref{r[0], r[1], r[2]})
					}
					break
				}
				refs = append(refs, ref{kind, ns, name})
			default:
				res, err := mf.load(cmd)
				if err != nil {
					return err
				}
				for _, o := range res.Objects {
					m := o.Metadata()
					if m.Kind == "Namespace" {
						continue
					}
					refs = append(refs, ref{m.Kind, m.Namespace, m.Name})
				}
			}
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			for _, r := range refs {
				ok, err := s.store.Delete(cmd.Context(), r.kind, r.ns, r.name)
				if err != nil {
					return err
				}
				if ok {
					fmt.Fprintf(cmd.OutOrStdout(), "%s/%s deleted\n", kindResource[r.kind], r.name)
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s/%s not found in namespace %s\n", kindResource[r.kind], r.name, r.ns)
				}
			}
			if !wf.wait {
				return nil
			}
			return converge(cmd, s, g, reconciler.Options{Prune: true}, wf)
		},
	}
	mf.add(cmd)
	wf.add(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "delete a namespace without asking")
	return cmd
}

// namespaceKinds are the kinds a namespace holds, deleted in this order
// (what consumes before what is consumed).
var namespaceKinds = []string{"Ingress", "Service", "Deployment", "ConfigMap", "Secret", "PersistentVolumeClaim"}

// namespaceContents lists, as kind/namespace/name, everything in
// namespace ns and then the Namespace itself, once the user confirmed
// (or --yes): deleting a namespace deletes everything in it.
func namespaceContents(cmd *cobra.Command, g *globals, ns string, yes bool) ([][3]string, error) {
	if ns == "default" {
		return nil, fmt.Errorf("delete ns/default: the default namespace cannot be deleted; delete its objects instead")
	}
	s, err := g.open(cmd.Context())
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out [][3]string
	count := map[string]int{}
	for _, kind := range namespaceKinds {
		objs, err := s.store.List(cmd.Context(), kind, ns)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			out = append(out, [3]string{kind, ns, o.Name})
			count[kind]++
		}
	}
	if _, found, err := s.store.Get(cmd.Context(), "Namespace", "", ns); err != nil {
		return nil, err
	} else if !found && len(out) == 0 {
		return nil, fmt.Errorf("namespace %s not found (fleet get ns lists them)", ns)
	}
	var what []string
	for _, kind := range namespaceKinds {
		if n := count[kind]; n > 0 {
			what = append(what, fmt.Sprintf("%d %s", n, kindResource[kind]))
		}
	}
	summary := "nothing else"
	if len(what) > 0 {
		summary = strings.Join(what, ", ")
	}
	if !yes {
		in := cmd.InOrStdin()
		if f, ok := in.(*os.File); !ok || !isTerminal(f) {
			return nil, &exitError{code: 1, err: fmt.Errorf("delete ns/%s would delete %s in it; run again with --yes to confirm", ns, summary)}
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Delete namespace %s and %s in it? [y/N] ", ns, summary)
		var answer string
		fmt.Fscanln(in, &answer)
		if answer != "y" && answer != "yes" {
			return nil, &exitError{code: 1, err: errors.New("not deleted")}
		}
	}
	return append(out, [3]string{"Namespace", "", ns}), nil
}

// isTerminal reports whether f is a terminal (not /dev/null, which is a
// character device too).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
