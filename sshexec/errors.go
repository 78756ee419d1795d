package sshexec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Step names where reaching a machine went wrong.
const (
	StepConnect   = "connect"
	StepHandshake = "ssh handshake"
	StepAuth      = "ssh auth"
	StepHostKey   = "host key"
	StepDocker    = "docker"
)

// OpError is a failure to reach a machine, naming the machine and the step.
type OpError struct {
	Machine string
	Address string
	Step    string
	Err     error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("%s (%s): %s: %v", e.Machine, e.Address, e.Step, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the step ran out of time, as a hung or cut-off
// machine does. A dial deadline may close the socket before the socket's
// own deadline fires, leaving a "closed connection" error with the
// context's deadline wrapped beside it, so that counts too.
func (e *OpError) Timeout() bool {
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout() || errors.Is(e.Err, os.ErrDeadlineExceeded) ||
		errors.Is(e.Err, context.DeadlineExceeded)
}

// Reason is a short, stable classification of err for node status:
// unreachable, auth refused, host key mismatch, docker not running.
func Reason(err error) string {
	var mm *HostKeyMismatchError
	if errors.As(err, &mm) {
		return "host key mismatch"
	}
	if errors.Is(err, ErrUnknownHost) {
		return "unknown host key"
	}
	var op *OpError
	if errors.As(err, &op) {
		switch op.Step {
		case StepAuth:
			return "auth refused"
		case StepDocker:
			return "docker not running"
		}
		if op.Timeout() {
			return "unreachable (timed out)"
		}
		return "unreachable"
	}
	if strings.Contains(err.Error(), "context deadline exceeded") {
		return "unreachable (timed out)"
	}
	return "unreachable"
}
