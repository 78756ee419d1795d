// Command failover is `make bench-failover`: seed scenario 2 measured. A
// 50-replica Deployment on 10 sandbox hosts under `fleet serve`; one host
// is killed (and, separately, paused): time to detection (the NodeNotReady
// event) and until 50 replicas run again on the live hosts. The same kill
// on a Docker Swarm service of 50 replicas on the same hosts, in the same
// run. And a single container crash to replacement.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/fleetdev/fleet/bench/benchkit"
	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/sandbox"
	"github.com/fleetdev/fleet/sshexec"
	"github.com/fleetdev/fleet/store"
)

const manifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: failbench
spec:
  replicas: %d
  template:
    spec:
      containers:
      - name: web
        image: %s
`

var (
	sb    *sandbox.Sandbox
	pool  *sshexec.Pool
	inv   *inventory.Inventory
	st    *store.Store
	hosts int
)

func main() {
	fleetBin := flag.String("fleet", "bin/fleet", "fleet binary")
	flag.IntVar(&hosts, "hosts", 10, "sandbox hosts")
	replicas := flag.Int("replicas", 50, "replicas")
	img := flag.String("image", "fleet-demo:v1", "image (built locally)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "fleet-bench-sandbox"), "sandbox directory")
	keep := flag.Bool("keep", false, "leave the sandbox up afterwards")
	skipSwarm := flag.Bool("skip-swarm", false, "measure fleet only")
	flag.Parse()
	log.SetFlags(0)
	ctx := context.Background()

	bin, err := filepath.Abs(*fleetBin)
	benchkit.Check(err)
	sb, err = sandbox.New("bench", *dir, os.Stderr)
	benchkit.Check(err)
	defer sb.Close()
	_, err = sb.Up(ctx, hosts)
	benchkit.Check(err)
	if !*keep {
		defer sb.Down(context.Background())
	}
	state := filepath.Join(*dir, "failover.db")
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(state + s)
	}
	env := append(os.Environ(), "FLEET_INVENTORY="+sb.InventoryPath(), "FLEET_STATE="+state)
	fleet := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			log.Fatalf("fleet %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	inv, err = inventory.Load(sb.InventoryPath())
	benchkit.Check(err)
	st, err = store.Open(ctx, state)
	benchkit.Check(err)
	defer st.Close()
	policy, err := sshexec.NewHostKeyPolicy(inv.KnownHosts, st)
	benchkit.Check(err)
	pool, err = sshexec.NewPool(inv, sshexec.Config{HostKeys: policy, DialTimeout: time.Second})
	benchkit.Check(err)
	defer pool.Close()

	fleet("image", "push", *img)
	// Debug logs go to serve.log, for reading an incident afterwards.
	serve := exec.Command(bin, "serve", "-v")
	serve.Env = env
	serveLog, err := os.Create(filepath.Join(*dir, "serve.log"))
	benchkit.Check(err)
	serve.Stdout, serve.Stderr = serveLog, serveLog
	benchkit.Check(serve.Start())
	// Serve places the pods, not the apply: wait until it holds the lease.
	waitFor("serve to hold the lease", func() bool {
		b, _ := os.ReadFile(serveLog.Name())
		return strings.Contains(string(b), "holding the reconcile lease")
	})
	mf := filepath.Join(*dir, "failbench.yaml")
	benchkit.Check(os.WriteFile(mf, []byte(fmt.Sprintf(manifest, *replicas, *img)), 0o644))
	fleet("apply", "-f", mf)

	fmt.Printf("bench-failover  %s  hosts=%d  replicas=%d  cpus=%d  go=%s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), hosts, *replicas, runtime.NumCPU(), runtime.Version())
	victim := sandbox.HostName(4)
	label := "label=fleet.owner=failbench"

	kd, kr := failFleet(ctx, victim, *replicas, label, (*sandbox.Sandbox).Kill, (*sandbox.Sandbox).Start)
	fmt.Printf("fleet, host killed:  detection %s, %d replicas running again %s after the kill   targets <= 2s, <= 5s\n", benchkit.Secs(kd), *replicas, benchkit.Secs(kr))
	// After fencing the first victim runs nothing; pause a machine that does.
	paused := busiest(ctx, label, sandbox.HostName(1))
	pd, pr := failFleet(ctx, paused, *replicas, label, (*sandbox.Sandbox).Pause, (*sandbox.Sandbox).Unpause)
	fmt.Printf("fleet, host paused (%s):  detection %s, %d replicas running again %s after the pause\n", paused, benchkit.Secs(pd), *replicas, benchkit.Secs(pr))
	crash := crashOne(ctx, *replicas, label)
	fmt.Printf("fleet, one container killed (docker kill): running again after %s   target <= 1s\n", benchkit.Secs(crash))

	serve.Process.Signal(syscall.SIGTERM)
	serve.Wait()
	fleet("delete", "deploy/failbench")
	if *skipSwarm {
		return
	}
	sd, sr := failSwarm(ctx, victim, *img, *replicas)
	fmt.Printf("swarm, host killed:  detection %s, %d replicas running again %s after the kill\n", benchkit.Secs(sd), *replicas, benchkit.Secs(sr))
	fmt.Printf("ratio fleet/swarm, host killed: detection %.2fx, recovery %.2fx   target <= 0.2x\n", float64(kd)/float64(sd), float64(kr)/float64(sr))
}

// failFleet breaks victim with fail, measures detection and recovery,
// heals it with heal and waits until fencing leaves exactly the desired
// replicas.
func failFleet(ctx context.Context, victim string, replicas int, label string,
	fail, heal func(*sandbox.Sandbox, context.Context, string) error) (detect, recover time.Duration) {
	waitFor(fmt.Sprintf("%d running", replicas), func() bool { return running(ctx, label, "") == replicas })
	last := lastEventID(ctx)
	start := time.Now()
	benchkit.Check(fail(sb, ctx, victim))
	for detect == 0 || recover == 0 {
		if detect == 0 {
			if at, ok := notReadyAt(ctx, last, victim); ok {
				detect = at.Sub(start)
			}
		}
		if recover == 0 && running(ctx, label, victim) == replicas {
			recover = time.Since(start)
		}
		if time.Since(start) > 3*time.Minute {
			log.Fatal("fleet did not recover in 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	benchkit.Check(heal(sb, ctx, victim))
	waitFor("fencing after the host returned", func() bool {
		return running(ctx, label, "") == replicas && running(ctx, label, victim) == replicas
	})
	return detect, recover
}

// busiest is the machine (other than not) running the most containers
// matching filter.
func busiest(ctx context.Context, filter, not string) string {
	best, most := "", -1
	for _, m := range inv.Machines {
		if m.Name == not {
			continue
		}
		d, err := pool.Docker(m.Name)
		benchkit.Check(err)
		list, err := d.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", strings.TrimPrefix(filter, "label=")))})
		benchkit.Check(err)
		if len(list) > most {
			best, most = m.Name, len(list)
		}
	}
	return best
}

func crashOne(ctx context.Context, replicas int, label string) time.Duration {
	m := inv.Machines[0].Name
	d, err := pool.Docker(m)
	benchkit.Check(err)
	list, err := d.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", strings.TrimPrefix(label, "label=")))})
	benchkit.Check(err)
	if len(list) == 0 {
		log.Fatalf("no container on %s to kill", m)
	}
	start := time.Now()
	benchkit.Check(d.ContainerKill(ctx, list[0].ID, "KILL"))
	time.Sleep(20 * time.Millisecond)
	waitFor("the killed container to be replaced", func() bool { return running(ctx, label, "") == replicas })
	return time.Since(start)
}

// running counts the running containers matching filter on every host but
// skip, over warm connections.
func running(ctx context.Context, filter, skip string) int {
	n := 0
	for _, m := range inv.Machines {
		if m.Name == skip {
			continue
		}
		d, err := pool.Docker(m.Name)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		list, err := d.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", strings.TrimPrefix(filter, "label=")), filters.Arg("status", "running"))})
		cancel()
		if err == nil {
			n += len(list)
		}
	}
	return n
}

func lastEventID(ctx context.Context) int64 {
	evs, err := st.Events(ctx, "", 1)
	benchkit.Check(err)
	if len(evs) == 0 {
		return 0
	}
	return evs[0].ID
}

// notReadyAt is when serve declared machine NotReady (the event's own
// time, not when this loop noticed it).
func notReadyAt(ctx context.Context, after int64, machine string) (time.Time, bool) {
	evs, err := st.Events(ctx, "", 50)
	benchkit.Check(err)
	for _, e := range evs {
		if e.ID > after && e.Reason == "NodeNotReady" && e.Machine == machine {
			return e.At, true
		}
	}
	return time.Time{}, false
}

func failSwarm(ctx context.Context, victim, img string, replicas int) (detect, recover time.Duration) {
	mgr, run, leave := benchkit.Swarm(ctx, sb)
	defer leave()
	run(mgr.Name, "docker", "service", "create", "--detach", "--no-resolve-image", "--name", "failbench", "--replicas", fmt.Sprint(replicas), img)
	label := "label=com.docker.swarm.service.name=failbench"
	waitFor("swarm's replicas", func() bool { return running(ctx, label, "") == replicas })
	start := time.Now()
	benchkit.Check(sb.Kill(ctx, victim))
	defer sb.Start(context.Background(), victim)
	for detect == 0 || recover == 0 {
		if detect == 0 {
			if st := run(mgr.Name, "docker", "node", "inspect", "--format", "{{.Status.State}}", victim); st == "down" {
				detect = time.Since(start)
			}
		}
		if recover == 0 && running(ctx, label, victim) == replicas {
			recover = time.Since(start)
		}
		if time.Since(start) > 5*time.Minute {
			log.Fatal("swarm did not recover in 5 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	run(mgr.Name, "docker", "service", "rm", "failbench")
	return detect, recover
}

func waitFor(what string, cond func() bool) {
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			log.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
