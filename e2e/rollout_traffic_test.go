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
        env: [{name: DEMO_READY_AFTER, value: %q}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
          failureThreshold: 1
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
	port := lbPort() + 10
	startServe(t, state, "--lb-address", "127.0.0.1", "--admin-address", "", "--ingress-http", "", "--ingress-https", "")
	manifest := func(name, version, readyAfter string) string {
		return writeManifest(t, name, fmt.Sprintf(rollManifest, version, readyAfter, port))
	}
	v1, v2 := manifest("roll-v1.yaml", "v1", "0s"), manifest("roll-v2.yaml", "v2", "0s")
	v3 := manifest("roll-v3.yaml", "v2", "1h") // never ready
	t.Cleanup(func() { fleet(t, state, "delete", "-f", v1) })
	if r := fleet(t, state, "apply", "-f", v1); r.code != 0 {
		t.Fatalf("apply v1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
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
	t.Run("undo goes back to v1 and fails no request", func(t *testing.T) {
		l.reset()
		if r := fleet(t, state, "rollout", "undo", "deploy/roll"); r.code != 0 {
			t.Fatalf("undo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		eventually(t, "only v1 answering", func() bool { return l.onlyLately("v1", 100) })
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
