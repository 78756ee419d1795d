package lb

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// countingListener counts the connections a backend accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// backend is an httptest server whose accepted connections are counted.
type backend struct {
	*httptest.Server
	ln *countingListener
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

// newBackend starts a backend; configure adjusts its server before it
// starts.
func newBackend(t *testing.T, h http.Handler, configure ...func(*http.Server)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = cl
	for _, f := range configure {
		f(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return &backend{Server: srv, ln: cl}
}

// namedBackend answers every request with its name.
func namedBackend(t *testing.T, name string, configure ...func(*http.Server)) *backend {
	return newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	}), configure...)
}

// refusedAddr returns an address nothing listens on, which stays so for
// the test: the local port of an open client connection. (A closed
// listener's port may be handed out again, even to the balancer itself.)
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		s.Close()
		ln.Close()
	})
	return c.LocalAddr().String()
}

// startBalancer serves routes and returns the balancer; it is closed when
// the test ends.
func startBalancer(t *testing.T, opts Options, routes ...Route) *Balancer {
	t.Helper()
	b := New(opts)
	t.Cleanup(func() { b.Close() })
	if errs := b.Update(routes); errs != nil {
		t.Fatalf("Update: %v", errs)
	}
	return b
}

// httpRoute serves pool over HTTP on a free port and returns the proxy's
// address.
func httpRoute(t *testing.T, pool *Pool) (*Balancer, string) {
	t.Helper()
	b := startBalancer(t, Options{}, Route{Name: "web", Listen: "127.0.0.1:0", Mode: HTTP, Pool: pool})
	return b, b.Addr("web").String()
}

func poolOf(name string, policy Policy, addrs ...string) *Pool {
	p := NewPool(name, policy)
	p.Set(addrs)
	return p
}

// client returns an HTTP client that keeps one connection alive.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// rawConn is a client connection for requests written by hand.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// roundTrip writes a raw request and reads the response; method tells
// http.ReadResponse whether a body follows.
func (c *rawConn) roundTrip(t *testing.T, method, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return c.readResponse(t, method)
}

func (c *rawConn) readResponse(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return resp, string(body)
}

// waitFor fails the test if ch yields nothing in time; events, not sleeps,
// order the tests.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func shutdownCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

// seriesValue returns the value of b's series of metric name with the
// given label pairs (name, value, ...), or -1 when there is none.
func seriesValue(t *testing.T, b *Balancer, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}
