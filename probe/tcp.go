package probe

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/fleetdev/fleet/spec"
)

func (r *Runner) tcpSocket(ctx context.Context, a *spec.TCPSocketAction, t Target) Result {
	addr, err := address(a.Port, t)
	if err != nil {
		return failf("%v", err)
	}
	conn, err := r.dial(ctx, t.Machine, addr)
	if err != nil {
		return failf("%v", err)
	}
	if conn != nil {
		conn.Close()
	}
	return ok()
}

// dial is r.Dial bounded by ctx even if r.Dial ignores it (an SSH channel
// open can block on a stuck machine), with errors that name addr as
// net.Dialer's do.
func (r *Runner) dial(ctx context.Context, machine, addr string) (net.Conn, error) {
	if r.Dial == nil {
		return nil, fmt.Errorf("dial tcp %s: no dialer", addr)
	}
	type dialed struct {
		conn net.Conn
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := r.Dial(ctx, machine, "tcp", addr)
		done <- dialed{c, err}
	}()
	select {
	case d := <-done:
		if d.err != nil {
			return nil, nameAddr(d.err, addr)
		}
		return d.conn, nil
	case <-ctx.Done():
		// A connection made after we gave up must not stay open on the
		// machine.
		go func() {
			if d := <-done; d.conn != nil {
				d.conn.Close()
			}
		}()
		return nil, fmt.Errorf("dial tcp %s: %w", addr, ctx.Err())
	}
}

// nameAddr makes err name addr, as kubelet's messages do, unless it
// already does (net.Dialer's errors do; an SSH channel's do not).
func nameAddr(err error, addr string) error {
	if strings.Contains(err.Error(), addr) {
		return err
	}
	return fmt.Errorf("dial tcp %s: %w", addr, err)
}
