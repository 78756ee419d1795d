// Command lb is `go run ./bench/lb`: fleet's embedded load balancer as an
// HTTP/1.1 reverse proxy, against nginx and HAProxy, on this machine over
// loopback. Each proxy gets one core (cpu1) and forwards to the same two
// nginx backends; wrk and the backends share the other core (cpu0). For a
// 64-byte and a 4 KiB body it reports requests/s, p50 and p99 latency,
// the proxy's CPU use (near 100% shows the proxy, not the load side, is
// the bottleneck) and how many upstream connections each proxy opened
// during the measured run, counted by the backend's stub_status.
//
// Then the same over HTTPS, the proxies terminating TLS with one
// certificate: fleet's Ingress server (the code `fleet serve` runs for an
// Ingress with a tls section), nginx and HAProxy.
//
// Missing tools are installed with apt-get. Every server is the
// benchmark's own process with a config in a temp dir; the system's nginx
// and haproxy services are never touched.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetdev/fleet/bench/benchkit"
)

// The proxy under test has cpu1 to itself; the load side (wrk and the
// backends) has cpu0.
const (
	proxyCPU = 1
	loadCPU  = 0
)

const warmup = 2 * time.Second

// Other engineers' builds and tests may share this machine. A run in
// which other processes took more than quiet of a core is run again, up
// to retries times, and the least disturbed one is kept.
const (
	quiet   = 0.05
	retries = 2
)

type options struct {
	duration    time.Duration
	connections int
	keep        bool
}

// body is one response size the benchmark measures.
type body struct {
	label string // as printed
	path  string
	size  int
}

var bodies = []body{{"64 B", "/64", 64}, {"4 KiB", "/4k", 4096}}

// leg is one protocol the proxies are measured over, with the issue's
// targets for fleet against nginx.
type leg struct {
	prefix string  // before the body label on each line
	rpsMin float64 // fleet/nginx requests/s
	p99Max float64 // fleet/nginx p99; 0: none
}

var (
	plainLeg = leg{prefix: "", rpsMin: 1.0, p99Max: 1.0}
	httpsLeg = leg{prefix: "https ", rpsMin: 0.9}
)

// proxy is one of the three proxies under test.
type proxy struct {
	name string
	srv  *server
	port int
}

// measurement is one measured wrk run through a proxy.
type measurement struct {
	wrk      wrkResult
	cpu      float64 // share of its one core the proxy used
	loadBusy float64 // share of cpu0 (wrk and the backends) that was busy
	opened   int64   // connections the backends accepted during the run
	// Shares of cpu0 and cpu1 that processes other than the benchmark's
	// (or another VM: steal) took: noise that makes the run unreliable.
	foreignLoad, foreignProxy float64
}

func main() {
	log.SetFlags(0)
	if len(os.Args) > 1 && os.Args[1] == childFlag {
		log.SetPrefix("fleet lb child: ")
		benchkit.Check(runFleetChild(os.Args[2:]))
		return
	}
	if len(os.Args) > 1 && os.Args[1] == httpsChildFlag {
		log.SetPrefix("fleet https child: ")
		benchkit.Check(runFleetHTTPSChild(os.Args[2:]))
		return
	}
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured wrk run, after a 2s warm-up (whole seconds)")
	flag.IntVar(&o.connections, "connections", 64, "wrk keep-alive connections")
	flag.BoolVar(&o.keep, "keep", false, "leave the temp dir with the configs and logs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	if ctx.Err() != nil {
		err = fmt.Errorf("interrupted, servers stopped: %w", err)
	}
	stop()
	benchkit.Check(err)
}

// run is the benchmark. Its defers stop every server it started and
// remove the temp dir, on failure and on a signal (ctx) too.
func run(ctx context.Context, o options) error {
	if runtime.NumCPU() < 2 {
		return fmt.Errorf("need 2 cpus, one for the proxy and one for wrk and the backends; have %d", runtime.NumCPU())
	}
	if o.connections < 1 || o.duration < time.Second {
		return errors.New("need -connections >= 1 and -duration >= 1s")
	}
	ts, err := ensureTools(ctx)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-lb-")
	if err != nil {
		return err
	}
	if o.keep {
		defer log.Printf("bench-lb: configs and logs kept in %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	// Started as root, nginx's workers run as nobody and must reach their
	// temp dirs inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	cert, err := writeCert(dir)
	if err != nil {
		return err
	}
	// Readiness checks trust only the benchmark's CA, so an HTTPS proxy
	// that answers is also known to present the certificate.
	ready := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.roots}}}
	var servers []*server
	defer func() {
		for i := len(servers) - 1; i >= 0; i-- {
			servers[i].stop()
		}
	}()
	start := func(name string, cpu int, withStdin bool, logs []string, url string, argv ...string) (*server, error) {
		s, err := startPinned(dir, name, ts.taskset, cpu, withStdin, logs, argv...)
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
		if err := s.waitReady(ctx, ready, url); err != nil {
			return nil, err
		}
		return s, s.checkPinned(cpu)
	}

	ports, err := freePorts(9)
	if err != nil {
		return err
	}
	backendPorts := [2]int{ports[0], ports[1]}
	backends := []string{addr(ports[0]), addr(ports[1])}
	statusURL := "http://" + addr(ports[2]) + "/status"

	bp := filepath.Join(dir, "backend")
	if err := writeNginxPrefix(bp, backendConf(bp, backendPorts, ports[2])); err != nil {
		return err
	}
	backend, err := start("backend-nginx", loadCPU, false, []string{filepath.Join(bp, "error.log")}, "http://"+backends[0]+"/64",
		nginxArgv(ts.nginx, bp)...)
	if err != nil {
		return err
	}
	if err := verifyBodies(ctx, nil, "http://"+backends[0], "http://"+backends[1]); err != nil {
		return err
	}

	// The proxies.
	fleet := &proxy{name: "fleet", port: ports[3]}
	ngx := &proxy{name: "nginx", port: ports[4]}
	hap := &proxy{name: "haproxy", port: ports[5]}
	if fleet.srv, err = start("fleet-lb", proxyCPU, true, nil, httpURL(fleet.port, "/64"),
		fleetArgv(exe, addr(fleet.port), backends)...); err != nil {
		return err
	}
	np := filepath.Join(dir, "proxy-nginx")
	if err := writeNginxPrefix(np, nginxProxyConf(np, ngx.port, backends, nil)); err != nil {
		return err
	}
	if ngx.srv, err = start("proxy-nginx", proxyCPU, false, []string{filepath.Join(np, "error.log")}, httpURL(ngx.port, "/64"),
		nginxArgv(ts.nginx, np)...); err != nil {
		return err
	}
	hcfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hcfg, []byte(haproxyConf(hap.port, backends, nil)), 0o644); err != nil {
		return err
	}
	if hap.srv, err = start("proxy-haproxy", proxyCPU, false, nil, httpURL(hap.port, "/64"),
		ts.haproxy, "-f", hcfg, "-db", "-p", filepath.Join(dir, "haproxy.pid")); err != nil {
		return err
	}
	proxies := []*proxy{fleet, ngx, hap}
	for _, p := range proxies {
		if err := verifyBodies(ctx, nil, "http://"+addr(p.port)); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	tlsProxies, err := startHTTPS(dir, exe, ts, ports[6:9], backends, cert, start)
	if err != nil {
		return err
	}
	for _, p := range tlsProxies {
		if err := verifyBodies(ctx, cert.roots, httpsURL(p.port, "")); err != nil {
			return fmt.Errorf("%s https: %w", p.name, err)
		}
	}

	secs := int(o.duration.Round(time.Second) / time.Second)
	fmt.Printf("bench-lb  %s  cpus=%d  proxy pinned to cpu%d, wrk+backends to cpu%d  go=%s  nginx %s  haproxy %s  wrk %s\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), proxyCPU, loadCPU, runtime.Version(),
		ts.nginxVersion, ts.haproxyVersion, ts.wrkVersion)
	fmt.Printf("wrk -t1 -c%d -d%ds --latency after a %s warm-up; one nginx backend (1 worker) on 2 ports; each proxy 1 worker/thread/P\n",
		o.connections, secs, warmup)

	hz := clockTicks()
	var failed, noisy []string
	for _, b := range bodies {
		log.Printf("bench-lb: %s: wrk straight to a backend, no proxy", b.label)
		direct, err := measureQuiet(ctx, ts, o, hz, backend, nil, "http://"+backends[0]+b.path, statusURL)
		if err != nil {
			return err
		}
		ms := map[string]measurement{}
		for _, p := range proxies {
			log.Printf("bench-lb: %s: %s", b.label, p.name)
			m, err := measureQuiet(ctx, ts, o, hz, backend, p.srv, httpURL(p.port, b.path), statusURL)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			ms[p.name] = m
		}
		f, n := report(plainLeg, b, proxies, ms, &direct)
		failed, noisy = append(failed, f...), append(noisy, n...)
	}

	var suites []string
	for _, p := range tlsProxies {
		suites = append(suites, p.name+" "+negotiated(ctx, p.port))
	}
	fmt.Printf("https: every proxy terminates TLS with the same ECDSA P-256 certificate (bench.test, 127.0.0.1) and offers h2 and http/1.1 (wrk speaks HTTP/1.1); fleet is its Ingress server; wrk's OpenSSL negotiates %s\n",
		strings.Join(suites, ", "))
	for _, b := range bodies {
		ms := map[string]measurement{}
		for _, p := range tlsProxies {
			log.Printf("bench-lb: https %s: %s", b.label, p.name)
			m, err := measureQuiet(ctx, ts, o, hz, backend, p.srv, httpsURL(p.port, b.path), statusURL)
			if err != nil {
				return fmt.Errorf("%s https: %w", p.name, err)
			}
			ms[p.name] = m
		}
		f, n := report(httpsLeg, b, tlsProxies, ms, nil)
		failed, noisy = append(failed, f...), append(noisy, n...)
	}
	if len(noisy) > 0 {
		log.Printf("bench-lb: other processes disturbed %s", strings.Join(noisy, ", "))
	}
	if len(failed) > 0 {
		return fmt.Errorf("wrk counted errors (%s): the results above are invalid", strings.Join(failed, "; "))
	}
	return nil
}

// report prints the lines for one body size over one leg and returns
// the runs that had errors and those that other processes disturbed.
// direct, wrk straight to a backend, may be nil.
func report(lg leg, b body, proxies []*proxy, ms map[string]measurement, direct *measurement) (failed, noisy []string) {
	lbl := lg.prefix + fmt.Sprintf("%-7s", b.label)
	runs := lg.prefix + b.label // names the runs returned
	var segs, loads, conns, errs []string
	for _, p := range proxies {
		m := ms[p.name]
		segs = append(segs, fmt.Sprintf("%s %.0f req/s p50 %s p99 %s cpu %.0f%% %.1fµs/req", p.name, m.wrk.rps, msecs(m.wrk.p50), msecs(m.wrk.p99), 100*m.cpu, m.cpuPerReq()))
		loads = append(loads, fmt.Sprintf("%s %.0f%%", p.name, 100*m.loadBusy))
		if p.name != "fleet" {
			conns = append(conns, fmt.Sprintf("%s %d", p.name, m.opened))
		}
		errs = append(errs, fmt.Sprintf("%s %d, %d", p.name, m.wrk.non2xx, m.wrk.socketErr))
		if m.wrk.non2xx+m.wrk.socketErr > 0 {
			failed = append(failed, fmt.Sprintf("%s %s: %d non-2xx, %d socket", runs, p.name, m.wrk.non2xx, m.wrk.socketErr))
		}
	}
	f, n, h := ms["fleet"], ms["nginx"], ms["haproxy"]
	fmt.Printf("%s%s\n", lbl, strings.Join(segs, " | "))
	p99Target := ""
	if lg.p99Max > 0 {
		p99Target = fmt.Sprintf(" (target <= %.1fx)", lg.p99Max)
	}
	fmt.Printf("%sratio fleet/nginx req/s %.2fx (target >= %.1fx), p99 %.2fx%s, cpu/req %.2fx; fleet/haproxy req/s %.2fx, p99 %.2fx, cpu/req %.2fx\n", lbl,
		f.wrk.rps/n.wrk.rps, lg.rpsMin, ratio(f.wrk.p99, n.wrk.p99), p99Target, f.cpuPerReq()/n.cpuPerReq(),
		f.wrk.rps/h.wrk.rps, ratio(f.wrk.p99, h.wrk.p99), f.cpuPerReq()/h.cpuPerReq())
	fmt.Printf("%sfleet upstream connections opened during the run: %d for %d requests (target: no new connection per request); %s\n", lbl,
		f.opened, f.wrk.requests, strings.Join(conns, ", "))
	if direct != nil {
		fmt.Printf("%sload side cpu%d (wrk+backends) busy: %s; no proxy, wrk straight to a backend: %.0f req/s with cpu%d %.0f%% busy\n", lbl,
			loadCPU, strings.Join(loads, ", "), direct.wrk.rps, loadCPU, 100*direct.loadBusy)
	} else {
		fmt.Printf("%sload side cpu%d (wrk+backends) busy: %s\n", lbl, loadCPU, strings.Join(loads, ", "))
	}
	fmt.Printf("%serrors (non-2xx, socket): %s\n", lbl, strings.Join(errs, " | "))
	all := map[string]measurement{}
	var names []string
	if direct != nil {
		all["no-proxy"], names = *direct, []string{"no-proxy"}
	}
	for _, p := range proxies {
		all[p.name], names = ms[p.name], append(names, p.name)
	}
	var others []string
	for _, name := range names {
		m := all[name]
		others = append(others, fmt.Sprintf("%s %.0f%%/%.0f%%", name, 100*m.foreignLoad, 100*m.foreignProxy))
		if m.foreign() > quiet {
			noisy = append(noisy, runs+" "+name)
		}
	}
	verdict := "quiet"
	if len(noisy) > 0 {
		verdict = "NOT quiet: rerun"
	}
	fmt.Printf("%sother processes' share of cpu%d/cpu%d: %s (%s)\n", lbl, loadCPU, proxyCPU, strings.Join(others, ", "), verdict)
	var both []string
	for _, p := range proxies {
		switch m := ms[p.name]; {
		case m.cpu < 0.9:
			fmt.Printf("%snote: %s used %.0f%% of its core while cpu%d was %.0f%% busy: the load side set its pace, so its req/s is a floor; its cpu/req holds\n", lbl,
				p.name, 100*m.cpu, loadCPU, 100*m.loadBusy)
		case m.loadBusy >= 0.95:
			both = append(both, p.name)
		}
	}
	if len(both) > 0 {
		fmt.Printf("%snote: cpu%d was >= 95%% busy too during the runs of %s: both cores at their limit, so req/s may be a little low; cpu/req holds\n", lbl,
			loadCPU, strings.Join(both, ", "))
	}
	return failed, noisy
}

// cpuPerReq is the proxy's CPU time per request in µs: its cost, whether
// or not it was the bottleneck.
func (m measurement) cpuPerReq() float64 { return 1e6 * m.cpu / m.wrk.rps }

// measureQuiet is measure, again while other processes disturb it.
func measureQuiet(ctx context.Context, ts toolset, o options, hz float64, backend, p *server, target, statusURL string) (measurement, error) {
	var best measurement
	for i := 0; i <= retries; i++ {
		m, err := measure(ctx, ts, o, hz, backend, p, target, statusURL)
		if err != nil {
			return measurement{}, err
		}
		if i == 0 || m.foreign() < best.foreign() {
			best = m
		}
		if m.foreign() <= quiet {
			break
		}
		log.Printf("bench-lb:   other processes took %.0f%% of cpu%d and %.0f%% of cpu%d: again", 100*m.foreignLoad, loadCPU, 100*m.foreignProxy, proxyCPU)
	}
	return best, nil
}

// foreign is the larger share of a core that other processes took.
func (m measurement) foreign() float64 { return max(m.foreignLoad, m.foreignProxy) }

// measure runs wrk against target for the warm-up, then for the measured
// run, sampling around the latter the proxy's CPU time (p may be nil: no
// proxy), both CPUs, the backend's and wrk's CPU time and the backend's
// accepted connections.
func measure(ctx context.Context, ts toolset, o options, hz float64, backend, p *server, target, statusURL string) (measurement, error) {
	if _, err := runWrk(ctx, ts, loadCPU, o.connections, warmup, target); err != nil {
		return measurement{}, fmt.Errorf("warm-up: %w", err)
	}
	a0, err := accepts(ctx, statusURL)
	if err != nil {
		return measurement{}, err
	}
	var p0, p1 int64
	if p != nil {
		p0 = p.cpuTicks()
	}
	be0, l0, x0 := backend.cpuTicks(), readCPU(loadCPU), readCPU(proxyCPU)
	began := time.Now()
	r, err := runWrk(ctx, ts, loadCPU, o.connections, o.duration, target)
	if err != nil {
		return measurement{}, err
	}
	wall := time.Since(began).Seconds()
	if p != nil {
		p1 = p.cpuTicks()
	}
	be1, l1, x1 := backend.cpuTicks(), readCPU(loadCPU), readCPU(proxyCPU)
	a1, err := accepts(ctx, statusURL)
	if err != nil {
		return measurement{}, err
	}
	m := measurement{wrk: r, opened: a1 - a0 - 1} // less the second status request's own
	m.cpu = float64(p1-p0) / hz / wall
	if l1.total > l0.total && x1.total > x0.total {
		m.loadBusy = float64(l1.busy-l0.busy) / float64(l1.total-l0.total)
		ours := float64(be1-be0)/hz/wall + r.cpu.Seconds()/wall
		m.foreignLoad = max(0, float64(l1.tasks-l0.tasks)/float64(l1.total-l0.total)-ours)
		m.foreignProxy = max(0, float64(x1.tasks-x0.tasks)/float64(x1.total-x0.total)-m.cpu)
	}
	return m, nil
}

// accepts reads the connections the backend nginx accepted so far from
// its stub_status. Each read opens one connection of its own.
func accepts(ctx context.Context, statusURL string) (int64, error) {
	b, err := get(ctx, nil, statusURL)
	if err != nil {
		return 0, err
	}
	// Active connections: 1
	// server accepts handled requests
	//  16 16 16
	lines := strings.Split(string(b), "\n")
	if len(lines) < 3 || len(strings.Fields(lines[2])) < 1 {
		return 0, fmt.Errorf("read stub_status: unexpected %q", b)
	}
	return strconv.ParseInt(strings.Fields(lines[2])[0], 10, 64)
}

// verifyBodies checks that each base URL (scheme and address) serves
// every body at its size, so that every proxy is measured on the same
// work. HTTPS servers must present a certificate that roots trust.
func verifyBodies(ctx context.Context, roots *x509.CertPool, bases ...string) error {
	for _, base := range bases {
		for _, b := range bodies {
			data, err := get(ctx, roots, base+b.path)
			if err != nil {
				return err
			}
			if len(data) != b.size {
				return fmt.Errorf("GET %s%s: %d bytes, want %d", base, b.path, len(data), b.size)
			}
		}
	}
	return nil
}

// get fetches url on a new connection and wants 200; over HTTPS it
// trusts roots only (nil: the system's).
func get(ctx context.Context, roots *x509.CertPool, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return data, nil
}

// nginxArgv runs nginx in the foreground from prefix, with its early
// error log there too rather than in /var/log/nginx.
func nginxArgv(nginx, prefix string) []string {
	return []string{nginx, "-p", prefix, "-c", filepath.Join(prefix, "nginx.conf"), "-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;"}
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func httpURL(port int, path string) string { return "http://" + addr(port) + path }

func httpsURL(port int, path string) string { return "https://" + addr(port) + path }

// msecs prints d in milliseconds with two decimals.
func msecs(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
