package lb

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Passive health: an endpoint whose dial fails is ejected for a cool-down
// that starts at baseCooldown and doubles per consecutive failure up to
// maxCooldown.
const (
	baseCooldown = time.Second
	maxCooldown  = 30 * time.Second
)

// Pool is the endpoints of one service port. It is safe for concurrent use:
// requests read the endpoint list through an atomic pointer to an immutable
// slice, so Set never blocks them.
type Pool struct {
	name   string
	policy Policy

	eps atomic.Pointer[[]*endpoint] // immutable once stored
	seq atomic.Uint64               // round-robin counter

	// mu serialises Set and health transitions, which are rare; ejected
	// counts the current endpoints in cool-down so the common case (none)
	// skips the health checks entirely.
	mu      sync.Mutex
	ejected atomic.Int32
	// draining are removed endpoints that had requests in flight when
	// removed, kept (under mu) until InFlight sees them idle.
	draining []*endpoint
}

// EndpointStatus is a snapshot of one endpoint of a Pool.
type EndpointStatus struct {
	// Addr is the endpoint's host:port.
	Addr string
	// Healthy is false while the endpoint is ejected after failed dials.
	Healthy bool
	// Active is the number of requests (HTTP) or connections (TCP) in flight.
	Active int64
	// Requests is the number of requests or connections ever sent to it,
	// counting each attempt of a retried request.
	Requests uint64
}

// NewPool returns an empty pool; name is used in errors and logs.
func NewPool(name string, policy Policy) *Pool {
	p := &Pool{name: name, policy: policy}
	p.eps.Store(new([]*endpoint))
	return p
}

// Name returns the name given to NewPool.
func (p *Pool) Name() string { return p.name }

// Set replaces the endpoint list with addrs (host:port; duplicates are
// ignored). Endpoints that stay keep their health, counters and idle
// connections. Removed endpoints get no new requests; their requests in
// flight finish (drain), their idle upstream connections are closed now and
// their busy ones after the response instead of going back to the pool.
func (p *Pool) Set(addrs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.eps.Load()
	byAddr := make(map[string]*endpoint, len(old))
	for _, e := range old {
		byAddr[e.addr] = e
	}
	next := make([]*endpoint, 0, len(addrs))
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		e := byAddr[a]
		if e == nil {
			e = &endpoint{addr: a, pool: p}
		}
		next = append(next, e)
	}
	p.eps.Store(&next)
	var gone []*endpoint
	for _, e := range old {
		if !seen[e.addr] {
			e.removed.Store(true)
			if e.ejectedUntil.Load() != 0 {
				p.ejected.Add(-1)
			}
			gone = append(gone, e)
		}
	}
	for _, e := range gone {
		e.closeIdle()
		if e.active.Load() > 0 {
			p.draining = append(p.draining, e)
		}
	}
}

// InFlight is the number of requests (HTTP) or connections (TCP) in flight
// to addr, whether it is still in the pool or removed and draining: a
// caller about to stop the endpoint waits for zero.
func (p *Pool) InFlight(addr string) int64 {
	var n int64
	for _, e := range *p.eps.Load() {
		if e.addr == addr {
			n += e.active.Load()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.draining[:0]
	for _, e := range p.draining {
		a := e.active.Load()
		if a == 0 {
			continue
		}
		kept = append(kept, e)
		if e.addr == addr {
			n += a
		}
	}
	clear(p.draining[len(kept):])
	p.draining = kept
	return n
}

// Endpoints returns the current endpoints in the order Set gave them.
// Removed endpoints still draining are not listed.
func (p *Pool) Endpoints() []EndpointStatus {
	eps := *p.eps.Load()
	out := make([]EndpointStatus, len(eps))
	for i, e := range eps {
		out[i] = EndpointStatus{
			Addr:     e.addr,
			Healthy:  e.ejectedUntil.Load() == 0,
			Active:   e.active.Load(),
			Requests: e.requests.Load(),
		}
	}
	return out
}

func (p *Pool) endpoints() []*endpoint { return *p.eps.Load() }

// Pick chooses an endpoint, by the pool's policy and health, for one
// attempt of a request that another proxy (the Ingress server) sends
// itself. The attempt counts as in flight until release is called, once;
// release(true) reports that the endpoint could not be reached, which ejects
// it as a failed dial of this package's own proxy does, and release(false)
// restores an endpoint whose cool-down had ended. ok is false when the pool
// has no endpoints.
func (p *Pool) Pick() (addr string, release func(failed bool), ok bool) {
	var tried triedSet
	e, _ := p.pick(p.endpoints(), &tried, time.Now)
	if e == nil {
		return "", nil, false
	}
	e.requests.Add(1)
	e.active.Add(1)
	var done atomic.Bool
	return e.addr, func(failed bool) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		e.active.Add(-1)
		if failed {
			e.dialFailed(time.Now())
		} else {
			e.dialSucceeded()
		}
	}, true
}

// pick chooses the endpoint for the next attempt of a request, skipping
// those already tried. Endpoints in cool-down are skipped unless no other is
// left: trying a probably-dead endpoint beats a certain 503. probe is true
// when the endpoint is ejected: the attempt must dial, and its outcome
// restores or re-ejects the endpoint.
func (p *Pool) pick(eps []*endpoint, tried *triedSet, now func() time.Time) (e *endpoint, probe bool) {
	if len(eps) == 0 {
		return nil, false
	}
	seq := p.seq.Add(1) - 1
	if tried.n == 0 && p.ejected.Load() == 0 {
		return eps[p.policy.choose(eps, seq, nil)], false
	}
	t := now().UnixNano()
	i := p.policy.choose(eps, seq, func(i int) bool {
		return !tried.has(eps[i]) && eps[i].usable(t)
	})
	if i < 0 {
		i = p.policy.choose(eps, seq, func(i int) bool { return !tried.has(eps[i]) })
	}
	if i < 0 {
		return nil, false
	}
	e = eps[i]
	if e.ejectedUntil.Load() != 0 {
		e.probing.Store(true)
		return e, true
	}
	return e, false
}

// triedSet is the endpoints a request has tried; small requests need no
// allocation.
type triedSet struct {
	n     int
	small [8]*endpoint
	more  []*endpoint
}

func (t *triedSet) add(e *endpoint) {
	if t.n < len(t.small) {
		t.small[t.n] = e
	} else {
		t.more = append(t.more, e)
	}
	t.n++
}

func (t *triedSet) has(e *endpoint) bool {
	for i := 0; i < t.n && i < len(t.small); i++ {
		if t.small[i] == e {
			return true
		}
	}
	return slices.Contains(t.more, e)
}

// endpoint is one upstream address of a Pool.
type endpoint struct {
	addr string
	pool *Pool

	active   atomic.Int64
	requests atomic.Uint64

	// Health. Writes happen under pool.mu; reads are lock-free.
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 while healthy
	probing      atomic.Bool  // one request is trying the endpoint after its cool-down
	failures     int          // consecutive failed dials, under pool.mu
	removed      atomic.Bool  // no longer in the pool: draining

	idleMu sync.Mutex
	idle   []*upConn // LIFO: the most recently used connection is on top

	statsMu sync.Mutex
	stats   atomic.Pointer[[]*epStats] // per route, copy on write
}

// usable reports whether the endpoint may take a request at t: it is
// healthy, or its cool-down is over and nobody is probing it yet.
func (e *endpoint) usable(t int64) bool {
	until := e.ejectedUntil.Load()
	return until == 0 || (t >= until && !e.probing.Load())
}

// dialFailed ejects the endpoint, doubling its cool-down.
func (e *endpoint) dialFailed(now time.Time) {
	p := e.pool
	p.mu.Lock()
	e.failures++
	cool := maxCooldown
	if e.failures <= 6 {
		cool = min(baseCooldown<<(e.failures-1), maxCooldown)
	}
	if e.ejectedUntil.Load() == 0 && !e.removed.Load() {
		p.ejected.Add(1)
	}
	e.ejectedUntil.Store(now.Add(cool).UnixNano())
	e.probing.Store(false)
	p.mu.Unlock()
	// The listener is gone, so idle connections to it are likely dead too.
	e.closeIdle()
}

// dialSucceeded restores an ejected endpoint.
func (e *endpoint) dialSucceeded() {
	if e.ejectedUntil.Load() == 0 && !e.probing.Load() {
		return
	}
	p := e.pool
	p.mu.Lock()
	if e.ejectedUntil.Load() != 0 && !e.removed.Load() {
		p.ejected.Add(-1)
	}
	e.ejectedUntil.Store(0)
	e.failures = 0
	e.probing.Store(false)
	p.mu.Unlock()
}

// getIdle takes the most recently used idle connection, or returns nil.
func (e *endpoint) getIdle() *upConn {
	e.idleMu.Lock()
	n := len(e.idle)
	if n == 0 {
		e.idleMu.Unlock()
		return nil
	}
	c := e.idle[n-1]
	e.idle[n-1] = nil
	e.idle = e.idle[:n-1]
	e.idleMu.Unlock()
	return c
}

// putIdle keeps c for reuse and reports whether it did; a removed or ejected
// endpoint, or a full idle list, refuses it and the caller closes it.
func (e *endpoint) putIdle(c *upConn, limit int, now int64) bool {
	e.idleMu.Lock()
	if len(e.idle) >= limit || e.removed.Load() || e.ejectedUntil.Load() != 0 {
		e.idleMu.Unlock()
		return false
	}
	c.idleSince = now
	e.idle = append(e.idle, c)
	e.idleMu.Unlock()
	return true
}

// closeIdle closes every idle connection.
func (e *endpoint) closeIdle() {
	e.idleMu.Lock()
	idle := e.idle
	e.idle = nil
	e.idleMu.Unlock()
	for _, c := range idle {
		c.conn.Close()
	}
}

// closeIdleBefore closes the idle connections unused since before t. They
// sit at the bottom of the LIFO stack.
func (e *endpoint) closeIdleBefore(t int64) {
	e.idleMu.Lock()
	k := 0
	for k < len(e.idle) && e.idle[k].idleSince < t {
		k++
	}
	if k == 0 {
		e.idleMu.Unlock()
		return
	}
	old := slices.Clone(e.idle[:k])
	n := copy(e.idle, e.idle[k:])
	clear(e.idle[n:])
	e.idle = e.idle[:n]
	e.idleMu.Unlock()
	for _, c := range old {
		c.conn.Close()
	}
}

// upConn is a connection to an endpoint.
type upConn struct {
	conn      net.Conn
	ep        *endpoint
	idleSince int64 // unix nanoseconds, set while idle
}
