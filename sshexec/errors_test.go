package sshexec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestReason(t *testing.T) {
	op := func(step string, err error) error {
		return &OpError{Machine: "m", Address: "127.0.0.1:22", Step: step, Err: err}
	}
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	closed := &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"a host key mismatch", op(StepHostKey, &HostKeyMismatchError{}), "host key mismatch"},
		{"a wrapped host key mismatch", fmt.Errorf("ping: %w", op(StepHostKey, &HostKeyMismatchError{})), "host key mismatch"},
		{"an unknown host key", op(StepHostKey, fmt.Errorf("%w for m", ErrUnknownHost)), "unknown host key"},
		{"an auth failure", op(StepAuth, errors.New("ssh: unable to authenticate")), "auth refused"},
		{"a missing Docker socket", op(StepDocker, errors.New("open /var/run/docker.sock: rejected")), "docker not running"},
		{"a refused connection", op(StepConnect, refused), "unreachable"},
		{"a socket timeout", op(StepHandshake, timeout), "unreachable (timed out)"},
		{"a wrapped socket timeout", op(StepHandshake, fmt.Errorf("ssh: handshake failed: %w", timeout)), "unreachable (timed out)"},
		{"a closed socket after the dial deadline", op(StepHandshake, errors.Join(closed, context.DeadlineExceeded)), "unreachable (timed out)"},
		{"a cancelled dial", op(StepHandshake, errors.Join(closed, context.Canceled)), "unreachable"},
		{"a bare deadline error", fmt.Errorf("dial: %w", context.DeadlineExceeded), "unreachable (timed out)"},
		{"any other error", errors.New("boom"), "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Reason(tt.err); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestOpError_Error(t *testing.T) {
	inner := errors.New("connection refused")
	e := &OpError{Machine: "web1", Address: "10.0.0.1:22", Step: StepConnect, Err: inner}
	if got, want := e.Error(), "web1 (10.0.0.1:22): connect: connection refused"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, inner) {
		t.Error("OpError does not unwrap to its cause")
	}
}
