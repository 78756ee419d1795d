package reconciler

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"path"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"

	"github.com/fleetdev/fleet/planner"
	"github.com/fleetdev/fleet/spec"
)

// A pod of several containers gets a sandbox: a fleet-pause container,
// started first, that owns the pod's network namespace, address and
// published ports; the pod's containers join its network, so they reach
// each other on localhost, and a container's restart does not change
// the pod's address. A pod of one container needs none.
const (
	// PauseImage is the sandbox's image, built by `make pause-image`.
	PauseImage = "fleet-pause:1"
	// SandboxName is the sandbox's fleet.container label: not a valid
	// container name in a manifest (names are lowercase), so no clash.
	SandboxName = "POD"
)

// sandboxed reports whether pods of ps get a sandbox: several
// containers, init containers (which share the pod's network), or
// memory volumes: ConfigMap or Secret files (written into them through
// it, before any container starts) and emptyDirs of medium Memory. The
// engine mounts a tmpfs volume while a container has it mounted, and
// drops its content when the last one stops: the sandbox holds them
// mounted for the pod's life.
func sandboxed(ps spec.PodSpec) bool {
	return len(ps.Containers) > 1 || len(ps.InitContainers) > 0 || len(memoryVolumes(ps)) > 0
}

// memoryVolumes are ps's configMap, secret and emptyDir Memory volumes.
func memoryVolumes(ps spec.PodSpec) []spec.Volume {
	var out []spec.Volume
	for _, v := range ps.Volumes {
		if v.ConfigMap != nil || v.Secret != nil || v.EmptyDir != nil && v.EmptyDir.Medium == "Memory" {
			out = append(out, v)
		}
	}
	return out
}

// configMountPath is where the sandbox mounts a config volume to write
// its files.
func configMountPath(vol string) string { return "/fleet/config/" + vol }

// sandboxConfig is the sandbox of a pod: the containers' ports are
// published on it, and it holds the pod's host ports.
func sandboxConfig(ns, owner, pod string, rev int64, hash string, ps spec.PodSpec, nodePorts nodePorts) (*container.Config, *container.HostConfig) {
	// The ports of every container, as one container with them all.
	all := spec.Container{Name: SandboxName, Image: PauseImage}
	merged := map[string]int{}
	for _, c := range ps.Containers {
		all.Ports = append(all.Ports, c.Ports...)
		for k, v := range nodePorts[c.Name] {
			merged[k] = v
		}
	}
	cfg, host := containerConfig(ns, owner, pod, rev, hash, ps, all, nil, nil, nil, merged)
	delete(cfg.Labels, LabelProbes)
	cfg.Entrypoint, cfg.Cmd = nil, nil
	host.Resources = container.Resources{}
	passesRestart(ps, host)
	return cfg, host
}

// passesRestart leaves restarting the containers of a pod with memory
// volumes to fleet's passes: after a reboot those volumes are empty, so
// the engine must not bring the pod back alone; a pass starts its
// sandbox, writes the files and runs the init containers again
// (restartSandbox). Nor may the engine try to start a container whose
// sandbox is not running: the failed start unbalances the engine's count
// of a tmpfs volume's users (Docker 20.10), after which the sandbox and
// its containers see different tmpfs mounts.
func passesRestart(ps spec.PodSpec, host *container.HostConfig) {
	if len(memoryVolumes(ps)) > 0 {
		host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyDisabled}
	}
}

// joinSandbox makes a container of a sandboxed pod join the sandbox's
// network: its ports are the sandbox's, its hostname the pod's.
func joinSandbox(cfg *container.Config, host *container.HostConfig, sandboxID string) {
	host.NetworkMode = container.NetworkMode("container:" + sandboxID)
	host.PortBindings = nil
	cfg.ExposedPorts = nil
	cfg.Hostname = ""
	delete(cfg.Labels, LabelHostPorts)
}

// createSandbox creates pod's sandbox (or finds it created), with the
// memory volumes its ConfigMap and Secret files go in, and returns those
// files by volume for runSandbox.
func (e *executor) createSandbox(ctx context.Context, dk Docker, ns, owner string, s runSpec) (string, map[string][]configFile, error) {
	d := e.byKey[s.workload]
	cfg, host := sandboxConfig(ns, owner, s.pod, s.revision, s.hash, s.tpl.Spec, d.nodePorts)
	files, err := d.configs.podFiles(ns, s.tpl.Spec)
	if err != nil {
		return "", nil, err
	}
	for _, v := range memoryVolumes(s.tpl.Spec) {
		vol, err := e.podMemoryVolume(ctx, dk, ns, s.pod, v)
		if err != nil {
			return "", nil, err
		}
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeVolume, Source: vol, Target: configMountPath(v.Name)})
	}
	name := ContainerName(ns, s.pod, SandboxName)
	id, err := createOrAdopt(ctx, dk, cfg, host, name)
	if err != nil {
		return "", nil, fmt.Errorf("create the pod's sandbox %s: %w", name, err)
	}
	return id, files, nil
}

// runSandbox starts the sandbox and writes the files into its memory
// volumes, while it holds them mounted, before any container that reads
// them starts.
func (e *executor) runSandbox(ctx context.Context, dk Docker, id string, files map[string][]configFile) error {
	if err := dk.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start the pod's sandbox: %w", err)
	}
	return writeFiles(ctx, dk, id, files)
}

// writeFiles writes the files of a pod's configMap and secret volumes
// through its running sandbox, which holds them mounted.
func writeFiles(ctx context.Context, dk Docker, id string, files map[string][]configFile) error {
	for _, vol := range sortedKeys(files) {
		tarball, err := tarOf(files[vol])
		if err != nil {
			return err
		}
		if err := dk.CopyToContainer(ctx, id, configMountPath(vol), tarball, container.CopyToContainerOptions{}); err != nil {
			return fmt.Errorf("write the files of volume %s: %w", vol, err)
		}
	}
	return nil
}

// configFile is one file of a configMap or secret volume.
type configFile struct {
	path string
	mode int
	data []byte
}

// tarOf is files as a tar stream, directories included.
func tarOf(files []configFile) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		for dir := path.Dir(f.path); dir != "." && !dirs[dir]; dir = path.Dir(dir) {
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.path, Mode: int64(f.mode), Size: int64(len(f.data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	return &buf, tw.Close()
}

// runSpec is what starting one pod needs.
type runSpec struct {
	workload, pod, hash string
	revision            int64
	tpl                 *spec.PodTemplate
}

// restartSandbox starts a sandboxed pod's lost sandbox again (a no-op
// when the engine already did) and then its containers, which must join
// its new network namespace. As Kubernetes does for a new sandbox, the
// init containers run again first, and the ConfigMap and Secret files
// are written again: after a reboot, when every container of the pod
// stopped at once, its memory volumes are empty.
func (e *executor) restartSandbox(ctx context.Context, dk Docker, p PodStatus) error {
	zero := 0
	fail := func(step string, err error) error {
		// Stopped again, so the next pass starts over: files, init
		// containers, containers.
		dk.ContainerStop(context.WithoutCancel(ctx), p.Sandbox.ID, container.StopOptions{Timeout: &zero})
		return fmt.Errorf("restart the sandbox of %s: %s: %w", p.Name, step, err)
	}
	if err := dk.ContainerStart(ctx, p.Sandbox.ID, container.StartOptions{}); err != nil {
		return fail("start it", err)
	}
	for _, c := range p.Containers {
		if c.State == "running" {
			if err := dk.ContainerStop(ctx, c.ID, container.StopOptions{Timeout: &zero}); err != nil && !errdefs.IsNotFound(err) {
				return fail("stop container "+c.Name, err)
			}
		}
	}
	if tpl := templateOf(e.templates, p); tpl != nil {
		files, err := e.byKey[p.Namespace+"/"+p.Owner].configs.podFiles(p.Namespace, tpl.Spec)
		if err == nil {
			err = writeFiles(ctx, dk, p.Sandbox.ID, files)
		}
		if err != nil {
			return fail("write the ConfigMap and Secret files", err)
		}
		if len(tpl.Spec.InitContainers) > 0 {
			run := planner.Run{Workload: p.Namespace + "/" + p.Owner, Pod: p.Name, Node: p.Node, Revision: p.Revision, SpecHash: p.SpecHash}
			if err := e.runInits(ctx, dk, run, tpl, p.Sandbox.ID); err != nil {
				return fail("init containers", err)
			}
		}
	}
	for _, c := range p.Containers {
		if err := dk.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			return fail("start container "+c.Name, err)
		}
	}
	return nil
}

// PodIP is the pod's address on its machine: its sandbox's, or its
// container's ("" when none is known).
func (p *PodStatus) PodIP() string {
	if p.Sandbox != nil && p.Sandbox.IP != "" {
		return p.Sandbox.IP
	}
	for _, c := range p.Containers {
		if c.IP != "" {
			return c.IP
		}
	}
	return ""
}
