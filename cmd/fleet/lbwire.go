package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetdev/fleet/ingress"
	"github.com/fleetdev/fleet/lb"
	"github.com/fleetdev/fleet/reconciler"
	"github.com/fleetdev/fleet/spec"
	"github.com/fleetdev/fleet/store"
)

// traffic is serve's data plane: the load balancer's listeners for
// LoadBalancer Services, the Ingress proxy, and the admin endpoint with
// Prometheus metrics. It is fed the Services' endpoints after every pass.
type traffic struct {
	// ctx lasts as long as serve: certmagic's background work runs in it
	// (never in a pass's context, which ends with the pass).
	ctx       context.Context
	lbAddress string
	ingress   *ingress.Server
	certs     *ingress.Certificates
	store     *store.Store
	bal       *lb.Balancer
	log       *slog.Logger

	mu          sync.Mutex
	pools       map[string]*lb.Pool // by namespace/service:port
	snapshot    atomic.Pointer[map[string]*lb.Pool]
	routeErrs   map[string]string
	ingressErr  string
	ingressOpts ingressOptions
	problems    string
}

type ingressOptions struct {
	http, https       string
	acmeCA, acmeEmail string
	acmeRoot          string
}

func newTraffic(ctx context.Context, st *store.Store, lbAddress string, io ingressOptions, log *slog.Logger) *traffic {
	return &traffic{ctx: ctx, lbAddress: lbAddress, store: st, log: log.With("component", "traffic"), ingressOpts: io,
		bal:   lb.New(lb.Options{Log: log}),
		pools: map[string]*lb.Pool{}, routeErrs: map[string]string{}}
}

// serveAdmin serves /metrics on addr until ctx ends.
func (t *traffic) serveAdmin(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(t.bal.Collector(), t)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin address %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() { <-ctx.Done(); srv.Close() }()
	t.log.Info("metrics", "address", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

var certExpiryDesc = prometheus.NewDesc("fleet_ingress_certificate_expiry_timestamp_seconds",
	"When the certificate served for an Ingress TLS host expires (Unix time), by host and issuer (acme, internal).",
	[]string{"host", "issuer"}, nil)

// Describe is part of prometheus.Collector: certificate expiry.
func (t *traffic) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

// Collect is part of prometheus.Collector: certificate expiry.
func (t *traffic) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	certs := t.certs
	t.mu.Unlock()
	if certs == nil {
		return
	}
	for _, e := range certs.Expiries() {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(e.NotAfter.Unix()), e.Host, e.Issuer)
	}
}

// routes is the Controller's Routes hook.
func (t *traffic) routes(ctx context.Context, eps []reconciler.ServicePortEndpoints) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var routes []lb.Route
	live := map[string]bool{}
	for _, e := range eps {
		key := e.Key()
		live[key] = true
		policy, _ := lb.ParsePolicy(e.Annotations[spec.AnnotationLBPolicy]) // validated at apply
		pool := t.pools[key]
		if pool == nil || pool.Policy() != policy {
			pool = lb.NewPool(key, policy)
			t.pools[key] = pool
		}
		if e.Split {
			stable, canary := e.ReadySplit()
			pool.SetWeighted(stable, canary, e.CanaryPercent)
		} else {
			pool.Set(e.Ready())
		}
		if e.Type != "LoadBalancer" {
			continue
		}
		routes = append(routes, lb.Route{Name: key, Listen: net.JoinHostPort(t.lbAddress, strconv.Itoa(e.Port.Port)), Mode: modeOf(e), Pool: pool})
	}
	for key, p := range t.pools {
		if !live[key] {
			p.Set(nil)
			delete(t.pools, key)
		}
	}
	snap := maps.Clone(t.pools)
	t.snapshot.Store(&snap)
	t.updateIngress(ctx)
	if t.ingress != nil {
		if r, ok := t.ingress.HTTPSRoute(); ok {
			routes = append(routes, r)
		}
	}
	errs := t.bal.Update(routes)
	for _, r := range routes {
		msg := ""
		if err := errs[r.Name]; err != nil {
			msg = err.Error()
		}
		if msg != t.routeErrs[r.Name] {
			if msg != "" {
				t.log.Error("cannot serve a route", "route", r.Name, "err", msg)
			} else {
				t.log.Info("serving a route", "route", r.Name, "address", r.Listen, "mode", r.Mode)
			}
			t.routeErrs[r.Name] = msg
		}
	}
}

// modeOf is L7 for a port named http or http-*, with appProtocol http, or
// annotated fleet.dev/lb-mode: http; L4 otherwise.
func modeOf(e reconciler.ServicePortEndpoints) lb.Mode {
	switch {
	case e.Annotations[spec.AnnotationLBMode] == "tcp":
		return lb.TCP
	case e.Annotations[spec.AnnotationLBMode] == "http",
		e.Port.Name == "http" || strings.HasPrefix(e.Port.Name, "http-"),
		strings.EqualFold(e.Port.AppProtocol, "http"):
		return lb.HTTP
	}
	return lb.TCP
}

// updateIngress rebuilds the Ingress routing table from the state file,
// starting the Ingress listeners when the first Ingress appears. The
// caller holds t.mu.
func (t *traffic) updateIngress(ctx context.Context) {
	objs, err := t.store.List(ctx, "Ingress", "")
	if err != nil || len(objs) == 0 && t.ingress == nil {
		return
	}
	svcObjs, err := t.store.List(ctx, "Service", "")
	if err != nil {
		return
	}
	var ings []*spec.Ingress
	for _, o := range objs {
		var ing spec.Ingress
		if json.Unmarshal(o.Spec, &ing) == nil {
			ing.Namespace, ing.Name = o.Namespace, o.Name
			ings = append(ings, &ing)
		}
	}
	svcs := map[string]*spec.Service{}
	for _, o := range svcObjs {
		var s spec.Service
		if json.Unmarshal(o.Spec, &s) == nil {
			svcs[o.Namespace+"/"+o.Name] = &s
		}
	}
	table, problems := ingress.Build(ings, svcs)
	if p := strings.Join(problems, "; "); p != t.problems {
		for _, msg := range problems {
			t.log.Warn("ingress", "problem", msg)
		}
		t.problems = p
	}
	if t.ingress == nil {
		if t.ingressErr != "" {
			return // said once; a restart of serve tries again
		}
		if err := t.startIngress(t.ctx); err != nil {
			t.log.Error("cannot serve Ingresses; restart fleet serve once the addresses are free (or set --ingress-http/--ingress-https)", "err", err)
			t.ingressErr = err.Error()
			return
		}
	}
	t.ingress.SetTable(table)
	if err := t.certs.SetHosts(table.TLSIssuers()); err != nil {
		t.log.Warn("certificates", "err", err)
	}
}

func (t *traffic) startIngress(ctx context.Context) error {
	o := t.ingressOpts
	certs := &ingress.Certificates{Storage: &ingress.Storage{DB: t.store, Holder: holderName("serve")}, CA: o.acmeCA, Email: o.acmeEmail}
	if o.acmeRoot != "" {
		pool, err := loadRoots(o.acmeRoot)
		if err != nil {
			return err
		}
		certs.TrustedRoots = pool
	}
	certs.HTTPPort, certs.TLSPort = portOf(o.http), portOf(o.https)
	certs.ListenHost, _, _ = net.SplitHostPort(o.http)
	certs.Start(ctx)
	srv := &ingress.Server{HTTPAddr: o.http, HTTPSAddr: o.https, Certs: certs, Upstreams: t, Log: t.log, Pools: t.pool}
	if err := srv.Start(); err != nil {
		certs.Stop()
		return err
	}
	t.ingress, t.certs = srv, certs
	t.log.Info("serving Ingresses", "http", o.http, "https", o.https)
	return nil
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// pool is the Service port's pool, for the Ingress fast path: read
// without a lock, from the snapshot routes keeps.
func (t *traffic) pool(b ingress.Backend) *lb.Pool {
	if m := t.snapshot.Load(); m != nil {
		return (*m)[string(b)]
	}
	return nil
}

// Pick is the Ingress proxy's endpoint choice: the Service port's pool.
func (t *traffic) Pick(b ingress.Backend) (string, func(int, time.Duration, bool), bool) {
	pool := t.pool(b)
	if pool == nil {
		return "", nil, false
	}
	return pool.PickReport()
}

// stats is what every pool measured for requests to addrs: a canary's
// answers at the load balancer and the Ingress proxy.
func (t *traffic) stats(addrs []string) reconciler.CanaryStats {
	var sum lb.Stats
	if m := t.snapshot.Load(); m != nil {
		for _, p := range *m {
			sum = sum.Add(p.Stats(addrs))
		}
	}
	return reconciler.CanaryStats{Requests: sum.Requests, Errors: sum.Errors, P99: sum.Quantile(0.99)}
}

// drain waits until no request is in flight to addrs, in any pool,
// counting endpoints already removed and draining.
func (t *traffic) drain(ctx context.Context, addrs []string) {
	busy := func() bool {
		if m := t.snapshot.Load(); m != nil {
			for _, p := range *m {
				for _, a := range addrs {
					if p.InFlight(a) > 0 {
						return true
					}
				}
			}
		}
		return false
	}
	for busy() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shutdown stops every listener, letting requests in flight finish.
func (t *traffic) shutdown(ctx context.Context) {
	t.mu.Lock()
	srv, certs := t.ingress, t.certs
	t.mu.Unlock()
	if srv != nil {
		srv.Shutdown(ctx)
		certs.Stop()
	}
	t.bal.Shutdown(ctx)
}

// loadRoots reads PEM certificates to trust (a private ACME CA's root).
func loadRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--acme-ca-root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--acme-ca-root %s: no PEM certificate in it", path)
	}
	return pool, nil
}
