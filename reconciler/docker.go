package reconciler

import (
	"context"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fleetdev/fleet/spec"
)

// Docker is the part of one machine's Docker API the reconciler uses.
// *client.Client satisfies it; tests use fakes that can fail.
type Docker interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	VolumeCreate(ctx context.Context, options volume.CreateOptions) (volume.Volume, error)
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
	VolumeList(ctx context.Context, options volume.ListOptions) (volume.ListResponse, error)
	CopyToContainer(ctx context.Context, containerID, dstPath string, content io.Reader, options container.CopyToContainerOptions) error
	ContainerStatPath(ctx context.Context, containerID, path string) (container.PathStat, error)
	ContainerWait(ctx context.Context, containerID string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
}

var _ Docker = (*client.Client)(nil)

// Labels fleet puts on every container it creates. The machines are the
// truth about what runs: a pass rebuilds the observed state from these
// alone, so losing the state file loses no workload.
const (
	LabelManaged   = "fleet.managed" // "true"
	LabelNamespace = "fleet.namespace"
	LabelKind      = "fleet.kind"
	LabelOwner     = "fleet.owner"
	LabelPod       = "fleet.pod"
	LabelContainer = "fleet.container"
	LabelRevision  = "fleet.revision"
	LabelSpecHash  = "fleet.spec-hash"
	LabelCPU       = "fleet.requests.cpu"    // the pod's total, in millicores
	LabelMemory    = "fleet.requests.memory" // the pod's total, in bytes
	LabelProbes    = "fleet.probes"          // the container's probes: "startup,liveness,readiness"
	LabelClaim     = "fleet.claim"           // on a claim's volume: the claim's name
	LabelHostPorts = "fleet.host-ports"      // machine ports the container binds: "30080/tcp,8443/tcp"
)

// ContainerName is the Docker name of one container of a pod.
func ContainerName(namespace, pod, container string) string {
	return "fleet_" + namespace + "_" + pod + "_" + container
}

// hostPorts lists the machine ports a pod of ps binds ("8443/tcp").
func hostPorts(ps spec.PodSpec) []string {
	var out []string
	for _, c := range ps.Containers {
		for _, p := range c.Ports {
			if p.HostPort > 0 {
				out = append(out, portKey(p.HostPort, p.Protocol))
			}
		}
	}
	return out
}

// podRequests sums the requests of a pod's containers.
func podRequests(ps spec.PodSpec) (milliCPU, memory int64) {
	for _, c := range ps.Containers {
		milliCPU += c.Resources.Requests.MilliCPU
		memory += c.Resources.Requests.Memory
	}
	return milliCPU, memory
}

// containerConfig is how one container of a pod is created: ports are
// published on ephemeral host ports (or the hostPort asked for), so the
// load balancer can reach each replica at its machine's address.
//
// nodePorts are the container's ports NodePort Services publish on the
// machine's node port, besides the ephemeral one.
func containerConfig(ns, owner, pod string, rev int64, hash string, ps spec.PodSpec, c spec.Container, env []string, mounts []mount.Mount, binds []string, nodePorts map[string]int) (*container.Config, *container.HostConfig) {
	cpu, mem := podRequests(ps)
	labels := map[string]string{
		LabelManaged: "true", LabelNamespace: ns, LabelKind: "Deployment", LabelOwner: owner,
		LabelPod: pod, LabelContainer: c.Name, LabelRevision: strconv.FormatInt(rev, 10), LabelSpecHash: hash,
		LabelCPU: strconv.FormatInt(cpu, 10), LabelMemory: strconv.FormatInt(mem, 10),
	}
	var probes []string
	for _, p := range []struct {
		name  string
		probe *spec.Probe
	}{{"startup", c.StartupProbe}, {"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}} {
		if p.probe != nil {
			probes = append(probes, p.name)
		}
	}
	if len(probes) > 0 {
		labels[LabelProbes] = strings.Join(probes, ",")
	}
	var held []string
	exposed := nat.PortSet{}
	bindings := nat.PortMap{}
	for _, p := range c.Ports {
		port := nat.Port(portKey(p.ContainerPort, p.Protocol))
		proto := port.Proto()
		exposed[port] = struct{}{}
		hp := ""
		if p.HostPort > 0 {
			hp = strconv.Itoa(p.HostPort)
			held = append(held, hp+"/"+proto)
		}
		bindings[port] = []nat.PortBinding{{HostPort: hp}}
		if np := nodePorts[string(port)]; np > 0 {
			bindings[port] = append(bindings[port], nat.PortBinding{HostPort: strconv.Itoa(np)})
			held = append(held, strconv.Itoa(np)+"/"+proto)
		}
	}
	if len(held) > 0 {
		labels[LabelHostPorts] = strings.Join(held, ",")
	}
	cfg := &container.Config{
		Image:        c.Image,
		Env:          env,
		WorkingDir:   c.WorkingDir,
		Labels:       labels,
		ExposedPorts: exposed,
		Hostname:     hostname(pod),
	}
	if len(c.Command) > 0 {
		cfg.Entrypoint = c.Command
	}
	if len(c.Args) > 0 {
		cfg.Cmd = c.Args
	}
	host := &container.HostConfig{
		PortBindings: bindings,
		Mounts:       mounts,
		Binds:        binds,
		// The machine brings pods back after a reboot even if no
		// controller runs.
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Resources: container.Resources{
			NanoCPUs: c.Resources.Limits.MilliCPU * 1_000_000,
			Memory:   c.Resources.Limits.Memory,
		},
	}
	return cfg, host
}

func hostname(pod string) string {
	if len(pod) > 63 {
		return pod[:63]
	}
	return pod
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
