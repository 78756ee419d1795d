package lb

import (
	"bytes"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// hostRouter routes a.test to a, except paths under /api to b, and b.test
// to b, ignoring the port in Host as an Ingress table does.
func hostRouter(a, b *Pool) func(host, path []byte) *Pool {
	return func(host, path []byte) *Pool {
		if i := bytes.LastIndexByte(host, ':'); i >= 0 {
			host = host[:i]
		}
		switch string(host) {
		case "a.test":
			if bytes.Equal(path, []byte("/api")) || bytes.HasPrefix(path, []byte("/api/")) {
				return b
			}
			return a
		case "b.test":
			return b
		}
		return nil
	}
}

// routedRoute serves a route whose Router is router on a free port.
func routedRoute(t *testing.T, opts Options, router func(host, path []byte) *Pool, adjust ...func(*Route)) (*Balancer, string) {
	t.Helper()
	rt := Route{Name: "ingress", Listen: "127.0.0.1:0", Mode: HTTP, Router: router}
	for _, f := range adjust {
		f(&rt)
	}
	b := startBalancer(t, opts, rt)
	return b, b.Addr("ingress").String()
}

func TestBalancer_Router(t *testing.T) {
	t.Run("requests go to the pool the Router picks by host and path", func(t *testing.T) {
		a, bk := namedBackend(t, "a"), namedBackend(t, "b")
		_, addr := routedRoute(t, Options{}, hostRouter(poolOf("a", RoundRobin, a.addr()), poolOf("b", RoundRobin, bk.addr())))
		c := dialRaw(t, addr)
		for _, tc := range []struct{ host, target, want string }{
			{"a.test", "/", "a"},
			{"a.test:8080", "/shop?item=1", "a"},
			{"a.test", "/api/v1?x=/y", "b"},
			{"a.test", "/apiary", "a"},
			{"b.test", "/", "b"},
			{"b.test", "/anything", "b"},
		} {
			resp, body := c.roundTrip(t, "GET", "GET "+tc.target+" HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n")
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("%s%s: %d %q, want %q", tc.host, tc.target, resp.StatusCode, body, tc.want)
			}
		}
	})

	t.Run("the Router gets Host as sent and the path without the query", func(t *testing.T) {
		type call struct{ host, path string }
		calls := make(chan call, 4)
		pool := poolOf("a", RoundRobin, namedBackend(t, "a").addr())
		_, addr := routedRoute(t, Options{}, func(host, path []byte) *Pool {
			calls <- call{string(host), string(path)}
			return pool
		})
		c := dialRaw(t, addr)
		for _, tc := range []struct {
			target string
			want   call
		}{
			{"/p/q?r=s", call{"A.test:8443", "/p/q"}},
			{"http://A.test:8443/abs?x", call{"A.test:8443", "/abs"}},
			{"http://A.test:8443", call{"A.test:8443", "/"}},
		} {
			c.roundTrip(t, "GET", "GET "+tc.target+" HTTP/1.1\r\nHost: A.test:8443\r\n\r\n")
			if got := waitFor(t, calls, "the Router"); got != tc.want {
				t.Errorf("target %s: Router got %+v, want %+v", tc.target, got, tc.want)
			}
		}
	})

	t.Run("an unknown host gets 404 naming the host and path, and the connection stays", func(t *testing.T) {
		a := namedBackend(t, "a")
		_, addr := routedRoute(t, Options{}, hostRouter(poolOf("a", RoundRobin, a.addr()), nil))
		c := dialRaw(t, addr)
		resp, body := c.roundTrip(t, "GET", "GET /x?y=1 HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
		if resp.StatusCode != 404 || body != "no rule for host \"nowhere.test\" path /x\n" || resp.Close {
			t.Errorf("got %d %q close=%v", resp.StatusCode, body, resp.Close)
		}
		if resp, body = c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); body != "a" {
			t.Errorf("after the 404: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("a request with a body for no rule gets 404 and the connection closes", func(t *testing.T) {
		_, addr := routedRoute(t, Options{}, func(host, path []byte) *Pool { return nil })
		c := dialRaw(t, addr)
		resp, _ := c.roundTrip(t, "POST", "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		if resp.StatusCode != 404 || !resp.Close {
			t.Errorf("got %d close=%v, want 404 and Connection: close", resp.StatusCode, resp.Close)
		}
	})

	t.Run("a picked pool without endpoints answers 503 naming it", func(t *testing.T) {
		empty := NewPool("default/web:80", RoundRobin)
		_, addr := routedRoute(t, Options{}, func(host, path []byte) *Pool { return empty })
		if code, body := get(t, client(t), "http://"+addr+"/"); code != 503 || body != "no ready endpoints for default/web:80\n" {
			t.Errorf("got %d %q", code, body)
		}
	})

	t.Run("Redirect answers 308 with the location before routing", func(t *testing.T) {
		var routed atomic.Int64
		pool := poolOf("a", RoundRobin, namedBackend(t, "a").addr())
		_, addr := routedRoute(t, Options{}, func(host, path []byte) *Pool {
			routed.Add(1)
			return pool
		}, func(rt *Route) {
			rt.Redirect = func(host, uri []byte) string {
				if string(host) == "secure.test" {
					return "https://secure.test" + string(uri)
				}
				return ""
			}
		})
		c := dialRaw(t, addr)
		resp, _ := c.roundTrip(t, "GET", "GET /p?q=1 HTTP/1.1\r\nHost: secure.test\r\n\r\n")
		if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://secure.test/p?q=1" || resp.Close {
			t.Errorf("got %d Location %q close=%v, want 308 to https://secure.test/p?q=1", resp.StatusCode, resp.Header.Get("Location"), resp.Close)
		}
		if n := routed.Load(); n != 0 {
			t.Errorf("a redirected request was routed %d times", n)
		}
		if resp, body := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n"); body != "a" {
			t.Errorf("a host without redirect: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("a Redirect location with a line break is refused", func(t *testing.T) {
		_, addr := routedRoute(t, Options{}, nil, func(rt *Route) {
			rt.Pool = NewPool("p", RoundRobin)
			rt.Router = nil
			rt.Redirect = func(host, uri []byte) string { return "https://x/\r\nSet-Cookie: a=b" }
		})
		resp, _ := dialRaw(t, addr).roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 500 || resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("got %d %v, want 500 and no injected field", resp.StatusCode, resp.Header)
		}
	})
}

// settle returns once the requests sent on c so far are counted: the proxy
// serves a connection's requests one after another and counts each after
// its response went out, but answers a malformed one (no Host) uncounted.
// c is closed afterwards.
func settle(t *testing.T, c *rawConn) {
	t.Helper()
	if resp, _ := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\n\r\n"); resp.StatusCode != 400 {
		t.Fatalf("settling request: status %d, want 400", resp.StatusCode)
	}
}

func TestBalancer_RouterMetrics(t *testing.T) {
	t.Run("requests are counted under the picked pool's endpoints, per route sharing the pool", func(t *testing.T) {
		a, bk := namedBackend(t, "a"), namedBackend(t, "b")
		poolA, poolB := poolOf("a", RoundRobin, a.addr()), poolOf("b", RoundRobin, bk.addr())
		b := startBalancer(t, Options{},
			Route{Name: "ingress", Listen: "127.0.0.1:0", Mode: HTTP, Router: hostRouter(poolA, poolB),
				Redirect: func(host, uri []byte) string {
					if string(host) == "old.test" {
						return "http://a.test/"
					}
					return ""
				}},
			Route{Name: "svc-a", Listen: "127.0.0.1:0", Mode: HTTP, Pool: poolA},
		)
		ing := dialRaw(t, b.Addr("ingress").String())
		for range 3 {
			ing.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		}
		for range 2 {
			ing.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n")
		}
		ing.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
		ing.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: old.test\r\n\r\n")
		svc := dialRaw(t, b.Addr("svc-a").String())
		svc.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		settle(t, ing)
		settle(t, svc)

		reqs := `
# HELP fleet_lb_requests_total Requests proxied, by route, endpoint and status class. code is "error" for 502s (under the endpoint tried last) and responses abandoned mid-way, and "tcp" for TCP-mode connections. Requests the proxy answered without an endpoint have endpoint "": 503 (no ready endpoint) as "error", 404 (no rule) as "4xx", redirects as "3xx".
# TYPE fleet_lb_requests_total counter
fleet_lb_requests_total{code="2xx",endpoint="` + a.addr() + `",route="ingress"} 3
fleet_lb_requests_total{code="2xx",endpoint="` + bk.addr() + `",route="ingress"} 2
fleet_lb_requests_total{code="3xx",endpoint="",route="ingress"} 1
fleet_lb_requests_total{code="4xx",endpoint="",route="ingress"} 1
fleet_lb_requests_total{code="2xx",endpoint="` + a.addr() + `",route="svc-a"} 1
`
		if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(reqs), "fleet_lb_requests_total"); err != nil {
			t.Error(err)
		}
		// svc-a may reuse ingress's idle connection to a: its dials vary.
		for _, ep := range []string{a.addr(), bk.addr()} {
			if got := seriesValue(t, b, "fleet_lb_upstream_dials_total", "route", "ingress", "endpoint", ep); got != 1 {
				t.Errorf("ingress dialled %s %v times, want 1", ep, got)
			}
		}
		problems, err := testutil.CollectAndLint(b.Collector())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	})

	t.Run("an address in two picked pools is one series", func(t *testing.T) {
		a := namedBackend(t, "a")
		p1, p2 := poolOf("one", RoundRobin, a.addr()), poolOf("two", RoundRobin, a.addr())
		b, addr := routedRoute(t, Options{}, func(host, path []byte) *Pool {
			if string(path) == "/1" {
				return p1
			}
			return p2
		})
		c := dialRaw(t, addr)
		c.roundTrip(t, "GET", "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
		c.roundTrip(t, "GET", "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
		settle(t, c)
		if got := seriesValue(t, b, "fleet_lb_requests_total", "route", "ingress", "endpoint", a.addr(), "code", "2xx"); got != 2 {
			t.Errorf("2xx of %s: %v, want both requests", a.addr(), got)
		}
		if _, err := testutil.CollectAndLint(b.Collector()); err != nil {
			t.Error(err) // duplicate series fail the collection
		}
	})

	t.Run("a pool the Router stops picking leaves the metrics after a while and comes back when picked", func(t *testing.T) {
		var clock atomic.Int64
		clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		a, bk := namedBackend(t, "a"), namedBackend(t, "b")
		b, addr := routedRoute(t, Options{Now: now}, hostRouter(poolOf("a", RoundRobin, a.addr()), poolOf("b", RoundRobin, bk.addr())))
		ask := func(host string) {
			t.Helper()
			c := dialRaw(t, addr)
			if resp, _ := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); resp.StatusCode != 200 {
				t.Fatalf("%s: status %d", host, resp.StatusCode)
			}
			settle(t, c) // the sweep must see the request
		}
		healthy := func(ep string) float64 {
			return seriesValue(t, b, "fleet_lb_endpoint_healthy", "route", "ingress", "endpoint", ep)
		}
		ask("a.test")
		ask("b.test")
		b.sweepOnce(now())
		for range 3 { // a stays in use, b does not
			clock.Add(int64(forgetPoolAfter / 2))
			ask("a.test")
			b.sweepOnce(now())
		}
		if healthy(a.addr()) != 1 || healthy(bk.addr()) != -1 {
			t.Errorf("healthy gauges a=%v b=%v; want a's shown and b's gone", healthy(a.addr()), healthy(bk.addr()))
		}
		ask("b.test")
		if got := seriesValue(t, b, "fleet_lb_requests_total", "route", "ingress", "endpoint", bk.addr(), "code", "2xx"); got != 2 {
			t.Errorf("b's 2xx after it was picked again: %v, want 2 (counted on)", got)
		}
	})
}

func TestBalancer_UpdateChecksRoutes(t *testing.T) {
	cert := newTestCert(t)
	router := func(host, path []byte) *Pool { return nil }
	for _, tc := range []struct {
		name string
		rt   Route
		ok   bool
	}{
		{"a route with a Router needs no pool", Route{Mode: HTTP, Router: router}, true},
		{"a TLS route needs a pool or a Router", Route{Mode: HTTP, TLS: cert.serverConfig()}, false},
		{"TLS on a TCP route is refused", Route{Mode: TCP, Pool: NewPool("p", RoundRobin), TLS: cert.serverConfig()}, false},
		{"a Router on a TCP route is refused", Route{Mode: TCP, Router: router}, false},
		{"Redirect on a TCP route is refused", Route{Mode: TCP, Pool: NewPool("p", RoundRobin), Redirect: func(_, _ []byte) string { return "" }}, false},
		{"Other without TLS is refused", Route{Mode: HTTP, Pool: NewPool("p", RoundRobin), Other: func(*tls.Conn) {}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Options{})
			defer b.Close()
			tc.rt.Name, tc.rt.Listen = "r", "127.0.0.1:0"
			errs := b.Update([]Route{tc.rt})
			if (errs == nil) != tc.ok {
				t.Errorf("Update: %v, want ok=%v", errs, tc.ok)
			}
		})
	}

	t.Run("a kept route switches between a pool and a Router without closing connections", func(t *testing.T) {
		a, bk := namedBackend(t, "a"), namedBackend(t, "b")
		poolB := poolOf("b", RoundRobin, bk.addr())
		rt := Route{Name: "web", Listen: "127.0.0.1:0", Mode: HTTP, Pool: poolOf("a", RoundRobin, a.addr())}
		b := startBalancer(t, Options{}, rt)
		c := dialRaw(t, b.Addr("web").String())
		ask := func(want string) {
			t.Helper()
			if _, body := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); body != want {
				t.Fatalf("got %q, want %q", body, want)
			}
		}
		ask("a")
		rt.Router = func(host, path []byte) *Pool { return poolB }
		if errs := b.Update([]Route{rt}); errs != nil {
			t.Fatal(errs)
		}
		ask("b")
		rt.Router = nil
		if errs := b.Update([]Route{rt}); errs != nil {
			t.Fatal(errs)
		}
		ask("a")
	})
}
