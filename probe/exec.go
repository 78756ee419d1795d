package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/fleetdev/fleet/spec"
)

// maxOutput is how much of an exec probe's combined output a failure
// message carries.
const maxOutput = 256

// inspectEvery is how often an exec is re-inspected when Docker still
// reports it running after its output ended, as dockershim did.
const inspectEvery = 100 * time.Millisecond

// errTimedOut is the cause of an exec attempt's context when its own
// timeout, not the caller, ended it.
var errTimedOut = errors.New("probe: timed out")

// exec runs a.Command in t's container, bounded by timeout.
func (r *Runner) exec(ctx context.Context, timeout time.Duration, a *spec.ExecAction, t Target) Result {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimedOut)
	defer cancel()
	if len(a.Command) == 0 {
		return failf("exec probe has no command")
	}
	cmd := strings.Join(a.Command, " ")
	short := shortID(t.ContainerID)
	if r.Docker == nil {
		return failf("no Docker API for %s", t.Machine)
	}
	d, err := r.Docker(t.Machine)
	if err != nil {
		return failf("docker on %s: %v", t.Machine, err)
	}
	if d == nil {
		return failf("no Docker API for %s", t.Machine)
	}
	// fail reports err from step, unless the attempt ran out of time, in
	// which case any step's error is only a symptom; kubelet counts an exec
	// timeout as a failure.
	fail := func(step string, err error) Result {
		if errors.Is(context.Cause(ctx), errTimedOut) {
			return failf("command %q timed out after %v", cmd, timeout)
		}
		return failf("%s in container %s on %s: %v", step, short, t.Machine, err)
	}

	created, err := d.ContainerExecCreate(ctx, t.ContainerID, container.ExecOptions{
		Cmd: a.Command, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return fail("create exec", err)
	}
	// Attaching starts the exec, as `docker exec` does.
	resp, err := d.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return fail("start exec", err)
	}
	defer resp.Close()
	out := &prefixBuffer{max: maxOutput}
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(out, out, resp.Reader)
		copied <- err
	}()
	select {
	case err = <-copied:
	case <-ctx.Done():
		// The stream does not watch ctx: closing the connection ends
		// the copy, which must finish before out is dropped.
		resp.Close()
		<-copied
		return fail("read exec output", ctx.Err())
	}
	if err != nil {
		return fail("read exec output", err)
	}

	var insp container.ExecInspect
	for {
		insp, err = d.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return fail("inspect exec", err)
		}
		if !insp.Running {
			break
		}
		// The output can end a moment before Docker records the exit.
		select {
		case <-time.After(inspectEvery):
		case <-ctx.Done():
			return fail("inspect exec", ctx.Err())
		}
	}
	if insp.ExitCode != 0 {
		msg := fmt.Sprintf("command %q exited with %d", cmd, insp.ExitCode)
		if o := strings.TrimSpace(strings.ToValidUTF8(string(out.b), "")); o != "" {
			msg += ": " + o
		}
		return Result{Message: msg}
	}
	return ok()
}

// prefixBuffer keeps the first max bytes written to it and discards the
// rest, so a chatty command cannot grow a probe's memory.
type prefixBuffer struct {
	b   []byte
	max int
}

func (p *prefixBuffer) Write(b []byte) (int, error) {
	if room := p.max - len(p.b); room > 0 {
		p.b = append(p.b, b[:min(room, len(b))]...)
	}
	return len(b), nil
}
