// Command rollout is `make bench-rollout`: seed scenario 3 measured. A
// 10-replica Deployment behind fleet's load balancer on 5 sandbox hosts,
// under a steady stream of requests, is rolled v1 → v2, then v2 → a v3
// that never becomes ready (which fleet should roll back by itself):
// failed requests, requests sent, rollout and rollback wall time. In the
// same run, on the same hosts, the same v1 → v2 rollout of a Docker Swarm
// service through Swarm's routing mesh, with Swarm's default update
// settings and again with --update-order start-first.
//
// It exits non-zero only when something could not be set up; a missed
// target is printed, not failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/fleetdev/fleet/bench/benchkit"
	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/sandbox"
	"github.com/fleetdev/fleet/sshexec"
)

// config is what the flags set.
type config struct {
	fleetBin   string
	buildImage string
	name, dir  string
	hosts      int
	replicas   int
	rate       int
	workers    int
	wait       time.Duration
	swarmPort  int
	keep       bool
	skipSwarm  bool
	skipFleet  bool
}

func main() {
	var c config
	flag.StringVar(&c.fleetBin, "fleet", "bin/fleet", "fleet binary")
	flag.StringVar(&c.buildImage, "build-image", "examples/demo/build-image.sh", "script that builds fleet-demo:VERSION (for v3)")
	flag.StringVar(&c.name, "name", "rollout-bench", "sandbox name")
	flag.StringVar(&c.dir, "dir", filepath.Join(os.TempDir(), "fleet-rollout-bench"), "sandbox directory (state file, manifests and serve.log go there too)")
	flag.IntVar(&c.hosts, "hosts", 5, "sandbox hosts")
	flag.IntVar(&c.replicas, "replicas", 10, "replicas")
	flag.IntVar(&c.rate, "rate", 200, "requests/s of the load, in total")
	flag.IntVar(&c.workers, "workers", 8, "load workers, each with its own keep-alive connection")
	flag.DurationVar(&c.wait, "wait", 120*time.Second, "bound on each rollout, rollback and setup wait")
	flag.IntVar(&c.swarmPort, "swarm-port", 18080, "port the Swarm service publishes on the routing mesh")
	flag.BoolVar(&c.keep, "keep", false, "leave the sandbox up afterwards")
	flag.BoolVar(&c.skipSwarm, "skip-swarm", false, "measure fleet only")
	flag.BoolVar(&c.skipFleet, "skip-fleet", false, "measure Swarm only")
	flag.Parse()
	log.SetFlags(0)
	ctx := context.Background()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		fatalf("%s: cleaning up", <-sig)
	}()

	bin, err := filepath.Abs(c.fleetBin)
	check(err)
	// v3 is its own image so that its pods and any answer it gave are
	// told apart from v2's; DEMO_READY_AFTER=1h in its manifest keeps it
	// from ever becoming ready.
	if out, err := exec.Command(c.buildImage, "v3").CombinedOutput(); err != nil {
		fatalf("build fleet-demo:v3: %v\n%s", err, out)
	}
	sb, err := sandbox.New(c.name, c.dir, os.Stderr)
	check(err)
	atExit(func() { sb.Close() })
	// Up reuses the hosts of an earlier run when they are still there.
	_, err = sb.Up(ctx, c.hosts)
	check(err)
	if !c.keep {
		atExit(func() {
			if err := sb.Down(context.Background()); err != nil {
				log.Printf("sandbox down: %v", err)
			}
		})
	}
	state := filepath.Join(c.dir, "rollout.db")
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(state + s)
	}
	f := fleetCLI{bin: bin, env: append(os.Environ(), "FLEET_INVENTORY="+sb.InventoryPath(), "FLEET_STATE="+state)}
	for _, img := range []string{"fleet-demo:v1", "fleet-demo:v2", "fleet-demo:v3"} {
		f.must("image", "push", img)
	}

	fmt.Printf("bench-rollout  %s  hosts=%d  replicas=%d  cpus=%d  go=%s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), c.hosts, c.replicas, runtime.NumCPU(), runtime.Version())
	fmt.Printf("load: %d requests/s from %d workers (keep-alive, 2s timeout); a request fails on any error, timeout or non-200\n", c.rate, c.workers)

	var fleetWall time.Duration
	if !c.skipFleet {
		fb := &fleetBench{config: c, f: f, port: freePort()}
		fb.setUp(ctx)
		v2 := fb.rollout()
		fmt.Printf("fleet  v1→v2 rolling:  %s  %s   target 0 failed\n", v2.wallText("wall"), v2.load)
		v2.details()
		if v2.done {
			fleetWall = v2.wall
		}
		v3 := fb.rollback()
		fmt.Printf("fleet  v2→v3 broken, automatic rollback:  %s  %s   target 0 failed\n", v3.wallText("rolled back after"), v3.load)
		v3.details()
		fb.tearDown()
	}
	if c.skipSwarm {
		cleanup()
		return
	}
	inv, err := inventory.Load(sb.InventoryPath())
	check(err)
	// The sandbox wrote every host's key to known_hosts: no pins needed.
	policy, err := sshexec.NewHostKeyPolicy(inv.KnownHosts, nil)
	check(err)
	pool, err := sshexec.NewPool(inv, sshexec.Config{HostKeys: policy})
	check(err)
	atExit(func() { pool.Close() })
	sw := &swarmBench{config: c, sb: sb, pool: pool}
	def, sf := sw.run(ctx)
	fmt.Printf("swarm  v1→v2 default (stop-first):  %s  %s\n", def.wallText("wall"), def.requests())
	def.details()
	fmt.Printf("swarm  v1→v2 start-first:  %s  %s\n", sf.wallText("wall"), sf.requests())
	sf.details()
	if !c.skipFleet {
		fmt.Printf("ratio fleet/swarm wall: %s (default), %s (start-first)   target <= 1.0x\n", ratio(fleetWall, def), ratio(fleetWall, sf))
		fmt.Printf("  against Swarm's tasks converged instead of its CLI returning: %s (default), %s (start-first)\n", ratio(fleetWall, phase{done: def.converged > 0, wall: def.converged}), ratio(fleetWall, phase{done: sf.converged > 0, wall: sf.converged}))
	}
	cleanup()
}

// phase is one measured rollout.
type phase struct {
	done bool
	// wall is from the command that started it until it finished.
	wall time.Duration
	// converged is, for Swarm, when every task ran the new image and was
	// healthy, as seen by polling the manager.
	converged time.Duration
	// note says what did not happen, when done is false.
	note string
	load loadResult
	// noLoad says why no load ran, when none did.
	noLoad string
	// more is printed under the line.
	more []string
}

func (p phase) wallText(what string) string {
	if !p.done {
		return p.note
	}
	return what + " " + benchkit.Secs(p.wall)
}

// requests is the line's load figures.
func (p phase) requests() string {
	if p.noLoad != "" {
		return "requests n/a (" + p.noLoad + ")"
	}
	return p.load.String()
}

func (p phase) details() {
	for _, m := range p.more {
		fmt.Println("  " + m)
	}
	if s := p.load.failures(); s != "" {
		fmt.Println("  " + s)
	}
}

func ratio(fleet time.Duration, swarm phase) string {
	if fleet == 0 || !swarm.done || swarm.wall == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(fleet)/float64(swarm.wall))
}

// freePort is a loopback port nothing listens on now.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var (
	exitMu   sync.Mutex
	cleanups []func()
)

// atExit registers f to run at the end, also after a setup error or an
// interrupt: the last registered runs first.
func atExit(f func()) {
	exitMu.Lock()
	defer exitMu.Unlock()
	cleanups = append(cleanups, f)
}

func cleanup() {
	exitMu.Lock()
	fs := cleanups
	cleanups = nil
	exitMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// fatalf ends the benchmark on a setup error, after cleaning up.
func fatalf(format string, args ...any) {
	log.Printf(format, args...)
	cleanup()
	os.Exit(1)
}

func check(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}

// waitUntil polls cond until it holds or limit has passed.
func waitUntil(limit time.Duration, every time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(every)
	}
}
