package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how a listener proxies.
type Mode int

const (
	// TCP copies bytes both ways between a client connection and a
	// connection to one endpoint, with half-close.
	TCP Mode = iota
	// HTTP proxies HTTP/1.x requests one at a time, keeping connections
	// alive on both sides and balancing each request separately.
	HTTP
)

// String returns "tcp" or "http".
func (m Mode) String() string {
	switch m {
	case TCP:
		return "tcp"
	case HTTP:
		return "http"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Route is one listening address and the pool behind it.
type Route struct {
	// Name identifies the route in Update's errors, metrics and logs.
	Name string
	// Listen is the host:port to listen on; port 0 picks a free port (see
	// Balancer.Addr).
	Listen string
	// Mode is how the listener proxies.
	Mode Mode
	// Pool holds the endpoints; several routes may share one.
	Pool *Pool

	// TLS, when set, makes the listener terminate TLS with this configuration
	// (certificates, ALPN). Connections that negotiate "http/1.1" or no ALPN
	// protocol are served by the HTTP/1.1 fast path (Mode must be HTTP);
	// connections that negotiate another protocol (e.g. "h2") are handed to
	// Other, if set, else closed. NextProtos should therefore list
	// "http/1.1", after "h2" when Other serves HTTP/2. The handshake runs in
	// the connection's goroutine within Options.HandshakeTimeout. On a kept
	// route, Update's new configuration applies to new connections.
	TLS *tls.Config
	// Other serves TLS connections that negotiated a protocol the fast path
	// does not speak: called with the *tls.Conn after the handshake, in its
	// own goroutine; it owns the connection. (fleet passes HTTP/2 to
	// golang.org/x/net/http2 here, and closes "acme-tls/1" challenge
	// connections, whose certificate was already served in the handshake.)
	// The connection no longer counts as the route's: Shutdown neither
	// waits for it nor closes it. It is not called once the route is
	// closing or the balancer shutting down; the connection is closed then.
	Other func(conn *tls.Conn)
	// Router, when set, picks the pool for each request of an HTTP route
	// from its Host header (as sent, port included) and path (without the
	// query); Pool is then unused. A nil pool answers 404 with a short
	// text naming the host and path (no rule). Router must be cheap and safe
	// for concurrent use; host and path alias the read buffer and must not be
	// retained.
	//
	// The path is the request target as sent, not percent-decoded; for an
	// absolute-form target (http://host/path) it is the part after the
	// authority, and "*" for OPTIONS *. host is empty when the request has
	// no Host field (HTTP/1.0).
	Router func(host, path []byte) *Pool
	// Redirect, when set, is consulted before routing: a non-empty result is
	// sent as a 308 Permanent Redirect to that location (fleet redirects
	// plain-HTTP requests for TLS hosts to https). requestURI is the target
	// as sent, query included (path and query for an absolute-form
	// target); both arguments alias the read buffer like Router's. A
	// location with control characters is answered 500 instead.
	Redirect func(host, requestURI []byte) string
}

// Options configure a Balancer. The zero value is usable.
type Options struct {
	// DialTimeout bounds each connection attempt to an endpoint; a dial that
	// times out or is refused ejects the endpoint. Default 2s.
	DialTimeout time.Duration
	// IdleConnsPerEndpoint is how many kept-alive upstream connections stay
	// idle per endpoint for reuse. Default 64; negative keeps none.
	IdleConnsPerEndpoint int
	// IdleTimeout closes client connections idle between requests for
	// longer. Default 90s.
	IdleTimeout time.Duration
	// UpstreamIdleTimeout closes upstream connections idle in the pool for
	// longer, before backends with their own idle timeout close them under
	// a request. Default 30s.
	UpstreamIdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake of a connection to a route
	// with TLS; a client that has not finished it by then is disconnected
	// and counted as a failed handshake. Default 10s.
	HandshakeTimeout time.Duration
	// Log receives route changes, ejections and proxy errors. Default: discard.
	Log *slog.Logger
	// Now is the clock for cool-downs, idle timeouts and durations.
	// Default time.Now.
	Now func() time.Time
}

// Default option values.
const (
	DefaultDialTimeout          = 2 * time.Second
	DefaultIdleConnsPerEndpoint = 64
	DefaultIdleTimeout          = 90 * time.Second
	DefaultUpstreamIdleTimeout  = 30 * time.Second
	DefaultHandshakeTimeout     = 10 * time.Second
)

// sweepInterval is how often idle client and upstream connections are
// checked against their timeouts: cheaper than a deadline per request.
const sweepInterval = time.Second

// Balancer owns the listeners of a set of routes and proxies their traffic.
type Balancer struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	dialer net.Dialer

	// life is the balancer's lifetime, not a request's: cancelling it
	// aborts dials in flight when Close or an expired Shutdown gives up.
	life   context.Context
	cancel context.CancelFunc

	draining atomic.Bool // Shutdown started: close client connections after their request

	mu     sync.Mutex
	routes map[string]*route
	conns  map[*clientConn]struct{}
	shut   bool
	wg     sync.WaitGroup // accept loops and connections

	stopSweep chan struct{}
	sweepDone chan struct{}
}

// route is a listening Route.
type route struct {
	name   string
	listen string
	mode   Mode
	ln     net.Listener
	cfg    atomic.Pointer[routeConfig]

	closing    atomic.Bool // removed by Update or Shutdown
	active     atomic.Int64
	own        [numClasses]atomic.Uint64 // answered without an endpoint: 503 (error), 404 (4xx), 308 (3xx)
	handshakes atomic.Uint64             // failed TLS handshakes
	hist       histogram

	// usedMu guards used: the pools the route sent requests to lately,
	// which the sweep, Shutdown and the collector go through. Requests
	// never take it in steady state (see usedPool.touch).
	usedMu sync.Mutex
	used   []*usedPool
}

// routeConfig is what Update may change on a kept route. A request reads
// it with one atomic load.
type routeConfig struct {
	pool     *Pool
	tls      *tls.Config
	other    func(*tls.Conn)
	router   func(host, path []byte) *Pool
	redirect func(host, requestURI []byte) string
}

func configOf(rt Route) *routeConfig {
	cfg := &routeConfig{tls: rt.TLS, other: rt.Other, router: rt.Router, redirect: rt.Redirect}
	if rt.Router == nil {
		cfg.pool = rt.Pool
	}
	return cfg
}

// poolDesc names the pool of cfg in logs.
func (cfg *routeConfig) poolDesc() string {
	if cfg.router != nil {
		return "(per request)"
	}
	return cfg.pool.name
}

// Client connection states, for closing idle connections without racing a
// request that is starting.
const (
	connIdle int32 = iota
	connBusy
	connClosed
)

// clientConn is an accepted connection.
type clientConn struct {
	// conn is the accepted TCP connection: closing it from another
	// goroutine stops whatever its goroutine does, TLS included, without
	// waiting to send a TLS alert to a client that may not read.
	conn       net.Conn
	r          *route
	state      atomic.Int32
	lastActive atomic.Int64           // unix nanoseconds
	up         atomic.Pointer[upConn] // upstream in use, closed too when forced
}

// closeIfIdle closes the connection if no request is in progress on it.
func (c *clientConn) closeIfIdle() {
	if c.state.CompareAndSwap(connIdle, connClosed) {
		c.conn.Close()
	}
}

func (c *clientConn) forceClose() {
	c.state.Store(connClosed)
	c.conn.Close()
	if u := c.up.Load(); u != nil {
		u.conn.Close()
	}
}

// New returns a Balancer with no routes; Update gives it some.
func New(opts Options) *Balancer {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.IdleConnsPerEndpoint == 0 {
		opts.IdleConnsPerEndpoint = DefaultIdleConnsPerEndpoint
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.UpstreamIdleTimeout <= 0 {
		opts.UpstreamIdleTimeout = DefaultUpstreamIdleTimeout
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Balancer{
		opts:      opts,
		log:       log.With("component", "lb"),
		now:       opts.Now,
		dialer:    net.Dialer{Timeout: opts.DialTimeout},
		life:      ctx,
		cancel:    cancel,
		routes:    make(map[string]*route),
		conns:     make(map[*clientConn]struct{}),
		stopSweep: make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	go b.sweep()
	return b
}

// ErrShutdown is returned by Update for every route once Shutdown or Close
// was called.
var ErrShutdown = errors.New("lb: balancer is shut down")

// Update makes the balancer serve exactly routes. It opens listeners for new
// routes; closes removed ones (no new connections; connections in flight
// finish, HTTP ones after their current request); and re-points kept routes
// to their possibly new pool, Router and Redirect without closing anything
// (a new TLS configuration or Other applies to new connections). A route
// whose Listen or Mode changed is closed and opened again. The result holds
// an error for each route that could not be served (invalid, duplicate name,
// address in use), keyed by Route.Name; the other routes are unaffected. It
// is nil when all routes are served.
func (b *Balancer) Update(routes []Route) map[string]error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs map[string]error
	fail := func(name string, err error) {
		if errs == nil {
			errs = make(map[string]error)
		}
		errs[name] = err
	}
	if b.shut {
		for _, rt := range routes {
			fail(rt.Name, ErrShutdown)
		}
		return errs
	}
	want := make(map[string]Route, len(routes))
	order := make([]string, 0, len(routes))
	for _, rt := range routes {
		if _, dup := want[rt.Name]; dup {
			fail(rt.Name, fmt.Errorf("lb: route %q: listed twice", rt.Name))
			continue
		}
		switch {
		case rt.Pool == nil && rt.Router == nil:
			fail(rt.Name, fmt.Errorf("lb: route %q: no pool", rt.Name))
			continue
		case rt.Mode != TCP && rt.Mode != HTTP:
			fail(rt.Name, fmt.Errorf("lb: route %q: unknown mode %d", rt.Name, int(rt.Mode)))
			continue
		case rt.Mode != HTTP && (rt.TLS != nil || rt.Router != nil || rt.Redirect != nil):
			fail(rt.Name, fmt.Errorf("lb: route %q: TLS, Router and Redirect need mode http, not %s", rt.Name, rt.Mode))
			continue
		case rt.Other != nil && rt.TLS == nil:
			fail(rt.Name, fmt.Errorf("lb: route %q: Other is set without TLS", rt.Name))
			continue
		}
		want[rt.Name] = rt
		order = append(order, rt.Name)
	}
	for name, r := range b.routes {
		rt, ok := want[name]
		if ok && rt.Listen == r.listen && rt.Mode == r.mode {
			continue
		}
		b.closeRouteLocked(r)
		delete(b.routes, name)
	}
	for _, name := range order {
		rt := want[name]
		cfg := configOf(rt)
		if r := b.routes[name]; r != nil {
			old := r.cfg.Swap(cfg)
			if old.pool != cfg.pool || (old.router == nil) != (cfg.router == nil) {
				b.log.Info("route re-pointed", "route", name, "pool", cfg.poolDesc())
			}
			continue
		}
		ln, err := (&net.ListenConfig{}).Listen(b.life, "tcp", rt.Listen)
		if err != nil {
			fail(name, fmt.Errorf("lb: route %q: listen on %s: %w", name, rt.Listen, err))
			continue
		}
		r := &route{name: name, listen: rt.Listen, mode: rt.Mode, ln: ln}
		r.cfg.Store(cfg)
		b.routes[name] = r
		b.wg.Add(1)
		go b.accept(r)
		b.log.Info("route listening", "route", name, "addr", ln.Addr().String(), "mode", rt.Mode.String(),
			"pool", cfg.poolDesc(), "tls", cfg.tls != nil)
	}
	return errs
}

// closeRouteLocked stops a route's listener and closes its idle
// connections; busy HTTP connections close after their request.
func (b *Balancer) closeRouteLocked(r *route) {
	r.closing.Store(true)
	r.ln.Close()
	for c := range b.conns {
		if c.r == r {
			c.closeIfIdle()
		}
	}
	b.log.Info("route closed", "route", r.name, "addr", r.ln.Addr().String())
}

// Addr returns the address a route listens on, which tells the port chosen
// for a Listen with port 0, or nil if the route is not listening.
func (b *Balancer) Addr(route string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.routes[route]; r != nil {
		return r.ln.Addr()
	}
	return nil
}

func (b *Balancer) routeList() []*route {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*route, 0, len(b.routes))
	for _, r := range b.routes {
		out = append(out, r)
	}
	return out
}

// accept runs a route's accept loop until its listener closes.
func (b *Balancer) accept(r *route) {
	defer b.wg.Done()
	var backoff time.Duration
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || r.closing.Load() {
				return
			}
			// Out of file descriptors and the like: wait rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.log.Warn("accept", "route", r.name, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-b.life.Done():
				return
			}
			continue
		}
		backoff = 0
		c := &clientConn{conn: conn, r: r}
		c.lastActive.Store(b.now().UnixNano())
		b.mu.Lock()
		if b.shut || r.closing.Load() {
			b.mu.Unlock()
			conn.Close()
			continue
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		r.active.Add(1)
		if r.mode == HTTP {
			go b.serveHTTP(c)
		} else {
			go b.serveTCP(c)
		}
	}
}

// release forgets a finished connection.
func (b *Balancer) release(c *clientConn) {
	c.r.active.Add(-1)
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	b.wg.Done()
}

// sweep runs sweepOnce every sweepInterval until Shutdown.
func (b *Balancer) sweep() {
	defer close(b.sweepDone)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stopSweep:
			return
		case <-t.C:
		}
		b.sweepOnce(b.now())
	}
}

// sweepOnce closes client connections idle past IdleTimeout and upstream
// connections idle past UpstreamIdleTimeout, and makes routes forget the
// pools they stopped using.
func (b *Balancer) sweepOnce(now time.Time) {
	ns := now.UnixNano()
	clientBefore := ns - int64(b.opts.IdleTimeout)
	upBefore := ns - int64(b.opts.UpstreamIdleTimeout)
	b.mu.Lock()
	var stale []*clientConn
	for c := range b.conns {
		if c.state.Load() == connIdle && c.lastActive.Load() < clientBefore {
			stale = append(stale, c)
		}
	}
	routes := make([]*route, 0, len(b.routes))
	for _, r := range b.routes {
		routes = append(routes, r)
	}
	b.mu.Unlock()
	for _, c := range stale {
		c.closeIfIdle()
	}
	pools := make(map[*Pool]bool, len(routes))
	var forgotten []*Pool
	for _, r := range routes {
		if p := r.cfg.Load().pool; p != nil {
			pools[p] = true
		}
		live, gone := r.agePools(now)
		for _, p := range live {
			pools[p] = true
		}
		forgotten = append(forgotten, gone...)
	}
	for p := range pools {
		for _, e := range p.endpoints() {
			e.closeIdleBefore(upBefore)
		}
	}
	// No route sweeps a pool all of them forgot: nothing must stay open
	// for it.
	for _, p := range forgotten {
		if !pools[p] {
			for _, e := range p.endpoints() {
				e.closeIdle()
			}
		}
	}
}

// Shutdown stops accepting on every listener, closes client connections idle
// between requests, and waits for requests and TCP connections in flight to
// finish (HTTP connections close after their current request). When ctx ends
// first, it closes everything still open and returns ctx's error. Idle
// upstream connections of the routes' pools are closed at the end.
func (b *Balancer) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	var pools []*Pool
	if !b.shut {
		b.shut = true
		b.draining.Store(true)
		close(b.stopSweep)
		for name, r := range b.routes {
			r.closing.Store(true)
			r.ln.Close()
			if p := r.cfg.Load().pool; p != nil {
				pools = append(pools, p)
			}
			pools = append(pools, r.usedPools()...)
			delete(b.routes, name)
		}
	}
	conns := b.connList()
	b.mu.Unlock()
	for _, c := range conns {
		c.closeIfIdle()
	}
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		b.cancel()
		b.mu.Lock()
		conns = b.connList()
		b.mu.Unlock()
		for _, c := range conns {
			c.forceClose()
		}
		<-done
	}
	b.cancel()
	<-b.sweepDone
	for _, p := range pools {
		for _, e := range p.endpoints() {
			e.closeIdle()
		}
	}
	return err
}

func (b *Balancer) connList() []*clientConn {
	out := make([]*clientConn, 0, len(b.conns))
	for c := range b.conns {
		out = append(out, c)
	}
	return out
}

// Close stops every listener and closes every connection at once; requests
// in flight fail. Shutdown is the graceful way.
func (b *Balancer) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// dial opens a connection to e and counts it.
func (b *Balancer) dial(e *endpoint, s *epStats) (*upConn, error) {
	s.dials.Add(1)
	conn, err := b.dialer.DialContext(b.life, "tcp", e.addr)
	if err != nil {
		if b.life.Err() == nil {
			now := b.now()
			wasHealthy := e.ejectedUntil.Load() == 0
			e.dialFailed(now)
			if wasHealthy {
				b.log.Warn("endpoint ejected", "pool", e.pool.name, "endpoint", e.addr, "err", err)
			}
		}
		return nil, err
	}
	if e.ejectedUntil.Load() != 0 {
		b.log.Info("endpoint restored", "pool", e.pool.name, "endpoint", e.addr)
	}
	e.dialSucceeded()
	return &upConn{conn: conn, ep: e}, nil
}
