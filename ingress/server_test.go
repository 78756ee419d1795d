package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetdev/fleet/lb"
	"github.com/fleetdev/fleet/spec"
)

type staticUpstreams map[Backend][]string

func (u staticUpstreams) Pick(b Backend) (string, func(int, time.Duration, bool), bool) {
	addrs := u[b]
	if len(addrs) == 0 {
		return "", nil, false
	}
	return addrs[0], func(int, time.Duration, bool) {}, true
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.Host+" "+r.URL.Path+" xff="+r.Header.Get("X-Forwarded-For")+" proto="+r.Header.Get("X-Forwarded-Proto")+" "+r.Proto)
	}))
	defer backend.Close()
	var ings []*spec.Ingress
	svcs := map[string]*spec.Service{}
	for _, o := range parseIngress(t, tableManifest) {
		switch o := o.(type) {
		case *spec.Ingress:
			o.Annotations[spec.AnnotationTLS] = "internal"
			ings = append(ings, o)
		case *spec.Service:
			svcs[o.Namespace+"/"+o.Name] = o
		}
	}
	table, _ := Build(ings, svcs)
	st, _ := newStorage(t, "serve")
	certs := &Certificates{Storage: st}
	certs.Start(ctx)
	defer certs.Stop()
	certs.SetHosts(table.TLSIssuers())
	s := &Server{HTTPAddr: freeAddr(t), HTTPSAddr: freeAddr(t), Certs: certs,
		Upstreams: staticUpstreams{"default/web:80": {strings.TrimPrefix(backend.URL, "http://")}}}
	s.SetTable(table)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)
	root, _ := certs.InternalRoot(ctx)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				// Every test host resolves to the server.
				_, port, _ := net.SplitHostPort(addr)
				target := s.HTTPAddr
				if _, p, _ := net.SplitHostPort(s.HTTPSAddr); p == port {
					target = s.HTTPSAddr
				}
				return (&net.Dialer{}).DialContext(ctx, network, target)
			},
		},
	}
	get := func(url string) (int, string, string) {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Location")
	}
	_, httpsPort, _ := net.SplitHostPort(s.HTTPSAddr)
	_, httpPort, _ := net.SplitHostPort(s.HTTPAddr)
	t.Run("plain HTTP to a tls host is redirected to HTTPS", func(t *testing.T) {
		code, _, loc := get("http://shop.test:" + httpPort + "/x?y=1")
		if code != http.StatusPermanentRedirect || loc != "https://shop.test:"+httpsPort+"/x?y=1" {
			t.Fatalf("%d %q", code, loc)
		}
	})
	t.Run("HTTPS with HTTP/2 reaches the backend with forwarding headers", func(t *testing.T) {
		resp, err := client.Get("https://shop.test:" + httpsPort + "/")
		if err != nil || resp.Proto != "HTTP/2.0" {
			t.Fatalf("HTTPS: %v, protocol %v", err, resp)
		}
		resp.Body.Close()
		code, body, _ := get("https://shop.test:" + httpsPort + "/api/exact")
		if code != 200 || !strings.Contains(body, "hello shop.test:"+httpsPort+" /api/exact") || !strings.Contains(body, "xff=127.0.0.1") || !strings.Contains(body, "proto=https") {
			t.Fatalf("%d %q", code, body)
		}
	})
	t.Run("a backend with no endpoints is 503, an unrouted host 404 without a default", func(t *testing.T) {
		if code, body, _ := get("https://shop.test:" + httpsPort + "/api/v1"); code != 503 || !strings.Contains(body, "no ready endpoints for default/api:8080") {
			t.Fatalf("%d %q", code, body)
		}
		empty, _ := Build(nil, nil)
		s.SetTable(empty)
		defer s.SetTable(table)
		if code, body, _ := get("http://nowhere.test:" + httpPort + "/"); code != 404 || !strings.Contains(body, `no Ingress rule for host "nowhere.test"`) {
			t.Fatalf("%d %q", code, body)
		}
	})
}

// The same Ingress served over HTTPS by the load balancer's fast path, as
// fleet serve runs it: HTTP/1.1 routed in place, HTTP/2 handed back.
func TestServer_FastHTTPS(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path+" proto="+r.Header.Get("X-Forwarded-Proto"))
	}))
	defer backend.Close()
	var ings []*spec.Ingress
	svcs := map[string]*spec.Service{}
	for _, o := range parseIngress(t, tableManifest) {
		switch o := o.(type) {
		case *spec.Ingress:
			o.Annotations[spec.AnnotationTLS] = "internal"
			ings = append(ings, o)
		case *spec.Service:
			svcs[o.Namespace+"/"+o.Name] = o
		}
	}
	table, _ := Build(ings, svcs)
	st, _ := newStorage(t, "serve")
	certs := &Certificates{Storage: st}
	certs.Start(ctx)
	defer certs.Stop()
	certs.SetHosts(table.TLSIssuers())
	web := lb.NewPool("default/web:80", lb.RoundRobin)
	web.Set([]string{strings.TrimPrefix(backend.URL, "http://")})
	s := &Server{HTTPSAddr: freeAddr(t), Certs: certs,
		Upstreams: staticUpstreams{"default/web:80": {strings.TrimPrefix(backend.URL, "http://")}},
		Pools: func(b Backend) *lb.Pool {
			if b == "default/web:80" {
				return web
			}
			return nil
		}}
	s.SetTable(table)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	bal := lb.New(lb.Options{})
	defer bal.Shutdown(ctx)
	route, ok := s.HTTPSRoute()
	if !ok {
		t.Fatal("no HTTPS route")
	}
	if errs := bal.Update([]lb.Route{route}); errs[route.Name] != nil {
		t.Fatal(errs[route.Name])
	}
	root, _ := certs.InternalRoot(ctx)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, s.HTTPSAddr)
	}
	_, port, _ := net.SplitHostPort(s.HTTPSAddr)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
		}
		client := &http.Client{Transport: tr}
		resp, err := client.Get("https://shop.test:" + port + "/api/exact")
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		if resp.StatusCode != 200 || resp.Proto != wantProto || string(b) != "hello /api/exact proto=https" {
			t.Fatalf("h2=%v: %d %s %q", h2, resp.StatusCode, resp.Proto, b)
		}
		resp, err = client.Get("https://shop.test:" + port + "/api/v1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusNotFound {
			t.Fatalf("h2=%v: a backend without a pool answered %d", h2, resp.StatusCode)
		}
	}
}
