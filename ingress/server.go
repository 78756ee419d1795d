package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/http2"

	"github.com/fleetdev/fleet/lb"
)

// Upstreams picks an endpoint of a backend for one attempt; report says
// how the attempt went, once: the response's status and the time to its
// header, or status 0 when no response came, and failed when the
// endpoint could not be reached. The load balancer's pools provide it
// (lb.Pool.PickReport), and count it in their statistics.
type Upstreams interface {
	Pick(b Backend) (addr string, report func(status int, latency time.Duration, failed bool), ok bool)
}

// Server is the Ingress proxy: HTTP on HTTPAddr (ACME HTTP-01 challenges,
// redirects to HTTPS for tls hosts, routing for the others) and HTTPS on
// HTTPSAddr (HTTP/2 and HTTP/1.1, certificates from Certs).
//
// With Pools set, HTTPS is not served by Start but by the load balancer's
// fast path: HTTPSRoute is the route to give it (HTTP/1.1 requests are
// routed there in place; HTTP/2 connections come back to this Server).
type Server struct {
	HTTPAddr, HTTPSAddr string
	Certs               *Certificates
	// Pools, when set, gives the load balancer's pool of a backend, for
	// the fast HTTPS path.
	Pools func(b Backend) *lb.Pool
	// TLSConfig, when set, is the HTTPS listener's configuration instead
	// of Certs' (fixed certificates).
	TLSConfig *tls.Config
	Upstreams Upstreams
	Log       *slog.Logger

	table     atomic.Pointer[Table]
	routeOnce sync.Once
	route     lb.Route
	servers   []*http.Server
	httpsPort int
	wg        sync.WaitGroup
	proxy     *httputil.ReverseProxy
}

type backendKey struct{}

// SetTable swaps the routing table; requests in flight keep the old one.
func (s *Server) SetTable(t *Table) { s.table.Store(t) }

// Start listens on the configured addresses (either may be empty).
func (s *Server) Start() error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.table.Load() == nil {
		s.table.Store(&Table{})
	}
	base := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "upstream" // the transport picks the endpoint
			pr.Out.Host = pr.In.Host
		},
		// No flush per write (a TLS record per write is costly); Go flushes
		// streaming responses (no length, or event streams) at once anyway.
		Transport: &picking{up: s.Upstreams, base: base},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status := http.StatusBadGateway
			if errors.Is(err, errNoEndpoint) {
				status = http.StatusServiceUnavailable
			}
			http.Error(w, err.Error(), status)
		},
	}
	listen := func(addr string, tlsOn bool) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("ingress: listen on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)}
		if tlsOn {
			if s.TLSConfig == nil && s.Certs == nil {
				ln.Close()
				return fmt.Errorf("ingress: HTTPS on %s needs certificates (Certs or TLSConfig)", addr)
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			s.httpsPort, _ = strconv.Atoi(port)
			srv.TLSConfig = s.TLSConfig
			if srv.TLSConfig == nil {
				srv.TLSConfig = s.Certs.TLSConfig()
			}
			ln = newTLSListener(ln, srv.TLSConfig)
		}
		s.servers = append(s.servers, srv)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.Log.Error("ingress listener stopped", "address", addr, "err", err)
			}
		}()
		return nil
	}
	if s.Pools == nil {
		if err := listen(s.HTTPSAddr, true); err != nil {
			return err
		}
	} else if s.HTTPSAddr != "" {
		_, port, _ := net.SplitHostPort(s.HTTPSAddr)
		s.httpsPort, _ = strconv.Atoi(port)
	}
	return listen(s.HTTPAddr, false)
}

// HTTPSRoute is the load balancer route that serves HTTPS when Pools is
// set: TLS with Certs (or TLSConfig), HTTP/1.1 routed by the table in the
// fast path, HTTP/2 handed to this Server through x/net/http2, and
// TLS-ALPN-01 challenge connections closed after their handshake.
func (s *Server) HTTPSRoute() (lb.Route, bool) {
	if s.Pools == nil || s.HTTPSAddr == "" || s.TLSConfig == nil && s.Certs == nil {
		return lb.Route{}, false
	}
	s.routeOnce.Do(func() {
		cfg := s.TLSConfig
		if cfg == nil {
			cfg = s.Certs.TLSConfig()
		}
		h2 := &http2.Server{}
		base := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)}
		http2.ConfigureServer(base, h2) // Shutdown sends these connections GOAWAY
		s.servers = append(s.servers, base)
		s.route = lb.Route{
			Name: "ingress-https", Listen: s.HTTPSAddr, Mode: lb.HTTP, TLS: cfg,
			Router: func(host, path []byte) *lb.Pool {
				// host and path are not retained: no copies per request.
				b, ok := s.table.Load().Match(unsafe.String(unsafe.SliceData(host), len(host)), unsafe.String(unsafe.SliceData(path), len(path)))
				if !ok {
					return nil
				}
				return s.Pools(b)
			},
			Other: func(c *tls.Conn) {
				if c.ConnectionState().NegotiatedProtocol != "h2" {
					c.Close() // acme-tls/1: the handshake was the answer
					return
				}
				s.wg.Add(1) // Shutdown does not wait for ServeConn's connections otherwise
				defer s.wg.Done()
				h2.ServeConn(c, &http2.ServeConnOpts{BaseConfig: base, Handler: s})
			},
		}
	})
	return s.route, true
}

// Shutdown stops listening and lets requests in flight finish until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range s.servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// ServeHTTP routes one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil && s.Certs != nil && s.Certs.HandleHTTPChallenge(w, r) {
		return
	}
	t := s.table.Load()
	if r.TLS == nil && s.HTTPSAddr != "" {
		if _, ok := t.TLSIssuer(r.Host); ok {
			host := stripPort(r.Host)
			if s.httpsPort != 443 {
				host = net.JoinHostPort(host, strconv.Itoa(s.httpsPort))
			}
			http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
			return
		}
	}
	b, ok := t.Match(r.Host, r.URL.Path)
	if !ok {
		http.Error(w, fmt.Sprintf("no Ingress rule for host %q path %s", stripPort(r.Host), r.URL.Path), http.StatusNotFound)
		return
	}
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, b)))
}

var errNoEndpoint = errors.New("no ready endpoints")

// picking sends each attempt to an endpoint the Upstreams pick, and
// retries a request without a body elsewhere when an endpoint cannot be
// reached (nothing was sent).
type picking struct {
	up   Upstreams
	base *http.Transport
}

func (p *picking) RoundTrip(req *http.Request) (*http.Response, error) {
	b, _ := req.Context().Value(backendKey{}).(Backend)
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		addr, report, ok := p.up.Pick(b)
		if !ok {
			return nil, fmt.Errorf("%w for %s", errNoEndpoint, b)
		}
		out := req.Clone(req.Context())
		out.URL.Host = addr
		began := time.Now()
		resp, err := p.base.RoundTrip(out)
		if err == nil {
			report(resp.StatusCode, time.Since(began), false)
			return resp, nil
		}
		var op *net.OpError
		dialFailed := errors.As(err, &op) && op.Op == "dial"
		report(0, 0, dialFailed)
		last = fmt.Errorf("%s via %s: %w", b, addr, err)
		// A failed dial sent nothing, but the transport has closed the
		// request's body: only a request without one can go again.
		if !dialFailed || req.Body != nil && req.Body != http.NoBody {
			break
		}
	}
	return nil, last
}
