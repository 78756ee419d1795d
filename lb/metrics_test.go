package lb

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBalancer_Collector(t *testing.T) {
	t.Run("the metrics lint clean and count requests by route, endpoint and class", func(t *testing.T) {
		a := namedBackend(t, "a")
		dead := refusedAddr(t)
		b := startBalancer(t, Options{},
			Route{Name: "web", Listen: "127.0.0.1:0", Mode: HTTP, Pool: poolOf("web", RoundRobin, dead, a.addr())},
			Route{Name: "empty", Listen: "127.0.0.1:0", Mode: HTTP, Pool: NewPool("empty", RoundRobin)},
		)
		web := dialRaw(t, b.Addr("web").String())
		for range 5 {
			web.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		settle(t, web)
		get(t, client(t), "http://"+b.Addr("empty").String()+"/")

		problems, err := testutil.CollectAndLint(b.Collector())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
		want := `
# HELP fleet_lb_endpoint_healthy 1 if the endpoint takes traffic, 0 while it is ejected after failed dials.
# TYPE fleet_lb_endpoint_healthy gauge
fleet_lb_endpoint_healthy{endpoint="` + a.addr() + `",route="web"} 1
fleet_lb_endpoint_healthy{endpoint="` + dead + `",route="web"} 0
`
		if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(want), "fleet_lb_endpoint_healthy"); err != nil {
			t.Error(err)
		}
		reqs := `
# HELP fleet_lb_requests_total Requests proxied, by route, endpoint and status class. code is "error" for 502s (under the endpoint tried last) and responses abandoned mid-way, and "tcp" for TCP-mode connections. Requests the proxy answered without an endpoint have endpoint "": 503 (no ready endpoint) as "error", 404 (no rule) as "4xx", redirects as "3xx".
# TYPE fleet_lb_requests_total counter
fleet_lb_requests_total{code="2xx",endpoint="` + a.addr() + `",route="web"} 5
fleet_lb_requests_total{code="error",endpoint="",route="empty"} 1
`
		if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(reqs), "fleet_lb_requests_total"); err != nil {
			t.Error(err)
		}
		if n := testutil.CollectAndCount(b.Collector(), "fleet_lb_request_duration_seconds"); n != 2 {
			t.Errorf("%d duration histograms, want one per route", n)
		}
		if n := testutil.CollectAndCount(b.Collector(), "fleet_lb_active_connections"); n != 2 {
			t.Errorf("%d active-connection gauges, want one per route", n)
		}
		dials := `
# HELP fleet_lb_upstream_dials_total Connections opened to the endpoint; with keep-alive this stays flat while requests grow.
# TYPE fleet_lb_upstream_dials_total counter
fleet_lb_upstream_dials_total{endpoint="` + a.addr() + `",route="web"} 1
fleet_lb_upstream_dials_total{endpoint="` + dead + `",route="web"} 1
`
		if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(dials), "fleet_lb_upstream_dials_total"); err != nil {
			t.Error(err)
		}
	})
}
