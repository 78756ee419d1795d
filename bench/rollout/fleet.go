package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleetdev/fleet/bench/benchkit"
)

// appName names the Deployment and the Service.
const appName = "rollbench"

// manifest is the Deployment, at an image version with extra container
// fields, and its LoadBalancer Service on a loopback port. The rollout
// strategy is left at its default: RollingUpdate, maxSurge and
// maxUnavailable 25%.
const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: rollbench}
spec:
  replicas: %d
  progressDeadlineSeconds: 20
  template:
    metadata: {labels: {app: rollbench}}
    spec:
      containers:
      - name: web
        image: fleet-demo:%s
        ports: [{name: http, containerPort: 8080}]%s
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: rollbench}
spec:
  type: LoadBalancer
  selector: {app: rollbench}
  ports:
  - {name: http, port: %d, targetPort: http}
`

// brokenEnv makes v3 fail its readiness probe for an hour: a version
// that starts but never becomes ready.
const brokenEnv = `
        env: [{name: DEMO_READY_AFTER, value: "1h"}]`

// maxLoad bounds every load run, whatever happens.
const maxLoad = 180 * time.Second

// fleetBench is fleet's side: fleet serve with its load balancer, and the
// Deployment rolled under load.
type fleetBench struct {
	config
	f         fleetCLI
	port      int
	files     map[string]string
	serve     *exec.Cmd
	serveDone chan struct{}
	serveLog  string
	stopOnce  sync.Once
}

func (b *fleetBench) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", b.port) }

// setUp starts fleet serve, applies v1 and waits until all its replicas
// are ready and the load balancer answers.
func (b *fleetBench) setUp(ctx context.Context) {
	b.files = map[string]string{}
	for _, v := range []string{"v1", "v2", "v3"} {
		extra := ""
		if v == "v3" {
			extra = brokenEnv
		}
		path := filepath.Join(b.dir, "rollbench-"+v+".yaml")
		check(os.WriteFile(path, []byte(fmt.Sprintf(manifest, b.replicas, v, extra, b.port)), 0o644))
		b.files[v] = path
	}
	b.startServe()
	b.f.must("apply", "-f", b.files["v1"], "--timeout", b.wait.String())
	var last []pod
	if !waitUntil(b.wait, 500*time.Millisecond, func() bool {
		last, _ = b.f.pods()
		return allOn(last, "fleet-demo:v1", b.replicas)
	}) {
		fatalf("fleet: %d replicas of v1 not ready after %s: %s", b.replicas, b.wait, summary(last))
	}
	client := &http.Client{Timeout: 2 * time.Second}
	ok := 0
	if !waitUntil(b.wait, 100*time.Millisecond, func() bool {
		if version, reason := get(ctx, client, b.url()); reason == "" && version == "v1" {
			ok++
		} else {
			ok = 0
		}
		return ok >= 20
	}) {
		fatalf("fleet's load balancer at %s does not answer after %s (see %s)", b.url(), b.wait, b.serveLog)
	}
}

// startServe starts fleet serve with its load balancer on loopback (no
// Ingress) and waits until it holds the reconcile lease, so that it, not
// the apply, rolls the Deployment out.
func (b *fleetBench) startServe() {
	b.serveLog = filepath.Join(b.dir, "serve.log")
	logf, err := os.Create(b.serveLog)
	check(err)
	cmd := exec.Command(b.f.bin, "serve", "-v", "--lb-address", "127.0.0.1", "--admin-address", "127.0.0.1:0",
		"--ingress-http", "", "--ingress-https", "")
	cmd.Env = b.f.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// serve must not outlive the benchmark, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	check(cmd.Start())
	b.serve, b.serveDone = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(b.serveDone)
	}()
	atExit(b.stopServe)
	if !waitUntil(b.wait, 100*time.Millisecond, func() bool {
		select {
		case <-b.serveDone:
			fatalf("fleet serve exited:\n%s", tail(b.serveLog))
		default:
		}
		log, _ := os.ReadFile(b.serveLog)
		return strings.Contains(string(log), "holding the reconcile lease")
	}) {
		fatalf("fleet serve does not hold the reconcile lease after %s:\n%s", b.wait, tail(b.serveLog))
	}
}

func (b *fleetBench) stopServe() {
	b.stopOnce.Do(func() {
		b.serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.serveDone:
		case <-time.After(30 * time.Second):
			b.serve.Process.Kill()
			<-b.serveDone
		}
	})
}

// tearDown stops serve and deletes the Deployment and the Service, so
// that the hosts run nothing of fleet's for Swarm's turn.
func (b *fleetBench) tearDown() {
	b.stopServe()
	b.f.must("delete", "-f", b.files["v1"])
}

// change is an apply under load: the load runs from just before the
// apply starts, and the apply has recorded the new revision.
type change struct {
	t0    time.Time
	load  *load
	apply *proc
}

func (b *fleetBench) change(version string) change {
	l := startLoad(b.url(), b.rate, b.workers, maxLoad)
	t0 := time.Now()
	ap := b.f.start(t0, b.wait+15*time.Second, "apply", "-f", b.files[version], "--timeout", b.wait.String())
	select {
	case <-ap.recorded:
	case <-ap.done:
	case <-time.After(b.wait):
	}
	select {
	case <-ap.recorded:
	default:
		l.stop()
		fatalf("fleet apply -f %s recorded nothing:\n%s", b.files[version], ap.output())
	}
	return change{t0: t0, load: l, apply: ap}
}

// status runs `fleet rollout status` until it returns or the change's
// time is up, and says when it returned.
func (b *fleetBench) status(c change) (out string, code int, at time.Duration) {
	remaining := max(b.wait-time.Since(c.t0), time.Second).Round(time.Second)
	out, code = b.f.run(remaining+15*time.Second, "rollout", "status", "deploy/"+appName, "--timeout", remaining.String())
	return out, code, time.Since(c.t0)
}

// confirm checks with `fleet get pods` that every replica runs image and
// is ready, until the change's time is up; when the first look already
// shows it, that was true by at, else it is when a later look showed it.
func (b *fleetBench) confirm(c change, image string, at time.Duration) (time.Duration, bool, []pod) {
	var last []pod
	first := true
	ok := waitUntil(max(b.wait-time.Since(c.t0), 0), 500*time.Millisecond, func() bool {
		last, _ = b.f.pods()
		ok := allOn(last, image, b.replicas)
		if ok && !first {
			at = time.Since(c.t0)
		}
		first = false
		return ok
	})
	return at, ok, last
}

// finish waits for the apply to return, lets the load run on for two
// seconds, and stops it.
func (b *fleetBench) finish(c change, p *phase, want string) {
	select {
	case <-c.apply.done:
	case <-time.After(max(b.wait+20*time.Second-time.Since(c.t0), 0)):
	}
	select {
	case <-c.apply.done:
		p.more = append(p.more, fmt.Sprintf("fleet apply: exit %d after %s (%s): %s", c.apply.code, benchkit.Secs(c.apply.took), want, c.apply.lastLine()))
	default:
		p.more = append(p.more, fmt.Sprintf("fleet apply: still running after %s: %s", benchkit.Secs(time.Since(c.t0)), c.apply.lastLine()))
	}
	time.Sleep(2 * time.Second)
	p.load = c.load.stop()
}

// rollout rolls v1 → v2 under load.
func (b *fleetBench) rollout() phase {
	c := b.change("v2")
	var p phase
	out, code, at := b.status(c)
	switch {
	case code != 0:
		pods, _ := b.f.pods()
		p.note = fmt.Sprintf("did not finish in %s", b.wait)
		p.more = append(p.more, fmt.Sprintf("fleet rollout status: exit %d: %s", code, lastLine(out)), "pods: "+summary(pods))
	default:
		wall, ok, pods := b.confirm(c, "fleet-demo:v2", at)
		if ok {
			p.done, p.wall = true, wall
		} else {
			p.note = fmt.Sprintf("rollout status said complete after %s, but the pods were not all v2 and ready in %s", benchkit.Secs(at), b.wait)
			p.more = append(p.more, "pods: "+summary(pods))
		}
	}
	b.finish(c, &p, "want 0")
	return p
}

// rollback applies a v3 that never becomes ready, under load: fleet
// should give up after progressDeadlineSeconds and go back to v2 by
// itself, and `fleet rollout status` say it rolled back (exit 1).
func (b *fleetBench) rollback() phase {
	c := b.change("v3")
	var p phase
	out, code, at := b.status(c)
	rolledBack := code != 0 && strings.Contains(strings.ToLower(out), "rolled back")
	p.more = append(p.more, fmt.Sprintf("fleet rollout status: exit %d after %s (want 1, saying rolled back): %s", code, benchkit.Secs(at), lastLine(out)))
	if rolledBack {
		wall, ok, pods := b.confirm(c, "fleet-demo:v2", at)
		if ok {
			p.done, p.wall = true, wall
		} else {
			p.note = fmt.Sprintf("rollout status reported a rollback after %s, but the pods were not all v2 and ready in %s", benchkit.Secs(at), b.wait)
			p.more = append(p.more, "pods: "+summary(pods))
		}
	} else {
		pods, _ := b.f.pods()
		p.note = fmt.Sprintf("did not roll back in %s", b.wait)
		p.more = append(p.more, "pods: "+summary(pods))
	}
	b.finish(c, &p, "want non-zero")
	return p
}

// fleetCLI runs the fleet binary against the benchmark's sandbox and
// state file.
type fleetCLI struct {
	bin string
	env []string
}

func (f fleetCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = f.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs fleet for at most limit and returns its output and exit code
// (-1 when it could not run or was killed).
func (f fleetCLI) run(limit time.Duration, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := f.command(ctx, args...).CombinedOutput()
	return string(out) + errText(err), exitCode(err)
}

// must runs fleet and ends the benchmark when it fails.
func (f fleetCLI) must(args ...string) string {
	out, code := f.run(5*time.Minute, args...)
	if code != 0 {
		fatalf("fleet %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// errText is err when it is not a plain exit status (which the exit code
// says already).
func errText(err error) string {
	var ee *exec.ExitError
	if err == nil || errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return ""
	}
	return err.Error()
}

// proc is a fleet command running in the background.
type proc struct {
	// recorded is closed when it has printed "deployment.apps/…": the
	// new revision is in the state file.
	recorded chan struct{}
	done     chan struct{}
	code     int
	took     time.Duration

	mu  sync.Mutex
	out strings.Builder
}

// start runs fleet in the background for at most limit; took is counted
// from t0.
func (f fleetCLI) start(t0 time.Time, limit time.Duration, args ...string) *proc {
	p := &proc{recorded: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	cmd := f.command(ctx, args...)
	cmd.Stderr = lockedWriter{p}
	stdout, err := cmd.StdoutPipe()
	check(err)
	check(cmd.Start())
	go func() {
		defer cancel()
		var once sync.Once
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			lockedWriter{p}.Write([]byte(line + "\n"))
			if strings.HasPrefix(line, "deployment.apps/") {
				once.Do(func() { close(p.recorded) })
			}
		}
		io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		p.code, p.took = exitCode(err), time.Since(t0)
		lockedWriter{p}.Write([]byte(errText(err)))
		close(p.done)
	}()
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) lastLine() string { return lastLine(p.output()) }

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// pod is what the benchmark reads of `fleet get pods -o json`.
type pod struct {
	Name   string `json:"name"`
	Owner  string `json:"owner"`
	Status string `json:"status"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
	Image  string `json:"image"`
}

// pods are the Deployment's pods as the machines show them now.
func (f fleetCLI) pods() ([]pod, error) {
	out, code := f.run(30*time.Second, "get", "pods", "-A", "-o", "json")
	if code != 0 {
		return nil, fmt.Errorf("fleet get pods: exit %d: %s", code, lastLine(out))
	}
	var doc struct {
		Items []pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("fleet get pods -o json: %w", err)
	}
	var mine []pod
	for _, p := range doc.Items {
		if p.Owner == appName {
			mine = append(mine, p)
		}
	}
	return mine, nil
}

// allOn says whether exactly n pods run, every one image and ready.
func allOn(pods []pod, image string, n int) bool {
	if len(pods) != n {
		return false
	}
	for _, p := range pods {
		if p.Image != image || p.Status != "Running" || !p.Ready {
			return false
		}
	}
	return true
}

// summary counts pods by image and readiness: "10 pods: 9 fleet-demo:v2
// ready, 1 fleet-demo:v3 not ready (Unready)".
func summary(pods []pod) string {
	count := map[string]int{}
	for _, p := range pods {
		k := p.Image + " ready"
		if !p.Ready {
			k = fmt.Sprintf("%s not ready (%s %s)", p.Image, p.Status, p.Reason)
		}
		count[k]++
	}
	var ks []string
	for k := range count {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d %s", count[k], k))
	}
	return fmt.Sprintf("%d pods: %s", len(pods), strings.Join(parts, ", "))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tail is the end of a log file, for an error message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
