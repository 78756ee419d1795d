package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// restartedAtAnnotation is the template annotation `rollout restart`
// sets, as kubectl does: a new template, so every pod is replaced.
const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow, list, undo and restart the rollouts of Deployments",
	}
	cmd.AddCommand(newRolloutStatusCmd(g), newRolloutHistoryCmd(g), newRolloutUndoCmd(g), newRolloutRestartCmd(g),
		newRolloutPauseCmd(g, true), newRolloutPauseCmd(g, false), newRolloutPromoteCmd(g))
	return cmd
}

// deploymentRef reads TYPE/NAME for a rollout command: only Deployments.
func deploymentRef(ref string) (string, error) {
	kind, name, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	if kind != "Deployment" {
		return "", fmt.Errorf("%s: rollouts are of Deployments (deploy/NAME)", ref)
	}
	return name, nil
}

// loadDeployment is the stored Deployment ns/name, or an error saying how
// to find one.
func loadDeployment(ctx context.Context, s *session, ns, name string) (store.Object, *spec.Deployment, error) {
	o, ok, err := s.store.Get(ctx, "Deployment", ns, name)
	if err != nil {
		return store.Object{}, nil, err
	}
	if !ok {
		return store.Object{}, nil, fmt.Errorf("deployment %s not found in namespace %s (fleet get deploy -A lists them)", name, ns)
	}
	d, err := decodeDeployment(o)
	return o, d, err
}

// openDeployment opens the state file and reads deploy/NAME (ref) in ns;
// the caller closes the session.
func openDeployment(cmd *cobra.Command, g *globals, ref, ns string) (*session, string, *spec.Deployment, error) {
	name, err := deploymentRef(ref)
	if err != nil {
		return nil, "", nil, err
	}
	s, err := g.open(cmd.Context())
	if err != nil {
		return nil, "", nil, err
	}
	_, d, err := loadDeployment(cmd.Context(), s, ns, name)
	if err != nil {
		s.Close()
		return nil, "", nil, err
	}
	return s, name, d, nil
}

func newRolloutHistoryCmd(g *globals) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "history deploy/NAME",
		Short: "List a Deployment's revisions, with their change cause",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, name, _, err := openDeployment(cmd, g, args[0], ns)
			if err != nil {
				return err
			}
			defer s.Close()
			revs, err := s.store.Revisions(cmd.Context(), "Deployment", ns, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment.apps/%s\n", name)
			t := newTable(cmd.OutOrStdout(), "REVISION", "TEMPLATE", "CREATED", "CHANGE-CAUSE")
			for i, r := range revs {
				rev := strconv.FormatInt(r.Revision, 10)
				if i == len(revs)-1 {
					rev += " (current)"
				}
				t.row(rev, r.TemplateHash, r.CreatedAt.Local().Format(time.DateTime), dash(r.ChangeCause))
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	return cmd
}

// changeDeployment is what undo, restart, pause and resume share: read
// deploy/NAME, let change edit it (returning the change cause and what to
// print, or done when there is nothing to change), record it (a new
// revision when its template is new), then, with wait, converge like
// apply.
func changeDeployment(cmd *cobra.Command, g *globals, ref, ns string, wf *waitFlags,
	change func(d *spec.Deployment, revs []store.Revision) (cause, said string, done bool, err error)) error {
	s, name, d, err := openDeployment(cmd, g, ref, ns)
	if err != nil {
		return err
	}
	defer s.Close()
	revs, err := s.store.Revisions(cmd.Context(), "Deployment", ns, name)
	if err != nil {
		return err
	}
	cause, said, done, err := change(d, revs)
	if err != nil || done {
		if said != "" {
			fmt.Fprintln(cmd.OutOrStdout(), said)
		}
		return err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	applied, err := s.store.Apply(cmd.Context(), []store.Write{{Kind: "Deployment", Namespace: ns, Name: name, Spec: b,
		TemplateHash: d.PodSpecHash(), ChangeCause: cause}}, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), strings.ReplaceAll(said, "{revision}", strconv.FormatInt(applied[0].Revision, 10)))
	if wf == nil || !wf.wait {
		return nil
	}
	return converge(cmd, s, g, reconciler.Options{Prune: true}, *wf)
}

func newRolloutUndoCmd(g *globals) *cobra.Command {
	var ns string
	var to int64
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "undo deploy/NAME [--to-revision N]",
		Short: "Go back to the previous revision's pod template (or revision N), as a new revision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return changeDeployment(cmd, g, args[0], ns, &wf, func(d *spec.Deployment, revs []store.Revision) (string, string, bool, error) {
				var target *store.Revision
				switch {
				case to > 0:
					for i := range revs {
						if revs[i].Revision == to {
							target = &revs[i]
						}
					}
					if target == nil {
						return "", "", false, fmt.Errorf("deployment %s has no revision %d (fleet rollout history deploy/%s lists them)", d.Name, to, d.Name)
					}
				case len(revs) < 2:
					return "", "", false, fmt.Errorf("deployment %s has no previous revision to go back to", d.Name)
				default:
					target = &revs[len(revs)-2]
				}
				if target.Revision == revs[len(revs)-1].Revision {
					return "", fmt.Sprintf("deployment.apps/%s already runs revision %d", d.Name, target.Revision), true, nil
				}
				var old spec.Deployment
				if err := json.Unmarshal(target.Spec, &old); err != nil {
					return "", "", false, fmt.Errorf("decode revision %d of deployment %s: %w", target.Revision, d.Name, err)
				}
				d.Template = old.Template
				return fmt.Sprintf("fleet rollout undo --to-revision %d", target.Revision),
					fmt.Sprintf("deployment.apps/%s rolled back to the template of revision %d (now revision {revision})", d.Name, target.Revision), false, nil
			})
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().Int64Var(&to, "to-revision", 0, "the revision to go back to (default: the one before the current)")
	wf.add(cmd)
	return cmd
}

func newRolloutRestartCmd(g *globals) *cobra.Command {
	var ns string
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "restart deploy/NAME",
		Short: "Replace every pod of a Deployment (a new revision with a restartedAt annotation)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return changeDeployment(cmd, g, args[0], ns, &wf, func(d *spec.Deployment, _ []store.Revision) (string, string, bool, error) {
				if d.Template.Annotations == nil {
					d.Template.Annotations = map[string]string{}
				}
				d.Template.Annotations[restartedAtAnnotation] = time.Now().UTC().Format(time.RFC3339Nano)
				return "fleet rollout restart", fmt.Sprintf("deployment.apps/%s restarted", d.Name), false, nil
			})
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	wf.add(cmd)
	return cmd
}

func newRolloutStatusCmd(g *globals) *cobra.Command {
	var ns string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status deploy/NAME",
		Short: "Follow a Deployment's rollout until every replica runs the current template and is ready (exit 1 on timeout)",
		Long: "Watches the machines and changes nothing: with fleet serve running (or an apply waiting)\n" +
			"the rollout proceeds; without, it waits for the next `fleet reconcile`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := deploymentRef(args[0])
			if err != nil {
				return err
			}
			v := &view{g: g}
			defer v.close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var last string
			for {
				s, err := v.session(ctx)
				if err != nil {
					return err
				}
				o, d, err := loadDeployment(ctx, s, ns, name)
				if err != nil {
					return err
				}
				if d.Paused {
					return &exitError{code: 1, err: fmt.Errorf("deployment %q is paused: its rollout waits for `fleet rollout resume deploy/%s`", name, name)}
				}
				st, err := rolloutState(ctx, s, ns, name)
				if err != nil {
					return err
				}
				if err := rolloutOutcome(name, d, st); err != nil {
					return err
				}
				obs := s.reconciler().Observe(ctx)
				dv := deployViewOf(ctx, s, obs, o, d)
				total := 0
				for _, p := range obs.Pods {
					if p.Namespace == ns && p.Owner == name && p.Status != reconciler.Unknown {
						total++
					}
				}
				var msg string
				switch {
				case st != nil && st.Split && st.Message != "":
					msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: %s", name, st.Message)
				case dv.UpToDate < dv.Replicas:
					msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", name, dv.UpToDate, dv.Replicas)
				case total > dv.Replicas:
					msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", name, total-dv.Replicas)
				case dv.Available < dv.Replicas:
					msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", name, dv.Available, dv.Replicas)
				case st != nil && st.Revision == dv.Revision && st.Phase != reconciler.PhaseComplete:
					// The lease holder's next pass records it: only then is
					// it the revision a failed rollout goes back to.
					msg = fmt.Sprintf("Waiting for deployment %q rollout to finish: every replica is available; waiting for the controller to record it", name)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "deployment %q successfully rolled out (revision %d)\n", name, dv.Revision)
					return nil
				}
				if msg != last {
					fmt.Fprintln(cmd.OutOrStdout(), msg)
					last = msg
				}
				if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
					return &exitError{code: 1, err: fmt.Errorf("deployment %q not rolled out after %s: %s", name, timeout, last)}
				}
			}
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long (exit 1)")
	return cmd
}

// newRolloutPauseCmd is `rollout pause` (pause true) or `rollout resume`:
// while paused, template changes are recorded but pods of older templates
// are not replaced.
func newRolloutPauseCmd(g *globals, pause bool) *cobra.Command {
	var ns string
	verb, short := "resume", "Let a paused Deployment's rollout go on: pods of older templates are replaced again"
	if pause {
		verb, short = "pause", "Hold a Deployment's rollout: template changes are recorded, pods of older templates stay (scaling still works)"
	}
	cmd := &cobra.Command{
		Use:   verb + " deploy/NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return changeDeployment(cmd, g, args[0], ns, nil, func(d *spec.Deployment, _ []store.Revision) (string, string, bool, error) {
				if d.Paused == pause {
					return "", fmt.Sprintf("deployment.apps/%s is already %sd", d.Name, verb), true, nil
				}
				d.Paused = pause
				return "fleet rollout " + verb, fmt.Sprintf("deployment.apps/%s %sd", d.Name, verb), false, nil
			})
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	return cmd
}

// rolloutState is deploy ns/name's rollout record, nil before its first pass.
func rolloutState(ctx context.Context, s *session, ns, name string) (*reconciler.RolloutState, error) {
	r, ok, err := s.store.Rollout(ctx, ns, name)
	if err != nil || !ok {
		return nil, err
	}
	return reconciler.DecodeRollout(r)
}

// rolloutOutcome is the error `rollout status` ends with when the
// rollout of d's latest revision cannot finish by itself: it failed (and
// was rolled back), or it waits for `fleet rollout promote`.
func rolloutOutcome(name string, d *spec.Deployment, st *reconciler.RolloutState) error {
	switch {
	case st == nil:
		return nil
	case st.Phase == reconciler.PhaseFailed:
		return &exitError{code: 1, err: fmt.Errorf("deployment %q rollout failed: %s", name, st.Message)}
	case st.FailedRevision != 0 && st.Revision >= st.FailedRevision:
		return &exitError{code: 1, err: fmt.Errorf("deployment %q rollout failed: revision %d %s; rolled back to revision %d's template (now revision %d)",
			name, st.FailedRevision, st.FailedReason, st.RolledBackTo, st.Revision)}
	case st.WaitsForPromote():
		return &exitError{code: 1, err: fmt.Errorf("deployment %q rollout is paused: %s", name, st.Message)}
	}
	return nil
}

func newRolloutPromoteCmd(g *globals) *cobra.Command {
	var ns string
	var full bool
	cmd := &cobra.Command{
		Use:   "promote deploy/NAME [--full]",
		Short: "Let a canary go past its pause (or all its steps with --full), or switch a blue-green rollout to its new set",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, name, d, err := openDeployment(cmd, g, args[0], ns)
			if err != nil {
				return err
			}
			defer s.Close()
			if d.Strategy.Type != spec.Canary && d.Strategy.Type != spec.BlueGreen {
				return fmt.Errorf("deployment %s has strategy %s: only Canary and BlueGreen rollouts are promoted", name, d.Strategy.Type)
			}
			st, err := rolloutState(cmd.Context(), s, ns, name)
			if err != nil {
				return err
			}
			if st == nil || st.Phase == reconciler.PhaseComplete || st.Phase == reconciler.PhaseFailed || !st.Split {
				return fmt.Errorf("deployment %s has no canary or blue-green rollout in progress (fleet rollout status deploy/%s)", name, name)
			}
			step, said := st.Step+1, fmt.Sprintf("deployment.apps/%s promoted past step %d", name, st.Step+1)
			switch {
			case full:
				step, said = math.MaxInt, fmt.Sprintf("deployment.apps/%s fully promoted", name)
			case d.Strategy.Type == spec.BlueGreen:
				step, said = 1, fmt.Sprintf("deployment.apps/%s promoted: traffic switches to the new set once it is ready", name)
			}
			if err := s.store.PromoteRollout(cmd.Context(), ns, name, reconciler.PromoteMark(st.Revision, step), time.Now()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), said)
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVar(&full, "full", false, "skip every remaining step and pause")
	return cmd
}
