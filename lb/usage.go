package lb

import (
	"slices"
	"sync/atomic"
	"time"
)

// forgetPoolAfter is how long a route may leave a pool unused before it
// forgets it: the pool's endpoints leave the route's metrics, and the
// route no longer has the sweep close the pool's idle connections. With a
// Router this is how a pool the Router stopped picking (its Service gone)
// stops being reported; a request it picks again brings the pool back,
// counters intact.
const forgetPoolAfter = 15 * time.Minute

// States of a usedPool.
const (
	poolUsed      int32 = iota // a request went to the pool since the last sweep
	poolUnused                 // none did; since says from when
	poolForgotten              // unused for forgetPoolAfter: no longer in route.used
)

// usedPool records that a route sends requests to a pool. Each epStats
// points to the record of its endpoint's pool, so marking it used costs a
// request one atomic load. A new record is in state poolUsed.
type usedPool struct {
	r     *route
	pool  *Pool
	state atomic.Int32
	since time.Time // under r.usedMu: the last sweep that found it used
}

// touch marks the pool used after a request went to it, registering a
// forgotten record again.
func (u *usedPool) touch() {
	if u.state.Load() == poolUsed || u.state.CompareAndSwap(poolUnused, poolUsed) {
		return
	}
	u.r.usedMu.Lock()
	if u.state.Swap(poolUsed) == poolForgotten {
		u.r.used = append(u.r.used, u)
	}
	u.r.usedMu.Unlock()
}

// usedPoolFor returns the route's record of p, making one if the route has
// none.
func (r *route) usedPoolFor(p *Pool) *usedPool {
	r.usedMu.Lock()
	defer r.usedMu.Unlock()
	for _, u := range r.used {
		if u.pool == p {
			return u
		}
	}
	u := &usedPool{r: r, pool: p}
	r.used = append(r.used, u)
	return u
}

// agePools is the sweep's pass over the route's pools at now: it returns
// the pools the route still uses, and those it forgets, unused since
// forgetPoolAfter.
func (r *route) agePools(now time.Time) (live, forgotten []*Pool) {
	r.usedMu.Lock()
	defer r.usedMu.Unlock()
	kept := r.used[:0]
	for _, u := range r.used {
		switch {
		case u.state.CompareAndSwap(poolUsed, poolUnused):
			u.since = now
		case now.Sub(u.since) >= forgetPoolAfter && u.state.CompareAndSwap(poolUnused, poolForgotten):
			forgotten = append(forgotten, u.pool)
			continue
		}
		kept = append(kept, u)
		live = append(live, u.pool)
	}
	clear(r.used[len(kept):])
	r.used = kept
	return live, forgotten
}

// reportedPools returns the pools whose endpoints the route's metrics
// show: its Pool, or with a Router the pools it used lately.
func (r *route) reportedPools() []*Pool {
	if cfg := r.cfg.Load(); cfg.router == nil {
		return []*Pool{cfg.pool}
	}
	return r.usedPools()
}

// usedPools returns the pools the route used lately, each once.
func (r *route) usedPools() []*Pool {
	r.usedMu.Lock()
	defer r.usedMu.Unlock()
	out := make([]*Pool, 0, len(r.used))
	for _, u := range r.used {
		if !slices.Contains(out, u.pool) {
			out = append(out, u.pool)
		}
	}
	return out
}
