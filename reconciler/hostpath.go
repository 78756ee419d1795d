package reconciler

import (
	"context"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/errdefs"

	"github.com/fleetdev/fleet/spec"
)

// hostPath volumes with a type are checked on the machine before the
// container that mounts them is created, as the kubelet does: the path
// exists and is of that type, or, for DirectoryOrCreate and FileOrCreate,
// is created (a directory 0755 with its parents; an empty file 0644 in an
// existing directory). fleet runs nothing on the machine but its Docker
// engine, so the check is a helper container of the pod's own image
// (already on the machine), created and never started, that mounts the
// paths: the engine stats them and writes the missing file
// (the archive API), and the helper is removed.

// hostPathCheck is one typed hostPath volume of a container.
type hostPathCheck struct {
	volume string
	spec.HostPathVolume
}

// typedHostPaths are the hostPath volumes with a type that ct mounts.
func typedHostPaths(ps spec.PodSpec, ct spec.Container) []hostPathCheck {
	var out []hostPathCheck
	for _, m := range ct.VolumeMounts {
		for _, v := range ps.Volumes {
			if v.Name == m.Name && v.HostPath != nil && v.HostPath.Type != "" {
				out = append(out, hostPathCheck{v.Name, *v.HostPath})
			}
		}
	}
	return out
}

// checkTarget is where the helper mounts check i: the path itself, or
// for FileOrCreate its directory.
func checkTarget(i int) string { return "/fleet/hostpath/" + strconv.Itoa(i) }

// checkHostPaths checks (and creates) the typed hostPath volumes ct
// mounts on machine; an error names the volume, the path, the type and
// what was found.
func checkHostPaths(ctx context.Context, dk Docker, machine, image string, checks []hostPathCheck) (err error) {
	if len(checks) == 0 {
		return nil
	}
	host := &container.HostConfig{}
	for i, c := range checks {
		switch c.Type {
		case "DirectoryOrCreate":
			// The legacy bind creates a missing directory, parents
			// included (the mount API's CreateMountpoint needs API 1.42).
			host.Binds = append(host.Binds, c.Path+":"+checkTarget(i))
		case "FileOrCreate":
			// As in Kubernetes, the directory must exist.
			host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: path.Dir(c.Path), Target: checkTarget(i)})
		default:
			host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: c.Path, Target: checkTarget(i)})
		}
	}
	cfg := &container.Config{Image: image, Entrypoint: []string{"/fleet-hostpath-check"}, Labels: map[string]string{"fleet.helper": "hostpath"}}
	created, err := dk.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		for _, c := range checks {
			missing := c.Path
			if c.Type == "FileOrCreate" {
				missing = path.Dir(c.Path)
			}
			if strings.HasSuffix(strings.TrimSpace(err.Error()), "does not exist: "+missing) {
				return c.fail(missing + " does not exist")
			}
		}
		return fmt.Errorf("check the hostPath volumes on %s: %w", machine, err)
	}
	defer func() {
		// With its anonymous volumes: an image may declare VOLUMEs.
		if rerr := dk.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && err == nil {
			err = fmt.Errorf("remove the hostPath check container on %s: %w", machine, rerr)
		}
	}()
	for i, c := range checks {
		at := checkTarget(i)
		if c.Type == "FileOrCreate" {
			at += "/" + path.Base(c.Path)
		}
		st, err := dk.ContainerStatPath(ctx, created.ID, at)
		if errdefs.IsNotFound(err) && c.Type == "FileOrCreate" {
			empty, _ := tarOf([]configFile{{path: path.Base(c.Path), mode: 0o644}})
			if err := dk.CopyToContainer(ctx, created.ID, checkTarget(i), empty, container.CopyToContainerOptions{}); err != nil {
				return fmt.Errorf("hostPath volume %s: create the file %s on %s: %w", c.volume, c.Path, machine, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("hostPath volume %s: look at %s on %s: %w", c.volume, c.Path, machine, err)
		}
		if msg := c.mismatch(st.Mode); msg != "" {
			return c.fail(msg)
		}
	}
	return nil
}

func (c hostPathCheck) fail(found string) error {
	return fmt.Errorf("hostPath volume %s (type %s): %s; fix the path on the machine or the volume's type", c.volume, c.Type, found)
}

// hostPathKinds is the kind of file each hostPath type asks for.
var hostPathKinds = map[string]string{
	"Directory": "a directory", "DirectoryOrCreate": "a directory",
	"File": "a file", "FileOrCreate": "a file",
	"Socket": "a UNIX socket", "CharDevice": "a character device", "BlockDevice": "a block device",
}

// mismatch says how mode is not c's type ("" when it is).
func (c hostPathCheck) mismatch(mode os.FileMode) string {
	want, ok := hostPathKinds[c.Type]
	if got := kindOf(mode); ok && got != want {
		return fmt.Sprintf("%s is %s, not %s", c.Path, got, want)
	}
	return ""
}

func kindOf(mode os.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode.IsRegular():
		return "a file"
	case mode&os.ModeSocket != 0:
		return "a UNIX socket"
	case mode&os.ModeCharDevice != 0:
		return "a character device"
	case mode&os.ModeDevice != 0:
		return "a block device"
	case mode&os.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&os.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "of mode " + mode.String()
}
