package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// decodeStored decodes stored object o as a T.
func decodeStored[T any](o store.Object) (*T, error) {
	var v T
	if err := json.Unmarshal(o.Spec, &v); err != nil {
		return nil, fmt.Errorf("decode %s %s/%s from the state file: %w", o.Kind, o.Namespace, o.Name, err)
	}
	return &v, nil
}

// configView is a ConfigMap or Secret as get shows it. A Secret's values
// are shown only with --show-secrets; otherwise each is "<hidden>".
type configView struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Type      string            `json:"type,omitempty"`
	Data      map[string]string `json:"data"`
	Created   time.Time         `json:"created"`
}

// hiddenValue stands for a Secret value get does not show.
const hiddenValue = "<hidden>"

func getConfigs(cmd *cobra.Command, v *view, ns nsFlags, kind, output string, showSecrets bool) error {
	s, err := v.session(cmd.Context())
	if err != nil {
		return err
	}
	objs, err := s.store.List(cmd.Context(), kind, ns.filter())
	if err != nil {
		return err
	}
	views := []configView{}
	for _, o := range objs {
		cv := configView{Name: o.Name, Namespace: o.Namespace, Data: map[string]string{}, Created: o.CreatedAt}
		switch kind {
		case spec.KindConfigMap:
			m, err := decodeStored[spec.ConfigMap](o)
			if err != nil {
				return err
			}
			for _, k := range m.Keys() {
				cv.Data[k], _ = m.Value(k)
			}
		case spec.KindSecret:
			sec, err := decodeStored[spec.Secret](o)
			if err != nil {
				return err
			}
			cv.Type = sec.Type
			for _, k := range sec.Keys() {
				cv.Data[k] = hiddenValue
				if showSecrets {
					cv.Data[k] = string(sec.Data[k])
				}
			}
		}
		views = append(views, cv)
	}
	w := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printList(w, output, views)
	}
	headers := []string{"NAME", "DATA", "AGE"}
	if kind == spec.KindSecret {
		headers = []string{"NAME", "TYPE", "DATA", "AGE"}
	}
	if ns.all {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	t := newTable(w, headers...)
	for _, cv := range views {
		row := []string{cv.Name, fmt.Sprint(len(cv.Data)), age(cv.Created)}
		if kind == spec.KindSecret {
			row = slices.Insert(row, 1, cv.Type)
		}
		if ns.all {
			row = append([]string{cv.Namespace}, row...)
		}
		t.row(row...)
	}
	return t.flush()
}

// checkConfigRefs reports, as file:line problems, the volume claims,
// ConfigMaps and Secrets (and keys) the Deployments in objs consume that neither objs
// nor the state file have, unless the reference is optional: an apply
// that would leave pods unable to start changes nothing.
func checkConfigRefs(ctx context.Context, st *store.Store, objs []spec.Object) ([]string, error) {
	keys := map[string]map[string]bool{} // kind/ns/name → keys
	for _, o := range objs {
		m := o.Metadata()
		switch c := o.(type) {
		case *spec.ConfigMap:
			keys[spec.KindConfigMap+"/"+m.Namespace+"/"+m.Name] = setOf(c.Keys())
		case *spec.Secret:
			keys[spec.KindSecret+"/"+m.Namespace+"/"+m.Name] = setOf(c.Keys())
		}
	}
	var problems []string
	claims := map[string]bool{} // ns/name
	for _, o := range objs {
		if c, ok := o.(*spec.PersistentVolumeClaim); ok {
			claims[c.Namespace+"/"+c.Name] = true
		}
	}
	for _, o := range objs {
		d, ok := o.(*spec.Deployment)
		if !ok {
			continue
		}
		for _, name := range d.Template.Spec.Claims() {
			if claims[d.Namespace+"/"+name] {
				continue
			}
			_, found, err := st.Get(ctx, spec.KindPersistentVolumeClaim, d.Namespace, name)
			if err != nil {
				return nil, err
			}
			if !found {
				problems = append(problems, fmt.Sprintf("%s:%d: Deployment/%s: spec.template.spec.volumes: PersistentVolumeClaim %s does not exist in namespace %s: apply it first (or in the same apply)",
					d.Source.File, d.Source.Line, d.Name, name, d.Namespace))
			}
		}
		for _, ref := range d.Template.ConfigRefs() {
			if ref.Optional {
				continue
			}
			id := ref.Kind + "/" + d.Namespace + "/" + ref.Name
			have, ok := keys[id]
			if !ok {
				stored, found, err := st.Get(ctx, ref.Kind, d.Namespace, ref.Name)
				if err != nil {
					return nil, err
				}
				if found {
					have, err = storedKeys(stored)
					if err != nil {
						return nil, err
					}
					keys[id] = have
				}
			}
			line := cmp.Or(ref.Line, d.Source.Line)
			switch {
			case have == nil:
				problems = append(problems, fmt.Sprintf("%s:%d: Deployment/%s: %s: %s %s does not exist in namespace %s: apply it first (or in the same apply), or mark the reference optional: true",
					d.Source.File, line, d.Name, ref.Field, ref.Kind, ref.Name, d.Namespace))
			case ref.Key != "" && !have[ref.Key]:
				problems = append(problems, fmt.Sprintf("%s:%d: Deployment/%s: %s: %s %s has no key %q (it has: %s)",
					d.Source.File, line, d.Name, ref.Field, ref.Kind, ref.Name, ref.Key, sortedSet(have)))
			}
		}
	}
	return problems, nil
}

func storedKeys(o store.Object) (map[string]bool, error) {
	switch o.Kind {
	case spec.KindConfigMap:
		m, err := decodeStored[spec.ConfigMap](o)
		if err != nil {
			return nil, err
		}
		return setOf(m.Keys()), nil
	default:
		s, err := decodeStored[spec.Secret](o)
		if err != nil {
			return nil, err
		}
		return setOf(s.Keys()), nil
	}
}

func setOf(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func sortedSet(m map[string]bool) string {
	if len(m) == 0 {
		return "no keys"
	}
	return fmt.Sprint(slices.Sorted(maps.Keys(m)))
}

// secretDiff says which keys of a Secret a change adds, removes or
// changes, never the values.
func secretDiff(name string, old, new []byte) string {
	var a, b spec.Secret
	json.Unmarshal(old, &a)
	json.Unmarshal(new, &b)
	var lines []string
	for _, k := range b.Keys() {
		v, ok := a.Data[k]
		switch {
		case !ok:
			lines = append(lines, "  + "+k+" (added)")
		case string(v) != string(b.Data[k]):
			lines = append(lines, "  ~ "+k+" (changed)")
		}
	}
	for _, k := range a.Keys() {
		if _, ok := b.Data[k]; !ok {
			lines = append(lines, "  - "+k+" (removed)")
		}
	}
	if len(lines) == 0 {
		lines = []string{"  (metadata or type changed)"}
	}
	out := fmt.Sprintf("Secret %s: values are not shown\n", name)
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

// claimView is a PersistentVolumeClaim as get shows it.
type claimView struct {
	Name          string    `json:"name"`
	Namespace     string    `json:"namespace"`
	Status        string    `json:"status"` // Bound or Pending
	Volume        string    `json:"volume,omitempty"`
	Storage       int64     `json:"storage"`
	AccessModes   []string  `json:"accessModes"`
	ReclaimPolicy string    `json:"reclaimPolicy"`
	Node          string    `json:"node,omitempty"`
	Created       time.Time `json:"created"`
}

func getClaims(cmd *cobra.Command, v *view, ns nsFlags, output string) error {
	s, err := v.session(cmd.Context())
	if err != nil {
		return err
	}
	objs, err := s.store.List(cmd.Context(), spec.KindPersistentVolumeClaim, ns.filter())
	if err != nil {
		return err
	}
	claims, err := reconciler.ReadClaims(cmd.Context(), s.store)
	if err != nil {
		return err
	}
	views := []claimView{}
	for _, o := range objs {
		c, err := decodeStored[spec.PersistentVolumeClaim](o)
		if err != nil {
			return err
		}
		cv := claimView{Name: o.Name, Namespace: o.Namespace, Status: "Pending", Storage: c.Storage, AccessModes: c.AccessModes,
			ReclaimPolicy: c.ReclaimPolicy(), Created: o.CreatedAt}
		if b, ok := claims.Binding(o.Namespace, o.Name); ok {
			cv.Status, cv.Volume, cv.Node = "Bound", b.Volume, b.Machine
		}
		views = append(views, cv)
	}
	w := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printList(w, output, views)
	}
	headers := []string{"NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "RECLAIM", "NODE", "AGE"}
	if ns.all {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	t := newTable(w, headers...)
	for _, cv := range views {
		row := []string{cv.Name, cv.Status, dash(cv.Volume), resource.NewQuantity(cv.Storage, resource.BinarySI).String(), accessModes(cv.AccessModes), cv.ReclaimPolicy, dash(cv.Node), age(cv.Created)}
		if ns.all {
			row = append([]string{cv.Namespace}, row...)
		}
		t.row(row...)
	}
	return t.flush()
}

// accessModes abbreviates as kubectl does: RWO, RWOP.
func accessModes(ms []string) string {
	short := map[string]string{"ReadWriteOnce": "RWO", "ReadWriteOncePod": "RWOP"}
	var out []string
	for _, m := range ms {
		out = append(out, cmp.Or(short[m], m))
	}
	return strings.Join(out, ",")
}
