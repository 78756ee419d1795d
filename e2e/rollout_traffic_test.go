package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// load sends GETs to url from a few keep-alive clients until stopped,
// counting answers by the version that gave them (X-Demo-Version).
type load struct {
	url    string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	versions map[string]int
	failed   []string
	// last holds the most recent answers' versions, in order.
	last []string
}

func startLoad(t *testing.T, url string) *load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	l := &load{url: url, cancel: cancel, versions: map[string]int{}}
	for range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for ctx.Err() == nil {
				l.once(ctx, c)
				time.Sleep(5 * time.Millisecond) // about 600 requests/s at most, bounded
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

func (l *load) once(ctx context.Context, c *http.Client) {
	req, _ := http.NewRequestWithContext(ctx, "GET", l.url, nil)
	resp, err := c.Do(req)
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed = append(l.failed, err.Error())
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	v := resp.Header.Get("X-Demo-Version")
	if resp.StatusCode != 200 {
		l.failed = append(l.failed, fmt.Sprintf("%s from %s", resp.Status, v))
		return
	}
	l.versions[v]++
	l.last = append(l.last, v)
	if len(l.last) > 200 {
		l.last = l.last[len(l.last)-200:]
	}
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// reset starts counting afresh.
func (l *load) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.versions, l.failed, l.last = map[string]int{}, nil, nil
}

func (l *load) snapshot() (versions map[string]int, failed []string, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	versions = map[string]int{}
	for k, v := range l.versions {
		versions[k] = v
		total += v
	}
	return versions, append([]string(nil), l.failed...), total + len(l.failed)
}

// onlyLately reports whether the last n answers all came from version v.
func (l *load) onlyLately(v string, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) < n {
		return false
	}
	for _, got := range l.last[len(l.last)-n:] {
		if got != v {
			return false
		}
	}
	return true
}

// checkNoFailures fails t if any request failed, and logs the counts.
func (l *load) checkNoFailures(t *testing.T, what string) map[string]int {
	t.Helper()
	versions, failed, total := l.snapshot()
	t.Logf("%s: %d requests, answers by version %v, %d failed", what, total, versions, len(failed))
	if len(failed) > 0 {
		t.Errorf("%s: %d of %d requests failed; first: %s", what, len(failed), total, failed[0])
	}
	if total < 50 {
		t.Errorf("%s: only %d requests were sent", what, total)
	}
	return versions
}

const rollManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: roll}
spec:
  replicas: 10
  progressDeadlineSeconds: 15
  template:
    metadata: {labels: {app: roll}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: fleet-demo:%s
        env: [{name: DEMO_READY_AFTER, value: %q}, {name: DEMO_EXIT_AFTER, value: %q}]
        envFrom: [{configMapRef: {name: roll}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: ConfigMap
metadata: {name: roll}
data: {NOTE: one}
---
apiVersion: v1
kind: Service
metadata: {name: roll}
spec:
  type: LoadBalancer
  selector: {app: roll}
  ports: [{name: http, port: %d, targetPort: http}]
`

// A rolling update of ten replicas under a steady stream of requests
// through fleet's load balancer fails none of them, and the answers move
// from v1 to v2; so does an undo; a v3 that never becomes ready is rolled
// back by itself, with no request failing; a machine killed in the middle
// of a rollout does not stop it from converging.
func TestRollout_UnderTraffic(t *testing.T) {
	const state = "roll.db"
	port := freePort(t)
	startServe(t, state, "--lb-address", "127.0.0.1", "--admin-address", "", "--ingress-http", "", "--ingress-https", "")
	manifest := func(name, version, readyAfter, exitAfter string) string {
		return writeManifest(t, name, fmt.Sprintf(rollManifest, version, readyAfter, exitAfter, port))
	}
	v1, v2 := manifest("roll-v1.yaml", "v1", "0s", ""), manifest("roll-v2.yaml", "v2", "0s", "")
	v3 := manifest("roll-v3.yaml", "v2", "1h", "")      // never ready
	v4 := manifest("roll-v4.yaml", "v2", "1s", "300ms") // crash-loops before it is ready
	t.Cleanup(func() { fleet(t, state, "delete", "-f", v1) })
	applyComplete(t, state, v1, "roll")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	l := startLoad(t, url)
	eventually(t, "v1 answering through the load balancer", func() bool { return l.onlyLately("v1", 50) })
	images := func() map[string]int {
		out := map[string]int{}
		for _, p := range getPodsJSON(t, state, "roll") {
			if p.Ready {
				out[p.Image]++
			}
		}
		return out
	}

	t.Run("v1 to v2 fails no request", func(t *testing.T) {
		l.reset()
		if r := fleet(t, state, "apply", "-f", v2); r.code != 0 {
			t.Fatalf("apply v2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := fleet(t, state, "rollout", "status", "deploy/roll", "--timeout", "60s"); r.code != 0 {
			t.Fatalf("rollout status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		eventually(t, "only v2 answering", func() bool { return l.onlyLately("v2", 100) })
		got := l.checkNoFailures(t, "v1 → v2")
		if got["v1"] == 0 || got["v2"] == 0 {
			t.Errorf("answers %v: want both versions during the rollout", got)
		}
		if im := images(); im["fleet-demo:v2"] != 10 || len(im) != 1 {
			t.Errorf("ready pods by image after the rollout: %v", im)
		}
	})
	t.Run("editing the ConfigMap the pods consume rolls them and fails no request", func(t *testing.T) {
		before := map[string]bool{}
		for _, p := range getPodsJSON(t, state, "roll") {
			before[p.Name] = true
		}
		l.reset()
		cm := writeManifest(t, "roll-cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: roll}\ndata: {NOTE: two}\n")
		if r := fleet(t, state, "apply", "-f", cm); r.code != 0 {
			t.Fatalf("apply the ConfigMap: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		eventually(t, "ten ready pods, none of them from before the edit", func() bool {
			pods := getPodsJSON(t, state, "roll")
			for _, p := range pods {
				if before[p.Name] || !p.Ready {
					return false
				}
			}
			return len(pods) == 10
		})
		time.Sleep(time.Second) // answers after the last replacement
		l.checkNoFailures(t, "the ConfigMap edit")
	})
	t.Run("undo goes back to v1 and fails no request", func(t *testing.T) {
		l.reset()
		if r := fleet(t, state, "rollout", "undo", "deploy/roll"); r.code != 0 {
			t.Fatalf("undo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		eventually(t, "only v1 answering", func() bool { return l.onlyLately("v1", 100) })
		if r := fleet(t, state, "rollout", "status", "deploy/roll", "--timeout", "60s"); r.code != 0 {
			t.Fatalf("rollout status after the undo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		got := l.checkNoFailures(t, "undo")
		if got["v1"] == 0 || got["v2"] == 0 {
			t.Errorf("answers %v: want both versions during the undo", got)
		}
	})
	t.Run("a v3 that never becomes ready is rolled back by itself", func(t *testing.T) {
		l.reset()
		r := fleet(t, state, "apply", "-f", v3)
		if r.code == 0 || !strings.Contains(r.stderr, "rolled back") || !strings.Contains(r.stderr, "progressDeadlineSeconds") {
			t.Fatalf("apply v3: exit %d, want 1 saying it was rolled back\n%s%s", r.code, r.stdout, r.stderr)
		}
		st := fleet(t, state, "rollout", "status", "deploy/roll", "--timeout", "60s")
		if st.code != 1 || !strings.Contains(st.stderr, "rolled back") {
			t.Errorf("rollout status after the rollback: exit %d, want 1 saying so\n%s%s", st.code, st.stdout, st.stderr)
		}
		h := fleet(t, state, "rollout", "history", "deploy/roll").stdout
		if !strings.Contains(h, "automatic rollback: revision") {
			t.Errorf("history lacks the automatic rollback:\n%s", h)
		}
		ev := fleet(t, state, "get", "events").stdout
		if !strings.Contains(ev, "RolloutFailed") || !strings.Contains(ev, "RolledBack") {
			t.Errorf("events lack RolloutFailed and RolledBack:\n%s", ev)
		}
		eventually(t, "ten ready v1 pods again", func() bool {
			im := images()
			return im["fleet-demo:v1"] == 10 && len(im) == 1
		})
		got := l.checkNoFailures(t, "broken v3")
		if got["v2"] > 0 {
			t.Errorf("answers %v: the broken v3 (image v2) answered requests", got)
		}
	})
	t.Run("a crash-looping v4 is rolled back by itself", func(t *testing.T) {
		l.reset()
		r := fleet(t, state, "apply", "-f", v4)
		if r.code == 0 || !strings.Contains(r.stderr, "crash-looping") {
			t.Fatalf("apply v4: exit %d, want 1 saying it crash-loops\n%s%s", r.code, r.stdout, r.stderr)
		}
		eventually(t, "ten ready v1 pods again", func() bool {
			im := images()
			return im["fleet-demo:v1"] == 10 && len(im) == 1
		})
		l.checkNoFailures(t, "crash-looping v4")
	})
	t.Run("a machine killed mid-rollout: the rollout still converges", func(t *testing.T) {
		if r := fleet(t, state, "apply", "-f", v2, "--wait=false"); r.code != 0 {
			t.Fatalf("apply v2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var victim string
		eventually(t, "a v2 pod running", func() bool {
			for _, p := range getPodsJSON(t, state, "roll") {
				if p.Image == "fleet-demo:v2" {
					victim = p.Node
					return true
				}
			}
			return false
		})
		if err := sb.Kill(context.Background(), victim); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Start(context.Background(), victim) })
		if r := fleet(t, state, "rollout", "status", "deploy/roll", "--timeout", "120s"); r.code != 0 {
			t.Fatalf("rollout status with %s killed: exit %d\n%s%s", victim, r.code, r.stdout, r.stderr)
		}
		for _, p := range getPodsJSON(t, state, "roll") {
			if p.Node == victim && p.Status != "Unknown" {
				t.Errorf("pod %s on the killed %s is %s", p.Name, victim, p.Status)
			}
		}
		if im := images(); im["fleet-demo:v2"] != 10 {
			t.Errorf("ready pods by image: %v, want 10 of v2", im)
		}
		if err := sb.Start(context.Background(), victim); err != nil {
			t.Fatal(err)
		}
	})
}

const stagedManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  progressDeadlineSeconds: 20
  strategy:
%[3]s
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: fleet-demo:%[4]s
        env: [{name: DEMO_ERROR_PERCENT, value: %[5]q}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  type: LoadBalancer
  selector: {app: %[1]s}
  ports: [{name: http, port: %[6]d, targetPort: http}]
`

// share is the fraction of answers from version v among n fresh ones.
func (l *load) share(t *testing.T, v string, n int) (float64, []string) {
	t.Helper()
	l.reset()
	deadline := time.Now().Add(time.Minute)
	for {
		versions, failed, total := l.snapshot()
		if total >= n {
			return float64(versions[v]) / float64(total), failed
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d answers in a minute", total)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A canary takes the share of requests its step gives it at fleet's load
// balancer, 25% then 50%, each held until `fleet rollout promote`, then
// everything; no request fails. A canary whose answers fail more than
// its analysis allows is rolled back by itself.
func TestRollout_Canary(t *testing.T) {
	const state = "canary.db"
	port := freePort(t)
	startServe(t, state, "--lb-address", "127.0.0.1", "--admin-address", "", "--ingress-http", "", "--ingress-https", "")
	strategy := `    type: Canary
    canary:
      steps: [{setWeight: 25}, {pause: {}}, {setWeight: 50}, {pause: {}}]
      analysis: {maxErrorRate: 10%, minRequests: 20}`
	manifest := func(file, version, errorPercent string) string {
		return writeManifest(t, file, fmt.Sprintf(stagedManifest, "can", 4, strategy, version, errorPercent, port))
	}
	v1, v2, v3 := manifest("can-v1.yaml", "v1", "0"), manifest("can-v2.yaml", "v2", "0"), manifest("can-v3.yaml", "v1", "100")
	t.Cleanup(func() { fleet(t, state, "delete", "-f", v1) })
	applyComplete(t, state, v1, "can")
	l := startLoad(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	eventually(t, "v1 answering", func() bool { return l.onlyLately("v1", 50) })

	r := fleet(t, state, "apply", "-f", v2)
	if r.code != 0 || !strings.Contains(r.stdout, "canary at 25%") || !strings.Contains(r.stdout, "fleet rollout promote") {
		t.Fatalf("apply v2: exit %d, want 0 saying the canary waits at 25%%\n%s%s", r.code, r.stdout, r.stderr)
	}
	var failed []string
	check := func(step string, want float64) {
		t.Helper()
		got, f := l.share(t, "v2", 400)
		failed = append(failed, f...)
		t.Logf("%s: v2 answered %.1f%% of 400 requests", step, 100*got)
		if got < want-0.07 || got > want+0.07 {
			t.Errorf("%s: v2 answered %.1f%%, want %.0f%% ± 7", step, 100*got, 100*want)
		}
	}
	check("step 1 (setWeight 25)", 0.25)
	if st := fleet(t, state, "rollout", "status", "deploy/can", "--timeout", "5s"); st.code != 1 || !strings.Contains(st.stderr, "paused") {
		t.Errorf("rollout status at a pause: exit %d, want 1 saying it is paused\n%s%s", st.code, st.stdout, st.stderr)
	}
	if r := fleet(t, state, "rollout", "promote", "deploy/can"); r.code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, "the canary at 50%", func() bool {
		st := fleet(t, state, "rollout", "status", "deploy/can", "--timeout", "1s")
		return strings.Contains(st.stderr, "canary at 50%") && strings.Contains(st.stderr, "paused")
	})
	check("step 3 (setWeight 50)", 0.50)
	if r := fleet(t, state, "rollout", "promote", "deploy/can"); r.code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st := fleet(t, state, "rollout", "status", "deploy/can", "--timeout", "60s"); st.code != 0 {
		t.Fatalf("rollout status after the last promote: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	eventually(t, "only v2 answering", func() bool { return l.onlyLately("v2", 100) })
	if pods := getPodsJSON(t, state, "can"); len(pods) != 4 {
		t.Errorf("%d pods after the canary, want 4", len(pods))
	}
	_, f, _ := l.snapshot()
	if failed = append(failed, f...); len(failed) > 0 {
		t.Errorf("%d requests failed during the canary; first: %s", len(failed), failed[0])
	}

	t.Run("a canary failing its analysis is rolled back", func(t *testing.T) {
		if r := fleet(t, state, "apply", "-f", v3, "--wait=false"); r.code != 0 {
			t.Fatalf("apply v3: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var st result
		eventually(t, "the failing canary rolled back", func() bool {
			st = fleet(t, state, "rollout", "status", "deploy/can", "--timeout", "1s")
			return strings.Contains(st.stderr, "rolled back")
		})
		if !strings.Contains(st.stderr, "error rate") {
			t.Errorf("rollout status does not say why: %s", st.stderr)
		}
		l.reset()
		eventually(t, "only v2 answering again", func() bool { return l.onlyLately("v2", 200) })
		if _, f, _ := l.snapshot(); len(f) > 0 {
			t.Errorf("%d requests failed after the rollback; first: %s", len(f), f[0])
		}
		eventually(t, "the canary's pod gone", func() bool { return len(getPodsJSON(t, state, "can")) == 4 })
	})
}

// Blue-green: the complete new set comes up beside the old one and gets
// no traffic until `fleet rollout promote`, then all of it at once; the
// old set stays for scaleDownDelaySeconds, then goes. No request fails.
func TestRollout_BlueGreen(t *testing.T) {
	const state = "bluegreen.db"
	port := freePort(t)
	startServe(t, state, "--lb-address", "127.0.0.1", "--admin-address", "", "--ingress-http", "", "--ingress-https", "")
	strategy := `    type: BlueGreen
    blueGreen: {autoPromotionEnabled: false, scaleDownDelaySeconds: 5}`
	manifest := func(file, version string) string {
		return writeManifest(t, file, fmt.Sprintf(stagedManifest, "bg", 3, strategy, version, "0", port))
	}
	v1, v2 := manifest("bg-v1.yaml", "v1"), manifest("bg-v2.yaml", "v2")
	t.Cleanup(func() { fleet(t, state, "delete", "-f", v1) })
	applyComplete(t, state, v1, "bg")
	l := startLoad(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
	eventually(t, "v1 answering", func() bool { return l.onlyLately("v1", 50) })
	r := fleet(t, state, "apply", "-f", v2)
	if r.code != 0 || !strings.Contains(r.stdout, "fleet rollout promote") {
		t.Fatalf("apply v2: exit %d, want 0 saying the new set waits for promote\n%s%s", r.code, r.stdout, r.stderr)
	}
	ready := map[string]int{}
	for _, p := range getPodsJSON(t, state, "bg") {
		if p.Ready {
			ready[p.Image]++
		}
	}
	if ready["fleet-demo:v1"] != 3 || ready["fleet-demo:v2"] != 3 {
		t.Errorf("ready pods by image before the switch: %v, want 3 and 3", ready)
	}
	if got, _ := l.share(t, "v2", 300); got != 0 {
		t.Errorf("the new set answered %.1f%% of requests before the switch", 100*got)
	}
	if r := fleet(t, state, "rollout", "promote", "deploy/bg"); r.code != 0 {
		t.Fatalf("promote: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, "only v2 answering", func() bool { return l.onlyLately("v2", 100) })
	if n := len(getPodsJSON(t, state, "bg")); n != 6 {
		t.Errorf("%d pods just after the switch, want the old set kept (6)", n)
	}
	if st := fleet(t, state, "rollout", "status", "deploy/bg", "--timeout", "60s"); st.code != 0 {
		t.Fatalf("rollout status: exit %d\n%s%s", st.code, st.stdout, st.stderr)
	}
	if n := len(getPodsJSON(t, state, "bg")); n != 3 {
		t.Errorf("%d pods after scaleDownDelaySeconds, want 3", n)
	}
	if _, f, total := l.snapshot(); len(f) > 0 {
		t.Errorf("%d of %d requests failed; first: %s", len(f), total, f[0])
	}
}

// applyComplete applies manifest and waits until deploy/name's rollout is
// complete (every pod ready, as serve's probes say): only then is its
// revision the stable one a canary or blue-green rollout starts from.
func applyComplete(t *testing.T, state, manifest, name string) {
	t.Helper()
	if r := fleet(t, state, "apply", "-f", manifest); r.code != 0 {
		t.Fatalf("apply %s: exit %d\n%s%s", manifest, r.code, r.stdout, r.stderr)
	}
	if r := fleet(t, state, "rollout", "status", "deploy/"+name, "--timeout", "60s"); r.code != 0 {
		t.Fatalf("rollout status after applying %s: exit %d\n%s%s", manifest, r.code, r.stdout, r.stderr)
	}
}
