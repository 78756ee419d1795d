package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/errdefs"

	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// ClaimBinding is where a PersistentVolumeClaim's data lives: a Docker
// volume on one machine, chosen when the first pod using the claim
// started. Kept in the state file (blob claims/NS/NAME).
type ClaimBinding struct {
	Machine string    `json:"machine"`
	Volume  string    `json:"volume"`
	Policy  string    `json:"policy"`
	BoundAt time.Time `json:"boundAt"`
}

// ClaimPrefix is where claim bindings are kept among the blobs.
const ClaimPrefix = "claims/"

func claimKey(ns, name string) string { return ClaimPrefix + ns + "/" + name }

// claimVolume names a claim's Docker volume.
func claimVolume(ns, name string) string { return "fleet_" + ns + "_claim_" + name }

// podVolume names an emptyDir's Docker volume: it goes with the pod.
func podVolume(ns, pod, vol string) string { return "fleet_" + ns + "_" + pod + "_" + vol }

// claims are the PersistentVolumeClaims and their bindings.
type claims struct {
	objs     map[string]*spec.PersistentVolumeClaim // by ns/name
	bindings map[string]ClaimBinding                // by ns/name
}

// ReadClaims reads every claim and binding.
func ReadClaims(ctx context.Context, st Store) (*claims, error) {
	c := &claims{objs: map[string]*spec.PersistentVolumeClaim{}, bindings: map[string]ClaimBinding{}}
	err := eachStored(ctx, st, spec.KindPersistentVolumeClaim, func(o store.Object, pvc *spec.PersistentVolumeClaim) error {
		c.objs[o.Namespace+"/"+o.Name] = pvc
		return nil
	})
	if err != nil {
		return nil, err
	}
	infos, err := st.Blobs(ctx, strings.TrimSuffix(ClaimPrefix, "/"))
	if err != nil {
		return nil, err
	}
	for _, info := range infos {
		b, ok, err := st.Blob(ctx, info.Key)
		if err != nil || !ok {
			continue
		}
		var cb ClaimBinding
		if json.Unmarshal(b, &cb) == nil {
			c.bindings[strings.TrimPrefix(info.Key, ClaimPrefix)] = cb
		}
	}
	return c, nil
}

// Binding is the binding of claim ns/name, if any.
func (c *claims) Binding(ns, name string) (ClaimBinding, bool) {
	b, ok := c.bindings[ns+"/"+name]
	return b, ok
}

// pin sets w's placement by its claims: where a bound one's data is, or
// all pods together while none is bound.
func (c *claims) pin(d *desired) {
	names := d.deploy.Template.Spec.Claims()
	if len(names) == 0 {
		return
	}
	ns := d.workload.Namespace
	first := ""
	for _, n := range names {
		b, ok := c.bindings[ns+"/"+n]
		if !ok {
			continue
		}
		if d.workload.Pin != "" && d.workload.Pin != b.Machine {
			d.workload.PinConflict = fmt.Sprintf("its volume claims %s and %s are bound to two machines (%s and %s), and a pod runs on one",
				first, n, d.workload.Pin, b.Machine)
			return
		}
		first = n
		d.workload.Pin, d.workload.PinReason = b.Machine, fmt.Sprintf("the data of its volume claim %s is", n)
	}
	d.workload.Together = d.workload.Pin == ""
}

// volumeMounts makes the Docker mounts of container ct of pod on
// machine, creating the volumes and binding unbound claims there. A
// claim bound to another machine, or missing, is an error naming it.
func (e *executor) volumeMounts(ctx context.Context, dk Docker, ns, pod, machine string, ps spec.PodSpec, ct spec.Container) ([]mount.Mount, []string, error) {
	if err := checkHostPaths(ctx, dk, machine, ct.Image, typedHostPaths(ps, ct)); err != nil {
		return nil, nil, err
	}
	vols := map[string]spec.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
	}
	var mounts []mount.Mount
	var binds []string
	for _, m := range ct.VolumeMounts {
		v := vols[m.Name]
		switch {
		case v.EmptyDir != nil && v.EmptyDir.Medium == "Memory":
			// Made by the sandbox, which holds it (createSandbox).
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: podVolume(ns, pod, v.Name), Target: m.MountPath, ReadOnly: m.ReadOnly})
		case v.EmptyDir != nil:
			name := podVolume(ns, pod, v.Name)
			if err := e.ensureVolume(ctx, dk, name, nil, map[string]string{LabelManaged: "true", LabelNamespace: ns, LabelPod: pod}); err != nil {
				return nil, nil, err
			}
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: name, Target: m.MountPath, ReadOnly: m.ReadOnly})
		case v.HostPath != nil && v.HostPath.Type == "":
			// No check, as in Kubernetes, whose runtimes create a missing
			// path as a directory: so does the legacy bind.
			bind := v.HostPath.Path + ":" + m.MountPath
			if m.ReadOnly {
				bind += ":ro"
			}
			binds = append(binds, bind)
		case v.HostPath != nil:
			// Checked (and created) above.
			mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: v.HostPath.Path, Target: m.MountPath, ReadOnly: m.ReadOnly})
		case v.ConfigMap != nil || v.Secret != nil:
			// Written by the sandbox (startSandbox); read only here.
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: podVolume(ns, pod, v.Name), Target: m.MountPath, ReadOnly: true})
		case v.PersistentVolumeClaim != nil:
			name, err := e.bindClaim(ctx, dk, ns, v.PersistentVolumeClaim.ClaimName, machine)
			if err != nil {
				return nil, nil, err
			}
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: name, Target: m.MountPath,
				ReadOnly: m.ReadOnly || v.PersistentVolumeClaim.ReadOnly})
		}
	}
	return mounts, binds, nil
}

// podMemoryVolume creates the tmpfs volume of pod for v: a configMap
// or secret volume (mode 0755, its files are written into it), or an
// emptyDir of medium Memory (world-writable and sticky like /tmp, up to
// its sizeLimit), which the pod's containers share.
func (e *executor) podMemoryVolume(ctx context.Context, dk Docker, ns, pod string, v spec.Volume) (string, error) {
	name := podVolume(ns, pod, v.Name)
	o := "mode=0755"
	if v.EmptyDir != nil {
		o = "mode=1777"
		if v.EmptyDir.SizeLimit > 0 {
			o += fmt.Sprintf(",size=%d", v.EmptyDir.SizeLimit)
		}
	}
	return name, e.ensureVolume(ctx, dk, name, map[string]string{"type": "tmpfs", "device": "tmpfs", "o": o},
		map[string]string{LabelManaged: "true", LabelNamespace: ns, LabelPod: pod})
}

func (e *executor) ensureVolume(ctx context.Context, dk Docker, name string, opts, labels map[string]string) error {
	if _, err := dk.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", DriverOpts: opts, Labels: labels}); err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// bindClaim returns the volume of claim ns/name for a pod on machine,
// binding the claim there if it is not bound yet.
func (e *executor) bindClaim(ctx context.Context, dk Docker, ns, name, machine string) (string, error) {
	e.r.claimMu.Lock()
	defer e.r.claimMu.Unlock()
	key := claimKey(ns, name)
	raw, ok, err := e.r.Store.Blob(ctx, key)
	if err != nil {
		return "", err
	}
	var b ClaimBinding
	if ok {
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", fmt.Errorf("decode %s from the state file: %w", key, err)
		}
		if b.Machine != machine {
			return "", fmt.Errorf("volume claim %s/%s is bound to %s, not %s", ns, name, b.Machine, machine)
		}
		return b.Volume, e.ensureVolume(ctx, dk, b.Volume, nil, map[string]string{LabelManaged: "true", LabelNamespace: ns, LabelClaim: name})
	}
	pvc := e.claims.objs[ns+"/"+name]
	if pvc == nil {
		return "", fmt.Errorf("volume claim %s/%s does not exist: apply it", ns, name)
	}
	b = ClaimBinding{Machine: machine, Volume: claimVolume(ns, name), Policy: pvc.ReclaimPolicy(), BoundAt: e.r.now().UTC()}
	if err := e.ensureVolume(ctx, dk, b.Volume, nil, map[string]string{LabelManaged: "true", LabelNamespace: ns, LabelClaim: name}); err != nil {
		return "", err
	}
	raw, _ = json.Marshal(b)
	if err := e.r.Store.PutBlob(ctx, key, raw, e.r.now()); err != nil {
		return "", err
	}
	e.mu.Lock()
	e.events = append(e.events, store.Event{At: e.r.now(), Type: "Normal", Reason: "Bound", Namespace: ns, Kind: spec.KindPersistentVolumeClaim,
		Name: name, Machine: machine, Message: fmt.Sprintf("bound to volume %s on %s", b.Volume, machine)})
	e.mu.Unlock()
	return b.Volume, nil
}

// removePodVolumes removes the emptyDir volumes of a stopped pod: those
// labelled with it (its Deployment may be gone, and its template with it).
func removePodVolumes(ctx context.Context, dk Docker, ns, pod string) error {
	list, err := dk.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"), filters.Arg("label", LabelNamespace+"="+ns), filters.Arg("label", LabelPod+"="+pod))})
	if err != nil {
		return fmt.Errorf("list volumes of pod %s: %w", pod, err)
	}
	for _, v := range list.Volumes {
		if v.Labels[LabelPod] != pod || v.Labels[LabelNamespace] != ns {
			continue // never another's, whatever the engine's filter did
		}
		if err := dk.VolumeRemove(ctx, v.Name, true); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove volume %s: %w", v.Name, err)
		}
	}
	return nil
}

// releaseClaims keeps the bindings' reclaim policies those of their
// claims, removes the volumes of deleted claims whose reclaim policy is
// Delete, and forgets the bindings of deleted claims; a volume
// still in use (its pod not stopped yet) is tried again next pass.
func (r *Reconciler) releaseClaims(ctx context.Context, c *claims, obs Observed) []error {
	var errs []error
	ready := map[string]bool{}
	for _, n := range obs.Nodes {
		ready[n.Name] = n.Status == "Ready"
	}
	for _, key := range sortedKeys(c.bindings) {
		b := c.bindings[key]
		if pvc, ok := c.objs[key]; ok {
			// The binding follows the claim's reclaim policy as edited
			// since it was bound: deleting the claim acts on the latest.
			if p := pvc.ReclaimPolicy(); p != b.Policy {
				b.Policy = p
				raw, _ := json.Marshal(b)
				r.claimMu.Lock()
				err := r.Store.PutBlob(ctx, ClaimPrefix+key, raw, r.now())
				r.claimMu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				c.bindings[key] = b
			}
			continue
		}
		if b.Policy != "Retain" {
			if !ready[b.Machine] {
				continue // its machine is away: later
			}
			dk, err := r.Docker(b.Machine)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := dk.VolumeRemove(ctx, b.Volume, false); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("%s: remove volume %s of deleted claim %s: %w", b.Machine, b.Volume, key, err))
				continue
			}
		}
		if _, err := r.Store.DeleteBlobs(ctx, ClaimPrefix+key); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
