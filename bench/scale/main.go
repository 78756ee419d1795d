// Command scale is `make bench-scale`: seed scenario 1 measured. On a
// 10-host sandbox with the image present, the time from `fleet scale
// --replicas=50` to 50 running containers, against Docker Swarm's `docker
// service scale` on the same hosts in the same run; a no-op `fleet
// reconcile` over 50 containers; and the planner alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdev/fleet/bench/benchkit"
	"github.com/fleetdev/fleet/sandbox"
)

const manifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: scalebench
spec:
  replicas: %d
  template:
    spec:
      containers:
      - name: web
        image: %s
`

// The Swarm service publishes no port either: both sides start the same
// container.

// podManifest is the same scale-up with pods of two containers (an app
// and a sidecar, so each pod also gets its sandbox) consuming a
// ConfigMap: issue 7's cost of pods, against the single container.
const podManifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: scalepod}
data: {MODE: bench, GREETING: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: scalepod
spec:
  replicas: %d
  template:
    spec:
      containers:
      - name: web
        image: %s
        envFrom: [{configMapRef: {name: scalepod}}]
      - name: sidecar
        image: %[2]s
        env: [{name: ADDR, value: ":9090"}]
`

func main() {
	fleetBin := flag.String("fleet", "bin/fleet", "fleet binary")
	hosts := flag.Int("hosts", 10, "sandbox hosts")
	replicas := flag.Int("replicas", 50, "replicas to scale to")
	runs := flag.Int("runs", 2, "repetitions of each scale-up")
	img := flag.String("image", "fleet-demo:v1", "image (built locally)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "fleet-bench-sandbox"), "sandbox directory")
	keep := flag.Bool("keep", false, "leave the sandbox up afterwards")
	flag.Parse()
	log.SetFlags(0)
	ctx := context.Background()

	bin, err := filepath.Abs(*fleetBin)
	benchkit.Check(err)
	sb, err := sandbox.New("bench", *dir, os.Stderr)
	benchkit.Check(err)
	defer sb.Close()
	_, err = sb.Up(ctx, *hosts)
	benchkit.Check(err)
	if !*keep {
		defer sb.Down(context.Background())
	}
	state := filepath.Join(*dir, "scale.db")
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(state + s)
	}
	env := append(os.Environ(), "FLEET_INVENTORY="+sb.InventoryPath(), "FLEET_STATE="+state)
	var fleetOwn time.Duration // the CPU time of the last fleet command
	fleet := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			log.Fatalf("fleet %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		fleetOwn = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return string(out)
	}
	fleet("image", "push", *img)
	mf := filepath.Join(*dir, "scalebench.yaml")
	benchkit.Check(os.WriteFile(mf, []byte(fmt.Sprintf(manifest, 0, *img)), 0o644))
	fleet("apply", "-f", mf)

	fmt.Printf("bench-scale  %s  hosts=%d  replicas=%d  cpus=%d  go=%s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *hosts, *replicas, runtime.NumCPU(), runtime.Version())

	// scaleUps scales deploy/name 0 → n runs times, checking that perPod
	// containers run per replica, and times a no-op reconcile; cpu is
	// the machine's CPU time each scale-up took (everything on it: the
	// hosts' engines, their containers, fleet).
	scaleUps := func(name string, n, perPod, runs int) (times, cpu, own, noop []time.Duration) {
		for i := 0; i < runs; i++ {
			start, busy := time.Now(), cpuBusy()
			fleet("scale", "deploy/"+name, fmt.Sprintf("--replicas=%d", n))
			times = append(times, time.Since(start))
			cpu = append(cpu, cpuBusy()-busy)
			own = append(own, fleetOwn)
			if got := countRunning(ctx, sb, *hosts, "label=fleet.owner="+name); got != n*perPod {
				log.Fatalf("fleet: %d containers of %s running after scale, want %d", got, name, n*perPod)
			}
			if i == runs-1 && n == *replicas {
				for j := 0; j < 3; j++ {
					start := time.Now()
					out := fleet("reconcile")
					noop = append(noop, time.Since(start))
					if !strings.Contains(out, "nothing to do") {
						log.Fatalf("reconcile on a converged cluster did something:\n%s", out)
					}
				}
			}
			fleet("scale", "deploy/"+name, "--replicas=0")
		}
		return times, cpu, own, noop
	}
	// Two replicas on two hosts leave the machine's CPUs idle enough
	// that a pod's time is its latency, as on hosts with CPUs of their own.
	const few = 2
	fleetTimes, fleetCPU, fleetOwnCPU, noop := scaleUps("scalebench", *replicas, 1, *runs)
	fewTimes, _, _, _ := scaleUps("scalebench", few, 1, 5)
	fleet("delete", "deploy/scalebench")

	fleet("image", "push", "fleet-pause:1")
	pf := filepath.Join(*dir, "scalepod.yaml")
	benchkit.Check(os.WriteFile(pf, []byte(fmt.Sprintf(podManifest, 0, *img)), 0o644))
	fleet("apply", "-f", pf)
	podTimes, podCPU, podOwnCPU, _ := scaleUps("scalepod", *replicas, 3, *runs) // two containers and the sandbox
	fewPodTimes, _, _, _ := scaleUps("scalepod", few, 3, 5)
	fleet("delete", "deploy/scalepod")
	fleet("delete", "cm/scalepod")

	swarmTimes := swarm(ctx, sb, *hosts, *img, *replicas, *runs)

	planner := plannerFigure()
	fp, sp := benchkit.P50(fleetTimes), benchkit.P50(swarmTimes)
	fmt.Printf("scale 0 -> %d on %d hosts: fleet p50 %s, swarm p50 %s, ratio %.2fx   target <= 0.25x and <= 5s\n", *replicas, *hosts, benchkit.Secs(fp), benchkit.Secs(sp), float64(fp)/float64(sp))
	fmt.Printf("  runs: fleet %s  swarm %s\n", list(fleetTimes), list(swarmTimes))
	fmt.Printf("no-op fleet reconcile, %d hosts, %d containers: p50 %s   target <= 1s\n", *hosts, *replicas, benchkit.Secs(benchkit.P50(noop)))
	pp := benchkit.P50(podTimes)
	fmt.Printf("scale 0 -> %d pods of two containers and a ConfigMap: fleet p50 %s, ratio to one container %.2fx   target <= 1.3x\n", *replicas, benchkit.Secs(pp), float64(pp)/float64(fp))
	fmt.Printf("  runs: %s\n", list(podTimes))
	perReplica := func(d time.Duration) string { return fmt.Sprintf("%.0fms", d.Seconds()*1000/float64(*replicas)) }
	fc, pc := benchkit.P50(fleetCPU), benchkit.P50(podCPU)
	fmt.Printf("  machine CPU per replica (%d CPUs hold every host's engine): one container %s, pod %s, ratio %.2fx; of which fleet's own %s and %s\n",
		runtime.NumCPU(), perReplica(fc), perReplica(pc), float64(pc)/float64(fc), perReplica(benchkit.P50(fleetOwnCPU)), perReplica(benchkit.P50(podOwnCPU)))
	fw, pw := benchkit.P50(fewTimes), benchkit.P50(fewPodTimes)
	fmt.Printf("scale 0 -> %d on %d hosts (CPUs not saturated): one container p50 %s, pods p50 %s, ratio %.2fx   target <= 1.3x\n", few, *hosts, benchkit.Secs(fw), benchkit.Secs(pw), float64(pw)/float64(fw))
	fmt.Printf("  runs: one container %s  pods %s\n", list(fewTimes), list(fewPodTimes))
	fmt.Printf("planner alone, 10,000 replicas onto 1,000 machines: %s   target >= 100,000 placements/s\n", planner)
}

// swarm makes the sandbox hosts a Swarm (node1 manager), runs the same
// scale-up with `docker service scale`, and takes the Swarm down again.
func swarm(ctx context.Context, sb *sandbox.Sandbox, hosts int, img string, replicas, runs int) []time.Duration {
	mgr, run, leave := benchkit.Swarm(ctx, sb)
	defer leave()
	run(mgr.Name, "docker", "service", "create", "--detach", "--no-resolve-image", "--name", "scalebench", "--replicas", "0", img)
	var times []time.Duration
	want := fmt.Sprintf("%d/%d", replicas, replicas)
	for i := 0; i < runs; i++ {
		start := time.Now()
		run(mgr.Name, "docker", "service", "scale", "--detach", fmt.Sprintf("scalebench=%d", replicas))
		for {
			if run(mgr.Name, "docker", "service", "ls", "--filter", "name=scalebench", "--format", "{{.Replicas}}") == want {
				break
			}
			if time.Since(start) > 5*time.Minute {
				log.Fatal("swarm did not converge in 5 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
		times = append(times, time.Since(start))
		if n := countRunning(ctx, sb, hosts, "label=com.docker.swarm.service.name=scalebench"); n != replicas {
			log.Fatalf("swarm: %d containers running, want %d", n, replicas)
		}
		run(mgr.Name, "docker", "service", "scale", "--detach", "scalebench=0")
		for countRunning(ctx, sb, hosts, "label=com.docker.swarm.service.name=scalebench") > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	run(mgr.Name, "docker", "service", "rm", "scalebench")
	return times
}

// cpuBusy is the machine's CPU time so far, all CPUs, idle and iowait
// left out (/proc/stat).
func cpuBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	benchkit.Check(err)
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		benchkit.Check(err)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

func countRunning(ctx context.Context, sb *sandbox.Sandbox, hosts int, filter string) int {
	n := 0
	for i := 1; i <= hosts; i++ {
		_, out, err := sb.Exec(ctx, sandbox.HostName(i), "docker", "ps", "-q", "--filter", filter)
		benchkit.Check(err)
		n += len(strings.Fields(out))
	}
	return n
}

func plannerFigure() string {
	out, err := exec.Command("go", "test", "-run", "XXX", "-bench", "Compute_10kOnto1k", "-benchtime", "5x", "./planner").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("planner benchmark failed: %v", err)
	}
	m := regexp.MustCompile(`([0-9.e+]+) placements/s`).FindStringSubmatch(string(out))
	if m == nil {
		return "no figure in: " + string(out)
	}
	return m[1] + " placements/s"
}

func list(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, benchkit.Secs(d))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
