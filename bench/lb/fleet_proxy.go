package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/fleetdev/fleet/lb"
)

// childFlag, as the first argument, makes this binary the fleet proxy
// under test instead of the benchmark. It is not a flag of the flag
// package so that -help does not show it.
const childFlag = "-child-fleet-lb"

// fleetArgv is the command line of the fleet proxy process: this same
// binary in child mode.
func fleetArgv(exe, listen string, backends []string) []string {
	return []string{exe, childFlag, "-listen", listen, "-backends", strings.Join(backends, ",")}
}

// runFleetChild runs fleet's Balancer with one HTTP route, on one P like
// the single worker of nginx and the single thread of HAProxy, until its
// stdin closes (the benchmark is gone) or it gets SIGTERM.
func runFleetChild(args []string) error {
	fs := flag.NewFlagSet(childFlag, flag.ContinueOnError)
	listen := fs.String("listen", "", "address of the route")
	backends := fs.String("backends", "", "comma-separated backend addresses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *backends == "" {
		return errors.New("need -listen and -backends")
	}
	runtime.GOMAXPROCS(1)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	pool := lb.NewPool("bench", lb.RoundRobin)
	pool.Set(strings.Split(*backends, ","))
	b := lb.New(lb.Options{})
	errs := b.Update([]lb.Route{{Name: "bench", Listen: *listen, Mode: lb.HTTP, Pool: pool}})
	for name, err := range errs {
		if err != nil {
			return fmt.Errorf("set route %s: %w", name, err)
		}
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.Shutdown(sctx)
	return nil
}
