package lb

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testCert is a self-signed ECDSA P-256 certificate for a.test, b.test
// and 127.0.0.1, and the pool that trusts it.
type testCert struct {
	cert  tls.Certificate
	roots *x509.CertPool
}

func newTestCert(tb testing.TB) testCert {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a.test"},
		DNSNames: []string{"a.test", "b.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return testCert{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots: roots}
}

// serverConfig offers HTTP/2 first, as fleet's Ingress listener does.
func (c testCert) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.cert}, NextProtos: []string{"h2", "http/1.1"}}
}

// dialTLS opens a TLS connection offering protos (none: no ALPN).
func (c testCert) dialTLS(t *testing.T, addr string, protos ...string) *rawConn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: c.roots, ServerName: "a.test", NextProtos: protos})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: conn, br: bufio.NewReader(conn)}
}

// tlsRoute serves pool over HTTPS on a free port and returns the proxy's
// address; adjust changes the route before it is served.
func tlsRoute(t *testing.T, opts Options, cert testCert, pool *Pool, adjust ...func(*Route)) (*Balancer, string) {
	t.Helper()
	rt := Route{Name: "web", Listen: "127.0.0.1:0", Mode: HTTP, Pool: pool, TLS: cert.serverConfig()}
	for _, f := range adjust {
		f(&rt)
	}
	b := startBalancer(t, opts, rt)
	return b, b.Addr("web").String()
}

func TestBalancer_TLS(t *testing.T) {
	cert := newTestCert(t)

	t.Run("HTTP/1.1 requests over TLS share one kept-alive upstream connection and say https", func(t *testing.T) {
		protos := make(chan string, 100)
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			protos <- r.Header.Get("X-Forwarded-Proto")
			io.WriteString(w, "a")
		}))
		_, addr := tlsRoute(t, Options{}, cert, poolOf("p", RoundRobin, bk.addr()))
		for _, offer := range [][]string{{"http/1.1"}, nil} {
			c := cert.dialTLS(t, addr, offer...)
			if got := c.Conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; got != strings.Join(offer, "") {
				t.Errorf("offering %q negotiated %q", offer, got)
			}
			for i := range 10 {
				resp, body := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
				if resp.StatusCode != 200 || body != "a" || resp.Close {
					t.Fatalf("offering %q, request %d: %d %q close=%v", offer, i, resp.StatusCode, body, resp.Close)
				}
				if p := waitFor(t, protos, "the request"); p != "https" {
					t.Errorf("endpoint got X-Forwarded-Proto %q, want https", p)
				}
			}
		}
		if n := bk.ln.accepted.Load(); n != 1 {
			t.Errorf("backend accepted %d connections, want 1", n)
		}
	})

	t.Run("a client that offers only h2 is handed to Other", func(t *testing.T) {
		bk := namedBackend(t, "a")
		got := make(chan string, 1)
		_, addr := tlsRoute(t, Options{}, cert, poolOf("p", RoundRobin, bk.addr()), func(rt *Route) {
			rt.Other = func(conn *tls.Conn) {
				got <- conn.ConnectionState().NegotiatedProtocol
				io.WriteString(conn, "marker")
				conn.Close()
			}
		})
		c := cert.dialTLS(t, addr, "h2")
		all, err := io.ReadAll(c.br)
		if err != nil || string(all) != "marker" {
			t.Errorf("read %q, %v; want the marker Other wrote", all, err)
		}
		if p := waitFor(t, got, "Other"); p != "h2" {
			t.Errorf("Other got a connection that negotiated %q, want h2", p)
		}
	})

	t.Run("without Other an h2 connection is closed", func(t *testing.T) {
		_, addr := tlsRoute(t, Options{}, cert, poolOf("p", RoundRobin, namedBackend(t, "a").addr()))
		c := cert.dialTLS(t, addr, "h2")
		if n, err := c.br.Read(make([]byte, 1)); err == nil {
			t.Errorf("read %d bytes, want the connection closed", n)
		}
	})

	t.Run("a failed handshake is counted and does not disturb other connections", func(t *testing.T) {
		bk := namedBackend(t, "a")
		b, addr := tlsRoute(t, Options{}, cert, poolOf("p", RoundRobin, bk.addr()))
		good := cert.dialTLS(t, addr, "http/1.1")
		ask := func() {
			t.Helper()
			if resp, body := good.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); resp.StatusCode != 200 || body != "a" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
		}
		ask()
		probe := dialRaw(t, addr) // a port probe: connects and leaves, not counted
		probe.Close()
		bad := dialRaw(t, addr)
		io.WriteString(bad, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n") // plain HTTP to the TLS port
		io.Copy(io.Discard, bad)                                      // until the proxy hangs up
		ask()
		want := `
# HELP fleet_lb_tls_handshake_errors_total TLS handshakes that failed or timed out on the route's listener; connections closed before sending anything are not counted.
# TYPE fleet_lb_tls_handshake_errors_total counter
fleet_lb_tls_handshake_errors_total{route="web"} 1
`
		if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(want), "fleet_lb_tls_handshake_errors_total"); err != nil {
			t.Error(err)
		}
	})

	t.Run("a handshake not finished within HandshakeTimeout is cut off and counted", func(t *testing.T) {
		b, addr := tlsRoute(t, Options{HandshakeTimeout: 50 * time.Millisecond}, cert, poolOf("p", RoundRobin, namedBackend(t, "a").addr()))
		silent := dialRaw(t, addr) // sends nothing
		if n, err := silent.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes from a connection that never sent a ClientHello", n)
		}
		if got := seriesValue(t, b, "fleet_lb_tls_handshake_errors_total", "route", "web"); got != 1 {
			t.Errorf("%v handshake errors counted, want 1", got)
		}
	})

	t.Run("an upgraded TLS connection copies bytes both ways", func(t *testing.T) {
		up := echoUpgradeBackend(t)
		_, addr := tlsRoute(t, Options{}, cert, poolOf("p", RoundRobin, up))
		c := cert.dialTLS(t, addr, "http/1.1")
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly;")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		io.WriteString(c, "later")
		if err := c.Conn.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(c.br)
		if err != nil {
			t.Fatal(err)
		}
		if string(rest) != "welcome;early;later" {
			t.Errorf("got %q, want %q", rest, "welcome;early;later")
		}
	})

	t.Run("Shutdown closes idle TLS connections and lets a request in flight finish", func(t *testing.T) {
		held, release := make(chan string, 1), make(chan struct{})
		bk := holdBackend(t, "a", held, release)
		b, addr := tlsRoute(t, Options{}, cert, poolOf("p", RoundRobin, bk.addr()))
		idle := cert.dialTLS(t, addr, "http/1.1")
		idle.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		busy := cert.dialTLS(t, addr, "http/1.1")
		io.WriteString(busy, "GET /hold HTTP/1.1\r\nHost: a.test\r\n\r\n")
		waitFor(t, held, "the held request")
		stopped := make(chan error)
		go func() { stopped <- b.Shutdown(shutdownCtx(t)) }()
		if n, err := idle.br.Read(make([]byte, 1)); err == nil {
			t.Errorf("idle connection: read %d bytes, want it closed", n)
		}
		close(release)
		resp, body := busy.readResponse(t, "GET")
		if resp.StatusCode != 200 || body != "a" || !resp.Close {
			t.Errorf("request in flight: %d %q, close=%v; want 200 a and Connection: close", resp.StatusCode, body, resp.Close)
		}
		if err := waitFor(t, stopped, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})

	t.Run("a TLS connection idle past IdleTimeout is closed by the sweep", func(t *testing.T) {
		var clock atomic.Int64
		clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		b, addr := tlsRoute(t, Options{Now: now, IdleTimeout: time.Minute}, cert, poolOf("p", RoundRobin, namedBackend(t, "a").addr()))
		c := cert.dialTLS(t, addr, "http/1.1")
		c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		clock.Add(int64(2 * time.Minute))
		b.sweepOnce(now())
		if n, err := c.br.Read(make([]byte, 1)); err == nil {
			t.Errorf("read %d bytes, want the idle connection closed", n)
		}
	})
}

// echoUpgradeBackend accepts one connection, answers its upgrade request
// with 101 and "welcome;", then echoes until the client half-closes.
func echoUpgradeBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if err := skipHead(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nwelcome;")
		io.Copy(c, br)
	}()
	return ln.Addr().String()
}
