package lb

import (
	"errors"
	"net"
	"syscall"
)

var errStale = errors.New("lb: idle upstream connection was closed by the endpoint")

// alive reports whether an idle upstream connection is still open: a
// non-blocking peek sees the endpoint's FIN (or stray bytes, just as bad)
// without consuming anything.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, errno := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: open and quiet. 0: the endpoint's FIN. >0: bytes nobody
		// asked for.
		ok = n < 0 && errno == syscall.EAGAIN
		return true
	})
	return err == nil && ok
}
