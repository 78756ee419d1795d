// Package benchkit holds what the benchmark commands share: a Docker Swarm
// on the sandbox hosts (the peer they measure against), and reporting. It
// is never imported by fleet itself.
package benchkit

import (
	"context"
	"fmt"
	"log"
	"sort"
	"strings"
	"time"

	"github.com/fleetdev/fleet/sandbox"
)

// Swarm makes the sandbox's hosts one Docker Swarm with the first host as
// manager. run executes a command on a host and exits the benchmark when
// it fails; leave takes the Swarm down again.
func Swarm(ctx context.Context, sb *sandbox.Sandbox) (mgr sandbox.Host, run func(host string, argv ...string) string, leave func()) {
	hs, err := sb.Hosts(ctx)
	Check(err)
	mgr = hs[0]
	run = func(host string, argv ...string) string {
		code, out, err := sb.Exec(ctx, host, argv...)
		if err != nil || code != 0 {
			log.Fatalf("%s: %s: exit %d: %v\n%s", host, strings.Join(argv, " "), code, err, out)
		}
		return strings.TrimSpace(out)
	}
	leave = func() {
		for _, h := range hs {
			sb.Exec(context.Background(), h.Name, "docker", "swarm", "leave", "--force")
		}
	}
	leave() // leftovers of an interrupted run
	run(mgr.Name, "docker", "swarm", "init", "--advertise-addr", mgr.Address)
	token := run(mgr.Name, "docker", "swarm", "join-token", "-q", "worker")
	for _, h := range hs[1:] {
		run(h.Name, "docker", "swarm", "join", "--token", token, mgr.Address+":2377")
	}
	return mgr, run, leave
}

// P50 is the median of d.
func P50(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Secs prints d in seconds with two decimals.
func Secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// Check ends the benchmark on err.
func Check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
