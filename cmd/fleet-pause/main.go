// Command fleet-pause holds a pod's network namespace: in a pod of
// several containers it runs first, owns the pod's address and published
// ports, and the other containers join its network. It does nothing else
// and exits on SIGTERM or SIGINT. `make pause-image` builds it into the
// image fleet-pause:1 (static, no shell), which fleet pushes to machines
// like any image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
