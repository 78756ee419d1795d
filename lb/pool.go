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

// Pool is the endpoints of one service port, possibly split into stable
// and canary ones (SetWeighted). It is safe for concurrent use: requests
// read the endpoint list and split through an atomic pointer to an
// immutable value, so Set never blocks them, and count their statistics
// (Stats) with atomics.
type Pool struct {
	name   string
	policy Policy

	eps atomic.Pointer[members]
	// Round-robin counters: seq for the stable endpoints (all of them
	// without a canary), canarySeq for the canary ones, so that each group
	// is taken in turn whatever the split; splitSeq orders the canary's
	// share of the picks.
	seq       atomic.Uint64
	canarySeq atomic.Uint64
	splitSeq  atomic.Uint64

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
	// Canary is true for an endpoint SetWeighted listed as canary.
	Canary bool
}

// members is a pool's endpoint list as Set or SetWeighted left it,
// immutable once stored: a request reads the list and its split with one
// atomic load.
type members struct {
	all     []*endpoint // the stable endpoints, then the canary ones
	nStable int
	// split is set when both groups have endpoints: a pick chooses the
	// group first. With one group empty the pool is picked as a whole.
	split         bool
	canaryPercent int
}

// NewPool returns an empty pool; name is used in errors and logs.
func NewPool(name string, policy Policy) *Pool {
	p := &Pool{name: name, policy: policy}
	p.eps.Store(&members{})
	return p
}

// Policy returns the policy given to NewPool.
func (p *Pool) Policy() Policy { return p.policy }

// Set replaces the endpoint list with addrs (host:port; duplicates are
// ignored). Endpoints that stay keep their health, counters and idle
// connections. Removed endpoints get no new requests; their requests in
// flight finish (drain), their idle upstream connections are closed now and
// their busy ones after the response instead of going back to the pool.
// Set(addrs) is SetWeighted(addrs, nil, 0): it ends any canary split.
func (p *Pool) Set(addrs []string) { p.SetWeighted(addrs, nil, 0) }

// SetWeighted replaces the endpoint list with stable and canary together,
// as Set does (in one step: a request sees the old list and split or the
// new ones), and sends canaryPercent percent of the picks (clamped to
// 0..100) to the canary endpoints and the rest to the stable ones. An
// address in both lists is canary. Endpoints that stay, even when they
// change group, keep their health, counters (see Stats) and idle
// connections; removed ones drain.
//
// The split is exact, not random: of any 100 consecutive picks while both
// groups have a usable endpoint, canaryPercent go to the canary. At 0 the
// canary endpoints get no requests and at 100 the stable ones get none
// (a blue-green preview, then the switch). Within a group the pool's
// Policy chooses. Availability beats the split: when the chosen group has
// no usable endpoint (it is empty, or every endpoint is ejected after
// failed dials or was already tried by this request) the pick goes to the
// other group, so a retry after a failed dial may cross over, and at 0 a
// canary endpoint does take requests while no stable one can.
//
// The split applies to every pick of the pool: the TCP and HTTP routes of
// a Balancer and Pick. Without canary endpoints a pick costs what it did
// before SetWeighted existed.
func (p *Pool) SetWeighted(stable, canary []string, canaryPercent int) {
	canaryPercent = min(max(canaryPercent, 0), 100)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.eps.Load().all
	byAddr := make(map[string]*endpoint, len(old))
	for _, e := range old {
		byAddr[e.addr] = e
	}
	inCanary := make(map[string]bool, len(canary))
	for _, a := range canary {
		inCanary[a] = true
	}
	next := make([]*endpoint, 0, len(stable)+len(canary))
	seen := make(map[string]bool, len(stable)+len(canary))
	add := func(a string) {
		if seen[a] {
			return
		}
		seen[a] = true
		e := byAddr[a]
		if e == nil {
			e = &endpoint{addr: a, pool: p}
		}
		next = append(next, e)
	}
	for _, a := range stable {
		if !inCanary[a] {
			add(a)
		}
	}
	nStable := len(next)
	for _, a := range canary {
		add(a)
	}
	p.eps.Store(&members{
		all:           next,
		nStable:       nStable,
		split:         nStable > 0 && nStable < len(next),
		canaryPercent: canaryPercent,
	})
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
	for _, e := range p.endpoints() {
		if e.addr == addr {
			n += e.active.Load()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.drainingLocked() {
		if e.addr == addr {
			n += e.active.Load()
		}
	}
	return n
}

// drainingLocked forgets the removed endpoints that finished draining and
// returns the others.
func (p *Pool) drainingLocked() []*endpoint {
	kept := p.draining[:0]
	for _, e := range p.draining {
		if e.active.Load() > 0 {
			kept = append(kept, e)
		}
	}
	clear(p.draining[len(kept):])
	p.draining = kept
	return kept
}

// Endpoints returns the current endpoints in the order Set gave them
// (SetWeighted: the stable ones, then the canary ones). Removed endpoints
// still draining are not listed.
func (p *Pool) Endpoints() []EndpointStatus {
	m := p.eps.Load()
	out := make([]EndpointStatus, len(m.all))
	for i, e := range m.all {
		out[i] = EndpointStatus{
			Addr:     e.addr,
			Healthy:  e.ejectedUntil.Load() == 0,
			Active:   e.active.Load(),
			Requests: e.requests.Load(),
			Canary:   i >= m.nStable,
		}
	}
	return out
}

func (p *Pool) endpoints() []*endpoint { return p.eps.Load().all }

// Pick chooses an endpoint, by the pool's policy, health and canary split
// (see SetWeighted), for one attempt of a request that another proxy (the
// Ingress server) sends itself. The attempt counts as in flight until
// release is called, once; release(true) reports that the endpoint could
// not be reached, which ejects it as a failed dial of this package's own
// proxy does, and release(false) restores an endpoint whose cool-down had
// ended. For Stats, release counts a request, and an error when failed;
// PickReport can tell more. ok is false when the pool has no endpoints.
func (p *Pool) Pick() (addr string, release func(failed bool), ok bool) {
	e := p.pickOne()
	if e == nil {
		return "", nil, false
	}
	var done atomic.Bool
	return e.addr, func(failed bool) {
		if done.CompareAndSwap(false, true) {
			e.tally.attempt(failed)
			e.endPicked(failed)
		}
	}, true
}

// PickReport is Pick for a proxy that also reports what came back, for
// Stats. report ends the attempt, once, as Pick's release(failed) does,
// and counts it:
//
//   - failed: the endpoint could not be reached (it is ejected); an error.
//   - status 0: the endpoint was reached but no response header came from
//     it (reset, timeout); an error, and the endpoint is not ejected.
//   - otherwise: a response with this status, an error when it is 500 or
//     more, whose header came latency after the request was sent.
//
// This is how this package's HTTP proxy counts its own attempts. An
// attempt the caller abandoned itself (its client left) is not the
// endpoint's failure and should not be reported with status 0.
func (p *Pool) PickReport() (addr string, report func(status int, latency time.Duration, failed bool), ok bool) {
	e := p.pickOne()
	if e == nil {
		return "", nil, false
	}
	var done atomic.Bool
	return e.addr, func(status int, latency time.Duration, failed bool) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		if failed || status == 0 {
			e.tally.attempt(true)
		} else {
			e.tally.response(status, latency)
		}
		e.endPicked(failed)
	}, true
}

// pickOne picks for Pick and PickReport, and counts the attempt as sent
// and in flight.
func (p *Pool) pickOne() *endpoint {
	var tried triedSet
	e, _ := p.pick(p.eps.Load(), &tried, time.Now)
	if e != nil {
		e.requests.Add(1)
		e.active.Add(1)
	}
	return e
}

// endPicked ends an attempt of Pick or PickReport.
func (e *endpoint) endPicked(failed bool) {
	e.active.Add(-1)
	if failed {
		e.dialFailed(time.Now())
	} else {
		e.dialSucceeded()
	}
}

// pick chooses the endpoint for the next attempt of a request, skipping
// those already tried. Without a split the whole pool is one group; with
// one, the split counter chooses the group and the policy an endpoint in
// it, and a group with no usable endpoint left to try gives way to the
// other. Endpoints in cool-down are skipped unless no other is left:
// trying a probably-dead endpoint beats a certain 503. probe is true when
// the endpoint is ejected: the attempt must dial, and its outcome restores
// or re-ejects the endpoint.
func (p *Pool) pick(m *members, tried *triedSet, now func() time.Time) (e *endpoint, probe bool) {
	first, second := m.all, []*endpoint(nil)
	firstSeq, secondSeq := &p.seq, &p.canarySeq
	if m.split {
		first, second = m.all[:m.nStable], m.all[m.nStable:]
		if p.canaryTurn(m.canaryPercent) {
			first, second = second, first
			firstSeq, secondSeq = secondSeq, firstSeq
		}
	}
	if len(first) == 0 {
		return nil, false
	}
	seq := firstSeq.Add(1) - 1
	if tried.n == 0 && p.ejected.Load() == 0 {
		return first[p.policy.choose(first, seq, nil)], false
	}
	t := now().UnixNano()
	e = p.chooseUntried(first, seq, tried, true, t)
	var seq2 uint64
	if e == nil && len(second) > 0 {
		seq2 = secondSeq.Add(1) - 1
		e = p.chooseUntried(second, seq2, tried, true, t)
	}
	if e == nil {
		e = p.chooseUntried(first, seq, tried, false, t)
	}
	if e == nil && len(second) > 0 {
		e = p.chooseUntried(second, seq2, tried, false, t)
	}
	if e == nil {
		return nil, false
	}
	if e.ejectedUntil.Load() != 0 {
		e.probing.Store(true)
		return e, true
	}
	return e, false
}

// canaryTurn reports whether a pick goes to the canary group. The n-th
// split pick does when n*percent/100 reaches a new integer, which spreads
// the canary's picks evenly and gives it exactly percent of any 100
// consecutive ones.
func (p *Pool) canaryTurn(percent int) bool {
	switch percent {
	case 0:
		return false
	case 100:
		return true
	}
	n := p.splitSeq.Add(1) % 100
	return n*uint64(percent)%100 < uint64(percent)
}

// chooseUntried returns the endpoint of eps the policy takes among those
// not tried yet, and usable at t if usable is set; nil when there is none.
func (p *Pool) chooseUntried(eps []*endpoint, seq uint64, tried *triedSet, usable bool, t int64) *endpoint {
	i := p.policy.choose(eps, seq, func(i int) bool {
		return !tried.has(eps[i]) && (!usable || eps[i].usable(t))
	})
	if i < 0 {
		return nil
	}
	return eps[i]
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

	tally requestStats // behind Pool.Stats: every route's requests and Pick's
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
