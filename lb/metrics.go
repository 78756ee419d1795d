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
	codes [numClasses]atomic.Uint64
	dials atomic.Uint64
}

// statsFor returns the endpoint's counters for r, creating them on first
// use. The lookup is one atomic load and a scan of a slice that holds one
// element unless several routes share the pool.
func (e *endpoint) statsFor(r *route) *epStats {
	if p := e.stats.Load(); p != nil {
		for _, s := range *p {
			if s.r == r {
				return s
			}
		}
	}
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	var cur []*epStats
	if p := e.stats.Load(); p != nil {
		cur = *p
		for _, s := range cur {
			if s.r == r {
				return s
			}
		}
	}
	s := &epStats{r: r}
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
		"Requests proxied, by route, endpoint and status class. code is \"error\" for requests the proxy answered itself (502, 503 with endpoint \"\") or abandoned mid-response, and \"tcp\" for TCP-mode connections.",
		[]string{"route", "endpoint", "code"}, nil)
	durationDesc = prometheus.NewDesc("fleet_lb_request_duration_seconds",
		"Time from a request's first byte to the end of its response (TCP mode: connection lifetime).",
		[]string{"route"}, nil)
	activeDesc = prometheus.NewDesc("fleet_lb_active_connections",
		"Client connections open on the route's listener.",
		[]string{"route"}, nil)
	healthyDesc = prometheus.NewDesc("fleet_lb_endpoint_healthy",
		"1 if the endpoint takes traffic, 0 while it is ejected after failed dials.",
		[]string{"route", "endpoint"}, nil)
	dialsDesc = prometheus.NewDesc("fleet_lb_upstream_dials_total",
		"Connections opened to the endpoint; with keep-alive this stays flat while requests grow.",
		[]string{"route", "endpoint"}, nil)
)

// collector renders a Balancer's counters at scrape time.
type collector struct{ b *Balancer }

// Collector returns a prometheus.Collector for the balancer's routes:
// fleet_lb_requests_total{route,endpoint,code} (code 1xx…5xx, "error" for
// 502/503 answered by the proxy or responses abandoned midway, "tcp" for
// TCP-mode connections), fleet_lb_request_duration_seconds{route},
// fleet_lb_active_connections{route}, fleet_lb_endpoint_healthy{route,endpoint}
// and fleet_lb_upstream_dials_total{route,endpoint}. Counters of an endpoint
// appear once it served a request and go when it leaves the pool.
func (b *Balancer) Collector() prometheus.Collector { return collector{b} }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- durationDesc
	ch <- activeDesc
	ch <- healthyDesc
	ch <- dialsDesc
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.b.routeList() {
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(r.active.Load()), r.name)
		count, sum, buckets := r.hist.snapshot()
		ch <- prometheus.MustNewConstHistogram(durationDesc, count, sum, buckets, r.name)
		if n := r.noEndpoint.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), r.name, "", classNames[classError])
		}
		for _, e := range r.pool.Load().endpoints() {
			healthy := 1.0
			if e.ejectedUntil.Load() != 0 {
				healthy = 0
			}
			ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, healthy, r.name, e.addr)
			s := e.lookupStats(r)
			if s == nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(dialsDesc, prometheus.CounterValue, float64(s.dials.Load()), r.name, e.addr)
			for i := range s.codes {
				if n := s.codes[i].Load(); n > 0 {
					ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), r.name, e.addr, classNames[i])
				}
			}
		}
	}
}
