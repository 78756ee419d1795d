// Command transport is `make bench-transport`: how fast fleet reaches
// machines and moves images to them, on a 10-host sandbox, against the
// serial `docker save | ssh HOST docker load` pipe measured in the same run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	dimage "github.com/docker/docker/api/types/image"

	"github.com/fleetdev/fleet/bench/benchkit"
	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/node"
	"github.com/fleetdev/fleet/sandbox"
	"github.com/fleetdev/fleet/sshexec"
	"github.com/fleetdev/fleet/store"
)

func main() {
	fleetBin := flag.String("fleet", "bin/fleet", "fleet binary")
	hosts := flag.Int("hosts", 10, "sandbox hosts")
	name := flag.String("name", "bench", "sandbox name")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "fleet-bench-sandbox"), "sandbox directory")
	runs := flag.Int("runs", 5, "repetitions of each get nodes measurement")
	pushRuns := flag.Int("push-runs", 2, "repetitions of each image push measurement")
	img := flag.String("image", "fleet-demo:v1", "image to push")
	keep := flag.Bool("keep", false, "leave the sandbox up afterwards")
	flag.Parse()
	log.SetFlags(0)
	ctx := context.Background()

	bin, err := filepath.Abs(*fleetBin)
	benchkit.Check(err)
	sb, err := sandbox.New(*name, *dir, os.Stderr)
	benchkit.Check(err)
	defer sb.Close()
	_, err = sb.Up(ctx, *hosts)
	benchkit.Check(err)
	if !*keep {
		defer sb.Down(context.Background())
	}
	inv, err := inventory.Load(sb.InventoryPath())
	benchkit.Check(err)
	state := filepath.Join(*dir, "bench.db")
	env := append(os.Environ(), "FLEET_INVENTORY="+sb.InventoryPath(), "FLEET_STATE="+state)

	fmt.Printf("bench-transport  %s  hosts=%d  cpus=%d  go=%s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), len(inv.Machines), runtime.NumCPU(), runtime.Version())

	// Cold: a new fleet process each time, so new SSH connections.
	var cold []time.Duration
	for i := 0; i < *runs+1; i++ {
		start := time.Now()
		out, err := run(env, bin, "get", "nodes", "-o", "json")
		took := time.Since(start)
		benchkit.Check(err)
		ready := strings.Count(out, `"status": "Ready"`)
		if ready != len(inv.Machines) {
			log.Fatalf("get nodes: %d of %d Ready:\n%s", ready, len(inv.Machines), out)
		}
		if i > 0 { // the first run warms the page cache, not the connections
			cold = append(cold, took)
		}
	}

	// Warm: one process, connections kept, as `fleet serve` does.
	st, err := store.Open(ctx, state)
	benchkit.Check(err)
	defer st.Close()
	newPool := func() *sshexec.Pool {
		policy, err := sshexec.NewHostKeyPolicy(inv.KnownHosts, st)
		benchkit.Check(err)
		p, err := sshexec.NewPool(inv, sshexec.Config{HostKeys: policy})
		benchkit.Check(err)
		return p
	}
	pool := newPool()
	node.Probe(ctx, inv, pool, node.Options{Timeout: 5 * time.Second, Facts: st})
	var warm []time.Duration
	for i := 0; i < *runs; i++ {
		start := time.Now()
		sts := node.Probe(ctx, inv, pool, node.Options{Timeout: 5 * time.Second, Facts: st})
		warm = append(warm, time.Since(start))
		for _, s := range sts {
			if s.Status != node.Ready {
				log.Fatalf("warm probe: %s %s: %s", s.Name, s.Status, s.Error)
			}
		}
	}

	// Handshake: one machine at a time, new connection each (TCP connect,
	// key exchange, host key check, public key auth).
	var hs []time.Duration
	for i := 0; i < 3; i++ {
		p := newPool()
		for _, m := range inv.Machines {
			start := time.Now()
			_, err := p.Client(ctx, m.Name)
			benchkit.Check(err)
			hs = append(hs, time.Since(start))
		}
		p.Close()
	}

	fmt.Printf("get nodes, cold (new process, new connections)   p50 %6s  min %6s   target <= 500ms\n", ms(benchkit.P50(cold)), ms(minOf(cold)))
	fmt.Printf("get nodes, warm (pooled connections)             p50 %6s  min %6s\n", ms(benchkit.P50(warm)), ms(minOf(warm)))
	fmt.Printf("ssh handshake (connect+kex+auth, one at a time)  p50 %6s  min %6s\n", ms(benchkit.P50(hs)), ms(minOf(hs)))

	// Image push versus the serial pipe, alternating so drift hits both.
	key := filepath.Join(sb.Dir, sandbox.KeyFile)
	kh := filepath.Join(sb.Dir, sandbox.KnownHostsFile)
	var fleetPush, serial []time.Duration
	for i := 0; i < *pushRuns; i++ {
		removeImage(ctx, pool, inv, *img)
		start := time.Now()
		out, err := run(env, bin, "image", "push", *img)
		fleetPush = append(fleetPush, time.Since(start))
		benchkit.Check(err)
		if n := strings.Count(out, " loaded "); n != len(inv.Machines) {
			log.Fatalf("fleet image push loaded on %d of %d machines:\n%s", n, len(inv.Machines), out)
		}
		removeImage(ctx, pool, inv, *img)
		start = time.Now()
		for _, m := range inv.Machines {
			benchkit.Check(savePipe(*img, key, kh, m.Address))
		}
		serial = append(serial, time.Since(start))
	}
	pool.Close()
	fp, sp := benchkit.P50(fleetPush), benchkit.P50(serial)
	fmt.Printf("image push to %d hosts: fleet p50 %s, serial docker save | ssh docker load p50 %s, ratio %.2fx   target <= 0.50x\n",
		len(inv.Machines), benchkit.Secs(fp), benchkit.Secs(sp), float64(fp)/float64(sp))
	fmt.Printf("  runs: fleet %v  serial %v\n", list(fleetPush), list(serial))
}

func run(env []string, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("fleet %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
	}
	return string(out), err
}

func removeImage(ctx context.Context, pool *sshexec.Pool, inv *inventory.Inventory, ref string) {
	for _, m := range inv.Machines {
		d, err := pool.Docker(m.Name)
		benchkit.Check(err)
		d.ImageRemove(ctx, ref, dimage.RemoveOptions{Force: true, PruneChildren: true})
	}
}

// savePipe is the baseline: docker save locally piped into ssh docker load.
func savePipe(ref, key, knownHosts, addr string) error {
	save := exec.Command("docker", "save", ref)
	load := exec.Command("ssh", "-i", key, "-o", "UserKnownHostsFile="+knownHosts, "-o", "BatchMode=yes",
		"root@"+addr, "docker", "load", "-q")
	pr, pw := io.Pipe()
	save.Stdout, load.Stdin = pw, pr
	load.Stdout, load.Stderr = io.Discard, os.Stderr
	if err := load.Start(); err != nil {
		return err
	}
	if err := save.Run(); err != nil {
		return err
	}
	pw.Close()
	return load.Wait()
}

func minOf(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		if x < m {
			m = x
		}
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

func list(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, benchkit.Secs(d))
	}
	b, _ := json.Marshal(parts)
	return string(b)
}
