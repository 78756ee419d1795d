package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// kindResource is how kubectl names each kind in its output.
var kindResource = map[string]string{
	"Namespace":  "namespace",
	"Deployment": "deployment.apps",
	"Service":    "service",
	"ConfigMap":  "configmap",
	"Secret":     "secret",

	"PersistentVolumeClaim": "persistentvolumeclaim",
	"Ingress":               "ingress.networking.k8s.io",
}

// manifestFlags are -f and -n for commands that read manifests.
type manifestFlags struct {
	files     []string
	namespace string
}

func (m *manifestFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&m.files, "filename", "f", nil, "manifest file or directory (recursive, *.yaml/*.yml), or - for stdin; repeatable")
	cmd.Flags().StringVarP(&m.namespace, "namespace", "n", "", "namespace for objects that name none (default \"default\")")
}

// load parses and validates every manifest; nothing is touched on error.
func (m *manifestFlags) load(cmd *cobra.Command) (spec.Result, error) {
	if len(m.files) == 0 {
		return spec.Result{}, errors.New("no manifests: give -f FILE, -f DIR or -f -")
	}
	ns := m.namespace
	if ns == "" {
		ns = "default"
	}
	res, err := spec.Load(m.files, cmd.InOrStdin(), ns)
	if err != nil {
		return spec.Result{}, fmt.Errorf("invalid manifests; nothing was applied:\n%w", err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w.String())
	}
	return res, nil
}

// writes turns objects into store writes, after checking that every
// namespace they use exists or is created alongside.
func writes(ctx context.Context, st *store.Store, objs []spec.Object, cause string) ([]store.Write, error) {
	known := map[string]bool{"default": true}
	for _, o := range objs {
		if o.Metadata().Kind == "Namespace" {
			known[o.Metadata().Name] = true
		}
	}
	stored, err := st.List(ctx, "Namespace", "")
	if err != nil {
		return nil, err
	}
	for _, o := range stored {
		known[o.Name] = true
	}
	var out []store.Write
	services, err := st.List(ctx, "Service", "")
	if err != nil {
		return nil, err
	}
	problems := allocateNodePorts(services, objs)
	missing, err := checkConfigRefs(ctx, st, objs)
	if err != nil {
		return nil, err
	}
	problems = append(problems, missing...)
	problems = append(problems, checkLoadBalancerPorts(services, objs)...)
	for _, o := range objs {
		m := o.Metadata()
		ns := m.Namespace
		if m.Kind == "Namespace" {
			ns = ""
		} else if !known[ns] {
			problems = append(problems, fmt.Sprintf("%s:%d: %s/%s: namespace %q does not exist: apply a Namespace object named %s first (or in the same apply)",
				m.Source.File, m.Source.Line, m.Kind, m.Name, ns, ns))
			continue
		}
		if d, ok := o.(*spec.Deployment); ok && !d.Paused {
			// A rollout paused by `fleet rollout pause` stays paused across
			// applies until `fleet rollout resume`: pause, change, resume.
			if prev, found, err := st.Get(ctx, "Deployment", ns, m.Name); err == nil && found {
				if old, err := decodeDeployment(prev); err == nil && old.Paused {
					d.Paused = true
				}
			}
		}
		b, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		w := store.Write{Kind: m.Kind, Namespace: ns, Name: m.Name, Spec: b}
		if d, ok := o.(*spec.Deployment); ok {
			w.TemplateHash = d.PodSpecHash()
			w.ChangeCause = cause
			if c := d.Annotations["kubernetes.io/change-cause"]; c != "" {
				w.ChangeCause = c
			}
		}
		out = append(out, w)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid manifests; nothing was applied:\n%s", strings.Join(problems, "\n"))
	}
	return out, nil
}

func newApplyCmd(g *globals) *cobra.Command {
	var mf manifestFlags
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Record the desired state from manifests and make the machines match it",
		Long: "Validates every manifest first: one invalid document applies nothing.\n" +
			"Then records the objects in the state file and, unless --wait=false, runs\n" +
			"reconcile passes until the rollout is complete (or `fleet serve` does it).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := mf.load(cmd)
			if err != nil {
				return err
			}
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			ws, err := writes(cmd.Context(), s.store, res.Objects, "fleet apply -f "+strings.Join(mf.files, ","))
			if err != nil {
				return err
			}
			applied, err := s.store.Apply(cmd.Context(), ws, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for i, a := range applied {
				fmt.Fprintf(out, "%s/%s %s\n", kindResource[a.Kind], a.Name, a.Outcome)
				if svc, ok := res.Objects[i].(*spec.Service); ok {
					// Said plainly rather than pretended.
					switch svc.Type {
					case "ClusterIP":
						fmt.Fprintln(out, "  note: ClusterIP service: fleet has no cluster network yet; it is reachable through an Ingress (fleet serve)")
					case "NodePort":
						var ports []string
						for _, p := range svc.Ports {
							ports = append(ports, fmt.Sprintf("%d", p.NodePort))
						}
						fmt.Fprintf(out, "  note: NodePort service: node port %s is published on the machines that run its pods (at most one such pod per machine)\n", strings.Join(ports, ", "))
					case "ExternalName":
						fmt.Fprintln(out, "  note: ExternalName service stored and validated, not routed yet")
					}
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
	return cmd
}

// waitFlags are --wait and --timeout.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.wait, "wait", true, "wait until the machines match (runs reconcile passes unless fleet serve holds the lease)")
	cmd.Flags().DurationVar(&w.timeout, "timeout", 5*time.Minute, "give up waiting after this long")
}

func holderName(what string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s pid %d on %s", what, os.Getpid(), host)
}

// converge runs passes until the machines match the desired state. If
// another fleet (serve, or a cron reconcile) holds the lease, it waits for
// that one to act instead of acting beside it.
func converge(cmd *cobra.Command, s *session, g *globals, opts reconciler.Options, wf waitFlags) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), wf.timeout)
	defer cancel()
	out := cmd.OutOrStdout()
	holder := holderName(cmd.Name())
	rec := s.reconciler()
	defer s.store.ReleaseLease(context.Background(), reconciler.LeaseName, holder)
	before, err := reconciler.ReadRollouts(ctx, s.store)
	if err != nil {
		return err
	}
	// done ends the wait: converged, unless a rollout failed meanwhile
	// and was rolled back (exit 1, after the rollback converged).
	done := func(res reconciler.Result, said string) error {
		var failed []string
		for _, key := range slices.Sorted(maps.Keys(res.Rollouts)) {
			st, was := res.Rollouts[key], before[key]
			if st.FailedRevision != 0 && (was == nil || was.FailedRevision != st.FailedRevision) {
				failed = append(failed, fmt.Sprintf("deployment %s: revision %d failed (%s) and was rolled back to revision %d's template (now revision %d)",
					key, st.FailedRevision, st.FailedReason, st.RolledBackTo, st.Revision))
			}
			if st.Phase == reconciler.PhaseFailed && (was == nil || was.Phase != reconciler.PhaseFailed) {
				failed = append(failed, fmt.Sprintf("deployment %s: %s", key, st.Message))
			}
		}
		if len(failed) > 0 {
			return &exitError{code: 1, err: errors.New("rollout failed: " + strings.Join(failed, "; "))}
		}
		fmt.Fprintln(out, said)
		return nil
	}
	// A canary or blue-green rollout waiting for `fleet rollout promote`
	// is as far as a wait can go.
	// stopped is what rollouts that stop a wait say ("deployment KEY:
	// message"), when res plans nothing more.
	stopped := func(res reconciler.Result, stops func(*reconciler.RolloutState) bool) []string {
		if !res.Plan.Empty() || len(res.Restarts) > 0 {
			return nil
		}
		var msgs []string
		for _, key := range slices.Sorted(maps.Keys(res.Rollouts)) {
			if st := res.Rollouts[key]; stops(st) {
				msgs = append(msgs, "deployment "+key+": "+st.Message)
			}
		}
		return msgs
	}
	paused := func(res reconciler.Result) bool {
		msgs := stopped(res, (*reconciler.RolloutState).WaitsForPromote)
		for _, m := range msgs {
			fmt.Fprintln(out, m)
		}
		return len(msgs) > 0
	}
	// A rollout held on the pods of before (its new pods failed, and
	// what changed is not the template) is as far as a wait can go.
	held := func(res reconciler.Result) error {
		msgs := stopped(res, func(st *reconciler.RolloutState) bool { return st.Held && st.Phase == reconciler.PhaseFailed })
		if len(msgs) == 0 {
			return nil
		}
		return &exitError{code: 1, err: errors.New("rollout failed: " + strings.Join(msgs, "; "))}
	}
	var last string
	for pass := 1; ; pass++ {
		lease, err := s.store.AcquireLease(ctx, reconciler.LeaseName, holder, 30*time.Second, time.Now())
		if errors.Is(err, store.ErrLeaseHeld) {
			// Another fleet acts; watch the machines until they match.
			res, err := rec.Pass(ctx, reconciler.Options{DryRun: true, Prune: opts.Prune})
			if err != nil {
				return err
			}
			if res.Converged() {
				return done(res, fmt.Sprintf("converged (by %s)", lease.Holder))
			}
			if paused(res) {
				return nil
			}
			if err := held(res); err != nil {
				return err
			}
			msg := fmt.Sprintf("waiting for %s: %s; %d/%d replicas running the current template", lease.Holder, res.Summary(), res.Current, res.Desired)
			if msg != last {
				fmt.Fprintln(out, msg)
				last = msg
			}
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("not converged after %s: %s still working: %s", wf.timeout, lease.Holder, res.Summary())}
			}
			continue
		}
		if err != nil {
			return err
		}
		res, err := rec.Pass(ctx, opts)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("pass %d: %s; %d/%d replicas running the current template", pass, res.Summary(), res.Current, res.Desired)
		fmt.Fprintln(out, line)
		for _, e := range res.Errors {
			fmt.Fprintln(cmd.ErrOrStderr(), "  error:", e)
		}
		for _, u := range res.Plan.Unplaceable {
			fmt.Fprintf(cmd.ErrOrStderr(), "  %s: %d replica(s) cannot be placed: %s\n", u.Workload, u.Count, u.Reason)
		}
		for _, rb := range res.RolledBack {
			fmt.Fprintln(cmd.ErrOrStderr(), "  rollout failed, rolling back:", rb)
		}
		if res.Converged() {
			return done(res, "converged")
		}
		if paused(res) {
			return nil
		}
		if err := held(res); err != nil {
			return err
		}
		if len(res.Plan.Unplaceable) > 0 && res.Plan.Empty() {
			return &exitError{code: 1, err: errors.New("not converged: some replicas cannot be placed (see above)")}
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("not converged after %s: %s", wf.timeout, res.Summary())}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func newReconcileCmd(g *globals) *cobra.Command {
	var dryRun, prune, waitLease bool
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "One converging pass, safe under cron: exit 0 when converged",
		Long: "Observes every machine, plans and applies one pass. Exit 0 when the machines\n" +
			"already matched or the pass made them match; 1 with a summary otherwise; 3 when\n" +
			"another fleet holds the lease (unless --wait-lease).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			holder := holderName("reconcile")
			lease, err := reconciler.AcquireLease(cmd.Context(), s.store, holder, 60*time.Second, time.Now, waitLease, nil)
			if errors.Is(err, store.ErrLeaseHeld) {
				return &exitError{code: 3, err: fmt.Errorf("%s holds the reconcile lease until %s; it is acting on the machines", lease.Holder, lease.ExpiresAt.Local().Format(time.TimeOnly))}
			}
			if err != nil {
				return err
			}
			defer s.store.ReleaseLease(context.Background(), reconciler.LeaseName, holder)
			res, err := s.reconciler().Pass(cmd.Context(), reconciler.Options{DryRun: dryRun, Prune: prune})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			printPlan(out, res)
			for _, e := range res.Errors {
				fmt.Fprintln(cmd.ErrOrStderr(), "error:", e)
			}
			if res.Plan.Empty() && len(res.Restarts) == 0 && len(res.Errors) == 0 && len(res.Plan.Unplaceable) == 0 && res.Current == res.Desired {
				fmt.Fprintln(out, "converged: nothing to do")
				return nil
			}
			if dryRun {
				return &exitError{code: 2, err: fmt.Errorf("changes pending: %s", res.Summary())}
			}
			if len(res.Errors) == 0 && len(res.Plan.Unplaceable) == 0 {
				fmt.Fprintf(out, "applied: %s\n", res.Summary())
				return nil
			}
			return &exitError{code: 1, err: fmt.Errorf("not converged: %s", res.Summary())}
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "plan and print, change nothing (exit 2 when changes are pending)")
	cmd.Flags().BoolVar(&prune, "prune", true, "remove containers fleet created that nothing desires")
	cmd.Flags().BoolVar(&waitLease, "wait-lease", false, "wait for another fleet's lease instead of exiting")
	return cmd
}

// printPlan writes a pass's plan, one step a line, grouped by machine.
func printPlan(w io.Writer, res reconciler.Result) {
	if len(res.Plan.Steps) == 0 && len(res.Restarts) == 0 {
		return
	}
	lines := map[string][]string{}
	for _, s := range res.Plan.Steps {
		lines[stepMachine(s)] = append(lines[stepMachine(s)], s.String())
	}
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s:\n", k)
		for _, l := range lines[k] {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	for _, r := range res.Restarts {
		fmt.Fprintf(w, "restart %s (found stopped)\n", r)
	}
}
