package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// configs are the ConfigMaps and Secrets of the state file, by
// namespace/name.
type configs struct {
	maps    map[string]*spec.ConfigMap
	secrets map[string]*spec.Secret
	// secretGens are the Secrets' versions, "created.generation": a
	// pod's hash folds in these, not its values' hashes, which would let
	// anyone who sees a container's labels test guesses of a weak value.
	// Any change to a Secret, or deleting and creating it again, changes
	// its version; applying it unchanged (from another file too) does not.
	secretGens map[string]string
	// secretsErr is why the Secrets could not be read, if they could not.
	secretsErr error
}

// readConfigs reads every ConfigMap and Secret (the store decrypts
// Secrets).
func (r *Reconciler) readConfigs(ctx context.Context) (*configs, error) {
	c := &configs{maps: map[string]*spec.ConfigMap{}, secrets: map[string]*spec.Secret{}, secretGens: map[string]string{}}
	err := eachStored(ctx, r.Store, spec.KindConfigMap, func(o store.Object, m *spec.ConfigMap) error {
		c.maps[o.Namespace+"/"+o.Name] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	secrets, err := r.Store.List(ctx, spec.KindSecret, "")
	if err != nil {
		// Without the key (lost, or being rotated) only the pods that
		// need a Secret cannot start; everything else goes on.
		c.secretsErr = err
		r.log().Error("reading Secrets", "err", err)
		return c, nil
	}
	for _, o := range secrets {
		var s spec.Secret
		if err := json.Unmarshal(o.Spec, &s); err != nil {
			return nil, fmt.Errorf("decode Secret %s/%s from the state file: %w", o.Namespace, o.Name, err)
		}
		c.secrets[o.Namespace+"/"+o.Name] = &s
		c.secretGens[o.Namespace+"/"+o.Name] = fmt.Sprintf("%d.%d", o.CreatedAt.UnixNano(), o.Generation)
	}
	return c, nil
}

// lookup is the value of one key (nil kv: every key) of a ConfigMap or
// Secret in ns; found is false when the object or key is missing.
func (c *configs) values(ns, kind, name string) (map[string][]byte, bool) {
	out := map[string][]byte{}
	switch kind {
	case spec.KindConfigMap:
		m, ok := c.maps[ns+"/"+name]
		if !ok {
			return nil, false
		}
		for _, k := range m.Keys() {
			v, _ := m.Value(k)
			out[k] = []byte(v)
		}
	case spec.KindSecret:
		s, ok := c.secrets[ns+"/"+name]
		if !ok {
			return nil, false
		}
		if c.secretsErr != nil {
			return nil, false
		}
		for k, v := range s.Data {
			out[k] = v
		}
	}
	return out, true
}

// env is container c's environment in namespace ns, NAME=value, with its
// ConfigMap and Secret references resolved: envFrom first, then env,
// later ones winning, as Kubernetes does. A missing object or key that is
// not optional is an error naming it.
func (c *configs) env(ns string, ct spec.Container) ([]string, error) {
	if err := c.needSecrets(ct); err != nil {
		return nil, err
	}
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, e := range ct.EnvFrom {
		kind, ref := spec.KindConfigMap, e.ConfigMapRef
		if e.SecretRef != nil {
			kind, ref = spec.KindSecret, e.SecretRef
		}
		vals, ok := c.values(ns, kind, ref.Name)
		if !ok {
			if ref.Optional {
				continue
			}
			return nil, fmt.Errorf("container %s: envFrom %s %s/%s does not exist (apply it, or mark the reference optional)", ct.Name, kind, ns, ref.Name)
		}
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			set(e.Prefix+k, string(vals[k]))
		}
	}
	for _, e := range ct.Env {
		if e.ValueFrom == nil {
			set(e.Name, e.Value)
			continue
		}
		kind, ref := spec.KindConfigMap, e.ValueFrom.ConfigMapKeyRef
		if e.ValueFrom.SecretKeyRef != nil {
			kind, ref = spec.KindSecret, e.ValueFrom.SecretKeyRef
		}
		vals, ok := c.values(ns, kind, ref.Name)
		v, has := vals[ref.Key]
		switch {
		case ok && has:
			set(e.Name, string(v))
		case ref.Optional:
		case !ok:
			return nil, fmt.Errorf("container %s: env %s: %s %s/%s does not exist (apply it, or mark the reference optional)", ct.Name, e.Name, kind, ns, ref.Name)
		default:
			return nil, fmt.Errorf("container %s: env %s: %s %s/%s has no key %q", ct.Name, e.Name, kind, ns, ref.Name, ref.Key)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

// hash folds what template t consumes from ConfigMaps and Secrets in ns
// into its hash: a change of a consumed value replaces the pods (a
// rolling update), which Kubernetes does not do. ConfigMap values enter
// as their own hashes; a Secret by its version (secretGens).
func (c *configs) hash(ns string, t *spec.PodTemplate, base string) string {
	refs := t.ConfigRefs()
	if len(refs) == 0 {
		return base
	}
	var parts []string
	for _, ref := range refs {
		vals, ok := c.values(ns, ref.Kind, ref.Name)
		if !ok {
			parts = append(parts, ref.Kind+"/"+ref.Name+":missing")
			continue
		}
		if ref.Kind == spec.KindSecret {
			parts = append(parts, ref.Kind+"/"+ref.Name+"@"+c.secretGens[ns+"/"+ref.Name])
			continue
		}
		for k, v := range vals {
			if ref.Key != "" && k != ref.Key {
				continue
			}
			sum := sha256.Sum256(v)
			parts = append(parts, ref.Kind+"/"+ref.Name+"/"+k+"="+hex.EncodeToString(sum[:8]))
		}
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(base + "|" + strings.Join(parts, ",")))
	return hex.EncodeToString(sum[:])[:len(base)]
}

// podFiles are the files of every configMap and secret volume of ps,
// by volume.
func (c *configs) podFiles(ns string, ps spec.PodSpec) (map[string][]configFile, error) {
	out := map[string][]configFile{}
	for _, v := range ps.Volumes {
		if v.ConfigMap == nil && v.Secret == nil {
			continue
		}
		fs, err := c.files(ns, v)
		if err != nil {
			return nil, err
		}
		out[v.Name] = fs
	}
	return out, nil
}

// files are the files of configMap or secret volume v in ns: every key,
// or its items. A missing object or key not optional is an error.
func (c *configs) files(ns string, v spec.Volume) ([]configFile, error) {
	if v.Secret != nil && c.secretsErr != nil {
		return nil, fmt.Errorf("volume %s: the Secrets cannot be read: %w", v.Name, c.secretsErr)
	}
	kind, cv := spec.KindConfigMap, v.ConfigMap
	if v.Secret != nil {
		kind, cv = spec.KindSecret, v.Secret
	}
	vals, ok := c.values(ns, kind, cv.Name)
	if !ok {
		if cv.Optional {
			return nil, nil
		}
		return nil, fmt.Errorf("volume %s: %s %s/%s does not exist (apply it, or mark the volume optional)", v.Name, kind, ns, cv.Name)
	}
	var out []configFile
	if len(cv.Items) == 0 {
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, configFile{path: k, mode: cv.DefaultMode, data: vals[k]})
		}
		return out, nil
	}
	for _, it := range cv.Items {
		data, ok := vals[it.Key]
		if !ok {
			if cv.Optional {
				continue
			}
			return nil, fmt.Errorf("volume %s: %s %s/%s has no key %q", v.Name, kind, ns, cv.Name, it.Key)
		}
		mode := cv.DefaultMode
		if it.Mode != nil {
			mode = *it.Mode
		}
		out = append(out, configFile{path: it.Path, mode: mode, data: data})
	}
	return out, nil
}

// needSecrets is why ct cannot start when it consumes a Secret and the
// Secrets cannot be read.
func (c *configs) needSecrets(ct spec.Container) error {
	if c.secretsErr == nil {
		return nil
	}
	for _, e := range ct.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return fmt.Errorf("container %s: the Secrets cannot be read: %w", ct.Name, c.secretsErr)
		}
	}
	for _, e := range ct.EnvFrom {
		if e.SecretRef != nil {
			return fmt.Errorf("container %s: the Secrets cannot be read: %w", ct.Name, c.secretsErr)
		}
	}
	return nil
}

// consumesSecret reports whether pods of t read a Secret.
func consumesSecret(t *spec.PodTemplate) bool {
	for _, r := range t.ConfigRefs() {
		if r.Kind == spec.KindSecret {
			return true
		}
	}
	return false
}
