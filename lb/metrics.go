package lb

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Code classes of fleet_lb_requests_total.
const (
	class1xx = iota
	class2xx
	class3xx
	class4xx
	class5xx
	classError // the proxy answered itself (502, 503) or gave up mid-response
	classTCP   // one TCP-mode connection
	numClasses
)

var classNames = [numClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx", "error", "tcp"}

func statusClass(code int) int {
	switch {
	case code < 200:
		return class1xx
	case code < 300:
		return class2xx
	case code < 400:
		return class3xx
	case code < 500:
		return class4xx
	}
	return class5xx
}

// epStats counts one route's traffic to one endpoint.
type epStats struct {
	r     *route
	used  *usedPool // the route's record of the endpoint's pool
	codes [numClasses]atomic.Uint64
	dials atomic.Uint64
}

// statsFor returns the endpoint's counters for r, creating them on first
// use, when the route also records that it uses the endpoint's pool. The
// lookup is one atomic load and a scan of a slice that holds one element
// unless several routes share the pool.
func (e *endpoint) statsFor(r *route) *epStats {
	if s := e.lookupStats(r); s != nil {
		return s
	}
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	if s := e.lookupStats(r); s != nil {
		return s
	}
	var cur []*epStats
	if p := e.stats.Load(); p != nil {
		cur = *p
	}
	s := &epStats{r: r, used: r.usedPoolFor(e.pool)}
	next := append(append(make([]*epStats, 0, len(cur)+1), cur...), s)
	e.stats.Store(&next)
	return s
}

// lookupStats is statsFor without creating.
func (e *endpoint) lookupStats(r *route) *epStats {
	if p := e.stats.Load(); p != nil {
		for _, s := range *p {
			if s.r == r {
				return s
			}
		}
	}
	return nil
}

// durationBuckets are the upper bounds of fleet_lb_request_duration_seconds.
var durationBuckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// histogram is a fixed-bucket histogram updated with atomics and rendered
// as a const histogram at scrape time.
type histogram struct {
	counts [len(durationBuckets) + 1]atomic.Uint64 // last: above every bound
	sumNs  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := 0
	for i < len(durationBuckets) && d > durationBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(d))
}

// snapshot returns the count, the sum in seconds and the cumulative buckets.
func (h *histogram) snapshot() (uint64, float64, map[float64]uint64) {
	buckets := make(map[float64]uint64, len(durationBuckets))
	var cum uint64
	for i, b := range durationBuckets {
		cum += h.counts[i].Load()
		buckets[b.Seconds()] = cum
	}
	cum += h.counts[len(durationBuckets)].Load()
	return cum, float64(h.sumNs.Load()) / 1e9, buckets
}

var (
	requestsDesc = prometheus.NewDesc("fleet_lb_requests_total",
		"Requests proxied, by route, endpoint and status class. code is \"error\" for 502s (under the endpoint tried last) and responses abandoned mid-way, and \"tcp\" for TCP-mode connections. Requests the proxy answered without an endpoint have endpoint \"\": 503 (no ready endpoint) as \"error\", 404 (no rule) as \"4xx\", redirects as \"3xx\".",
		[]string{"route", "endpoint", "code"}, nil)
	durationDesc = prometheus.NewDesc("fleet_lb_request_duration_seconds",
		"Time from a request's first byte to the end of its response (TCP mode: connection lifetime).",
		[]string{"route"}, nil)
	activeDesc = prometheus.NewDesc("fleet_lb_active_connections",
		"Client connections open on the route's listener (TLS connections handed to another protocol's server leave it).",
		[]string{"route"}, nil)
	healthyDesc = prometheus.NewDesc("fleet_lb_endpoint_healthy",
		"1 if the endpoint takes traffic, 0 while it is ejected after failed dials.",
		[]string{"route", "endpoint"}, nil)
	dialsDesc = prometheus.NewDesc("fleet_lb_upstream_dials_total",
		"Connections opened to the endpoint; with keep-alive this stays flat while requests grow.",
		[]string{"route", "endpoint"}, nil)
	handshakeErrorsDesc = prometheus.NewDesc("fleet_lb_tls_handshake_errors_total",
		"TLS handshakes that failed or timed out on the route's listener; connections closed before sending anything are not counted.",
		[]string{"route"}, nil)
)

// collector renders a Balancer's counters at scrape time.
type collector struct{ b *Balancer }

// Collector returns a prometheus.Collector for the balancer's routes:
// fleet_lb_requests_total{route,endpoint,code} (code 1xx…5xx, "error" for
// 502/503 answered by the proxy or responses abandoned midway, "tcp" for
// TCP-mode connections; endpoint "" for 503, 404 and redirects the proxy
// answered without an endpoint), fleet_lb_request_duration_seconds{route},
// fleet_lb_active_connections{route}, fleet_lb_endpoint_healthy{route,endpoint},
// fleet_lb_upstream_dials_total{route,endpoint} and, for TLS routes,
// fleet_lb_tls_handshake_errors_total{route}. Counters of an endpoint
// appear once it served a request and go when it leaves the pool; with a
// Router, the endpoints are those of the pools the route used in the last
// 15 minutes (an address in several such pools is shown once, summed).
func (b *Balancer) Collector() prometheus.Collector { return collector{b} }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- durationDesc
	ch <- activeDesc
	ch <- healthyDesc
	ch <- dialsDesc
	ch <- handshakeErrorsDesc
}

// endpointSeries is what one endpoint address contributes to a route's
// series, summed over the route's pools that list it.
type endpointSeries struct {
	addr    string
	healthy bool
	stats   bool // served a request of the route
	dials   uint64
	codes   [numClasses]uint64
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.b.routeList() {
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(r.active.Load()), r.name)
		count, sum, buckets := r.hist.snapshot()
		ch <- prometheus.MustNewConstHistogram(durationDesc, count, sum, buckets, r.name)
		if n := r.handshakes.Load(); n > 0 || r.cfg.Load().tls != nil {
			ch <- prometheus.MustNewConstMetric(handshakeErrorsDesc, prometheus.CounterValue, float64(n), r.name)
		}
		for i := range r.own {
			if n := r.own[i].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), r.name, "", classNames[i])
			}
		}
		var series []*endpointSeries
		byAddr := make(map[string]*endpointSeries)
		for _, p := range r.reportedPools() {
			for _, e := range p.endpoints() {
				es := byAddr[e.addr]
				if es == nil {
					es = &endpointSeries{addr: e.addr, healthy: true}
					byAddr[e.addr] = es
					series = append(series, es)
				}
				es.healthy = es.healthy && e.ejectedUntil.Load() == 0
				s := e.lookupStats(r)
				if s == nil {
					continue
				}
				es.stats = true
				es.dials += s.dials.Load()
				for i := range s.codes {
					es.codes[i] += s.codes[i].Load()
				}
			}
		}
		for _, es := range series {
			healthy := 1.0
			if !es.healthy {
				healthy = 0
			}
			ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, healthy, r.name, es.addr)
			if !es.stats {
				continue
			}
			ch <- prometheus.MustNewConstMetric(dialsDesc, prometheus.CounterValue, float64(es.dials), r.name, es.addr)
			for i, n := range es.codes {
				if n > 0 {
					ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), r.name, es.addr, classNames[i])
				}
			}
		}
	}
}
