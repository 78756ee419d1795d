package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// overlay is the state file as it would be after an apply, without
// writing it: what `fleet plan` plans against.
type overlay struct {
	base *store.Store
	objs map[string]store.Object // kind/ns/name → object
	revs map[string]int64        // kind/ns/name → revision the write would make
}

func okey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

func (o *overlay) List(ctx context.Context, kind, ns string) ([]store.Object, error) {
	base, err := o.base.List(ctx, kind, ns)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []store.Object
	for _, b := range base {
		k := okey(b.Kind, b.Namespace, b.Name)
		if v, ok := o.objs[k]; ok {
			b = v
		}
		seen[k] = true
		out = append(out, b)
	}
	for k, v := range o.objs {
		if !seen[k] && v.Kind == kind && (ns == "" || v.Namespace == ns) {
			out = append(out, v)
		}
	}
	return out, nil
}

func (o *overlay) Revisions(ctx context.Context, kind, ns, name string) ([]store.Revision, error) {
	revs, err := o.base.Revisions(ctx, kind, ns, name)
	if err != nil {
		return nil, err
	}
	if r, ok := o.revs[okey(kind, ns, name)]; ok {
		revs = append(revs, store.Revision{Revision: r})
	}
	return revs, nil
}

func (o *overlay) AddEvents(context.Context, ...store.Event) error { return nil }

// SaveMachinePods writes nothing: a plan changes nothing.
func (o *overlay) SaveMachinePods(context.Context, store.MachinePods) error { return nil }

// AllMachinePods is the state file's record.
func (o *overlay) AllMachinePods(ctx context.Context) ([]store.MachinePods, error) {
	return o.base.AllMachinePods(ctx)
}

// Rollouts is the state file's record: a plan shapes canary and
// blue-green rollouts as the next pass would.
func (o *overlay) Rollouts(ctx context.Context) ([]store.Rollout, error) { return o.base.Rollouts(ctx) }

// SaveRolloutState writes nothing: a plan changes nothing.
func (o *overlay) SaveRolloutState(context.Context, string, string, []byte, time.Time) error {
	return nil
}

// Change is never called by a dry-run pass; it refuses.
func (o *overlay) Change(context.Context, string, string, string, time.Time, func([]byte) (store.Write, error)) (store.Applied, error) {
	return store.Applied{}, errors.New("a plan changes nothing")
}

// Blob and Blobs read the state file (volume claim bindings).
func (o *overlay) Blob(ctx context.Context, key string) ([]byte, bool, error) {
	return o.base.Blob(ctx, key)
}
func (o *overlay) Blobs(ctx context.Context, prefix string) ([]store.BlobInfo, error) {
	return o.base.Blobs(ctx, prefix)
}

// PutBlob and DeleteBlobs are never called by a dry-run pass; they refuse.
func (o *overlay) PutBlob(context.Context, string, []byte, time.Time) error {
	return errors.New("a plan changes nothing")
}
func (o *overlay) DeleteBlobs(context.Context, string) (int64, error) {
	return 0, errors.New("a plan changes nothing")
}

// objectChange is what applying one object would do to the state file.
type objectChange struct {
	w       store.Write
	outcome string
	old     []byte
}

func changes(ctx context.Context, st *store.Store, ws []store.Write) ([]objectChange, *overlay, error) {
	ov := &overlay{base: st, objs: map[string]store.Object{}, revs: map[string]int64{}}
	var out []objectChange
	for _, w := range ws {
		cur, ok, err := st.Get(ctx, w.Kind, w.Namespace, w.Name)
		if err != nil {
			return nil, nil, err
		}
		c := objectChange{w: w, outcome: store.Created}
		if ok {
			c.old = cur.Spec
			c.outcome = store.Configured
			if store.SameSpec(cur.Spec, w.Spec) {
				c.outcome = store.Unchanged
			}
		}
		out = append(out, c)
		ov.objs[okey(w.Kind, w.Namespace, w.Name)] = store.Object{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, Spec: w.Spec, CreatedAt: time.Now()}
		if w.TemplateHash != "" {
			revs, err := st.Revisions(ctx, w.Kind, w.Namespace, w.Name)
			if err != nil {
				return nil, nil, err
			}
			if len(revs) == 0 {
				ov.revs[okey(w.Kind, w.Namespace, w.Name)] = 1
			} else if last := revs[len(revs)-1]; last.TemplateHash != w.TemplateHash {
				ov.revs[okey(w.Kind, w.Namespace, w.Name)] = last.Revision + 1
			}
		}
	}
	return out, ov, nil
}

func newPlanCmd(g *globals) *cobra.Command {
	var mf manifestFlags
	cmd := &cobra.Command{
		Use:   "plan -f FILE",
		Short: "Show what apply would do, per object and per machine, changing nothing",
		Long:  "Exit codes, as terraform plan -detailed-exitcode: 0 no changes, 1 error, 2 changes pending.",
		Args:  cobra.NoArgs,
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
			ws, err := writes(cmd.Context(), s.store, res.Objects, "")
			if err != nil {
				return err
			}
			chs, ov, err := changes(cmd.Context(), s.store, ws)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			pending := false
			fmt.Fprintln(out, "objects:")
			for _, c := range chs {
				outcome := c.outcome
				if outcome == store.Created {
					outcome = "create"
				} else if outcome == store.Configured {
					outcome = "change"
				}
				fmt.Fprintf(out, "  %s/%s: %s\n", kindResource[c.w.Kind], c.w.Name, outcome)
				pending = pending || c.outcome != store.Unchanged
			}
			rec := s.reconciler()
			rec.Store = ov
			pass, err := rec.Pass(cmd.Context(), reconciler.Options{DryRun: true, Prune: true})
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "machines:")
			var buf bytes.Buffer
			printPlan(&buf, pass)
			if buf.Len() == 0 {
				fmt.Fprintln(out, "  no changes")
			} else {
				io.Copy(out, indent(&buf, "  "))
				pending = true
			}
			for _, u := range pass.Plan.Unplaceable {
				fmt.Fprintf(out, "  %s: %d replica(s) cannot be placed: %s\n", u.Workload, u.Count, u.Reason)
			}
			fmt.Fprintf(out, "summary: %s\n", pass.Summary())
			if pending {
				return &exitError{code: 2, err: fmt.Errorf("changes pending")}
			}
			return nil
		},
	}
	mf.add(cmd)
	return cmd
}

func indent(b *bytes.Buffer, prefix string) io.Reader {
	lines := strings.SplitAfter(b.String(), "\n")
	var out strings.Builder
	for _, l := range lines {
		if l != "" {
			out.WriteString(prefix + l)
		}
	}
	return strings.NewReader(out.String())
}

func newDiffCmd(g *globals) *cobra.Command {
	var mf manifestFlags
	cmd := &cobra.Command{
		Use:   "diff -f FILE",
		Short: "Show the desired state in the state file against the manifests, as a unified diff",
		Long:  "Exit codes, as kubectl diff: 0 no differences, 1 differences found, >1 error.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := mf.load(cmd)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			s, err := g.open(cmd.Context())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			defer s.Close()
			ws, err := writes(cmd.Context(), s.store, res.Objects, "")
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			chs, _, err := changes(cmd.Context(), s.store, ws)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			differ := false
			for _, c := range chs {
				if c.outcome == store.Unchanged {
					continue
				}
				differ = true
				name := fmt.Sprintf("%s/%s/%s", c.w.Kind, c.w.Namespace, c.w.Name)
				if c.w.Kind == spec.KindSecret {
					fmt.Fprint(cmd.OutOrStdout(), secretDiff(c.w.Namespace+"/"+c.w.Name, c.old, c.w.Spec))
					continue
				}
				fmt.Fprint(cmd.OutOrStdout(), unifiedDiff("live/"+name, "manifest/"+name, pretty(c.old), pretty(c.w.Spec)))
			}
			if differ {
				return &exitError{code: 1, err: fmt.Errorf("differences found")}
			}
			return nil
		},
	}
	mf.add(cmd)
	return cmd
}

func pretty(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return strings.Split(string(b), "\n")
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return strings.Split(string(out), "\n")
}

// unifiedDiff is a small line diff (longest common subsequence), enough
// for objects of a few hundred lines.
func unifiedDiff(from, to string, a, b []string) string {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var ops []line
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, line{' ', a[i]})
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, line{'-', a[i]})
			i++
		default:
			ops = append(ops, line{'+', b[j]})
			j++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", from, to)
	const ctx = 3
	for k := 0; k < len(ops); {
		if ops[k].op == ' ' {
			k++
			continue
		}
		start := max(0, k-ctx)
		end := k
		for end < len(ops) {
			if ops[end].op != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].op == ' ' {
				run++
			}
			if run-end > 2*ctx || run == len(ops) {
				end = min(len(ops), end+ctx)
				break
			}
			end = run
		}
		aStart, bStart, aLen, bLen := 1, 1, 0, 0
		for _, o := range ops[:start] {
			if o.op != '+' {
				aStart++
			}
			if o.op != '-' {
				bStart++
			}
		}
		for _, o := range ops[start:end] {
			if o.op != '+' {
				aLen++
			}
			if o.op != '-' {
				bLen++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", aStart, aLen, bStart, bLen)
		for _, o := range ops[start:end] {
			fmt.Fprintf(&out, "%c%s\n", o.op, o.text)
		}
		k = end
	}
	return out.String()
}
