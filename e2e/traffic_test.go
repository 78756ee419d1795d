package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const lbManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: lbweb}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: lbweb}}
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: lbweb}
spec:
  type: LoadBalancer
  selector: {app: lbweb}
  ports:
  - {name: http, port: %d, targetPort: http}
  - {name: raw, port: %d, targetPort: 8080}
`

// freePort is a loopback port free now and handed out once per run, for
// LoadBalancer services and ingress listeners: below the ephemeral range
// (32768 and up), so no outgoing connection takes it meanwhile.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	if nextPort == 0 {
		nextPort = 20000 + os.Getpid()%10000
	}
	for ; nextPort < 32000; nextPort++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", nextPort))
		if err != nil {
			continue
		}
		ln.Close()
		nextPort++
		return nextPort - 1
	}
	t.Fatal("no free loopback port below 32000")
	return 0
}

var (
	portMu   sync.Mutex
	nextPort int
)

// A LoadBalancer Service is served by fleet serve on --lb-address, at L7
// (a port named http) and L4, spread over the ready pods only: a pod
// that stops being ready gets no requests, and none fail.
func TestServe_LoadBalancer(t *testing.T) {
	const state = "lb.db"
	port, port2 := freePort(t), freePort(t)
	_, _, log := startServeLog(t, state, "--lb-address", "127.0.0.1", "--admin-address", "127.0.0.1:0", "--ingress-http", "", "--ingress-https", "")
	m := writeManifest(t, "lb.yaml", fmt.Sprintf(lbManifest, port, port2))
	t.Cleanup(func() { fleet(t, state, "delete", "-f", m) })
	if r := fleet(t, state, "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	// A new connection per request, so that L4 balancing (per
	// connection) shows too.
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	hello := regexp.MustCompile(`hello from (\S+), version v1`)
	spread := func(url string, n int) (map[string]int, int) {
		seen, failed := map[string]int{}, 0
		for range n {
			resp, err := fresh.Get(url)
			if err != nil {
				t.Logf("GET %s: %v", url, err)
				failed++
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := hello.FindStringSubmatch(string(b)); resp.StatusCode == 200 && m != nil {
				seen[m[1]]++
			} else {
				t.Logf("GET %s: %s %q", url, resp.Status, b)
				failed++
			}
		}
		return seen, failed
	}
	l7 := fmt.Sprintf("http://127.0.0.1:%d/", port)
	eventually(t, "the service answering from all 3 ready pods", func() bool {
		seen, _ := spread(l7, 12)
		return len(seen) == 3
	})
	t.Run("L4 on a port not named http", func(t *testing.T) {
		seen, failed := spread(fmt.Sprintf("http://127.0.0.1:%d/", port2), 12)
		if failed > 0 || len(seen) < 2 {
			t.Fatalf("through the TCP proxy: %d failed, pods %v", failed, seen)
		}
	})
	t.Run("get svc and get endpoints show the ready pods", func(t *testing.T) {
		// Readiness reaches the state file with serve's next pass.
		var svc string
		defer func() {
			if t.Failed() {
				t.Logf("get svc:\n%s\nget pods,endpoints -o wide:\n%s", svc, fleet(t, state, "get", "pods,endpoints", "-o", "wide").stdout)
			}
		}()
		eventually(t, "get svc to show every endpoint ready", func() bool {
			svc = fleet(t, state, "get", "svc").stdout
			return strings.Contains(svc, "6/6 ready") && strings.Contains(svc, "LoadBalancer")
		})
		ep := fleet(t, state, "get", "endpoints").stdout
		if strings.Count(ep, ":") < 6 {
			t.Errorf("get endpoints:\n%s", ep)
		}
	})
	t.Run("a pod that stops being ready gets no requests, and none fail", func(t *testing.T) {
		pods := getPodsJSON(t, state, "lbweb")
		victim := pods[0]
		hostExec(t, victim.Node, "docker", "pause", victim.ContainerID)
		defer hostExec(t, victim.Node, "docker", "unpause", victim.ContainerID)
		eventually(t, "the paused pod unready", func() bool {
			for _, p := range getPodsJSON(t, state, "lbweb") {
				if p.Name == victim.Name {
					return !p.Ready
				}
			}
			return false
		})
		// This process saw the pause itself; serve's load balancer
		// hears of it from its probes or its next pass, a moment later.
		quick := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		eventually(t, "the load balancer to leave the paused pod out", func() bool {
			for range 6 {
				resp, err := quick.Get(l7)
				if err != nil {
					return false
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || strings.Contains(string(b), victim.Name) {
					return false
				}
			}
			return true
		})
		seen, failed := spread(l7, 30)
		if failed > 0 || len(seen) != 2 {
			t.Fatalf("with one pod unready: %d failed, pods %v", failed, seen)
		}
	})
	t.Run("scaling down under a stream of requests fails none of them", func(t *testing.T) {
		// Pods to be stopped leave the load balancer first and finish
		// their requests in flight.
		stop := make(chan struct{})
		done := make(chan [2]int)
		go func() {
			ok, failed := 0, 0
			for {
				select {
				case <-stop:
					done <- [2]int{ok, failed}
					return
				default:
				}
				resp, err := client.Get(l7)
				if err != nil {
					failed++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok++
				} else {
					failed++
				}
			}
		}()
		r := fleet(t, state, "scale", "deploy/lbweb", "--replicas=1")
		close(stop)
		n := <-done
		if r.code != 0 {
			t.Fatalf("scale: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if n[1] > 0 || n[0] < 10 {
			t.Fatalf("%d requests answered, %d failed while two pods stopped", n[0], n[1])
		}
		t.Logf("%d requests during the scale-down, none failed", n[0])
	})
	t.Run("metrics on the admin address", func(t *testing.T) {
		addr := regexp.MustCompile(`address=(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(log.String())
		if addr == nil {
			t.Fatalf("no metrics address in serve's log:\n%s", log.String())
		}
		resp, err := client.Get(addr[1])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		route := fmt.Sprintf(`route="default/lbweb:%d"`, port)
		for _, want := range []string{"fleet_lb_requests_total{", route, "fleet_lb_request_duration_seconds_bucket{", "fleet_lb_endpoint_healthy{"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s:\n%s", want, body)
			}
		}
		if promtool, err := exec.LookPath("promtool"); err == nil {
			check := exec.Command(promtool, "check", "metrics")
			check.Stdin = strings.NewReader(string(body))
			if out, err := check.CombinedOutput(); err != nil {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}
		}
	})
}

const nodePortManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: np}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: np}}
    spec:
      containers:
      - name: web
        image: fleet-demo:v1
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  selector: {app: np}
  ports: [{port: 80, targetPort: http}]
`

// A NodePort Service gets a node port allocated at apply, and its pods
// answer on it on the machines they run on (and only there).
func TestServe_NodePort(t *testing.T) {
	const state = "nodeport.db"
	startServe(t, state, "--lb-address", "127.0.0.1", "--ingress-http", "", "--ingress-https", "")
	m := writeManifest(t, "np.yaml", nodePortManifest)
	t.Cleanup(func() { fleet(t, state, "delete", "-f", m) })
	r := fleet(t, state, "apply", "-f", m)
	if r.code != 0 || !strings.Contains(r.stdout, "node port 30000 is published") {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	nodes, _ := getNodes(t, state)
	pods := getPodsJSON(t, state, "np")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	used := map[string]bool{}
	for _, p := range pods {
		used[p.Node] = true
		url := fmt.Sprintf("http://%s:30000/", nodes[p.Node].Address)
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("%s (pod %s): %v", url, p.Name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "hello from "+p.Name) {
			t.Errorf("%s answered %q, want pod %s", url, b, p.Name)
		}
	}
	for name, n := range nodes {
		if used[name] {
			continue
		}
		if resp, err := client.Get(fmt.Sprintf("http://%s:30000/", n.Address)); err == nil {
			resp.Body.Close()
			t.Errorf("%s runs no pod of the service but answers on its node port", name)
		}
		break
	}
	if svc := fleet(t, state, "get", "svc").stdout; !strings.Contains(svc, "80:30000/TCP") {
		t.Errorf("get svc does not show the node port:\n%s", svc)
	}
}
