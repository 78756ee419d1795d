package lb

import (
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// LatencyBuckets is the number of buckets of Stats.Latency.
const LatencyBuckets = 66

// latencyBounds are the upper bounds of the Stats.Latency buckets but the
// last; see LatencyBound.
var latencyBounds = func() (b [LatencyBuckets - 1]time.Duration) {
	b[0] = 500 * time.Microsecond
	for octave := range 16 {
		for step := range 4 {
			b[1+4*octave+step] = (125 * time.Microsecond << octave) * time.Duration(5+step)
		}
	}
	return b
}()

// LatencyBound returns the upper bound, inclusive, of the bucket
// Stats.Latency[i]. The bounds are log-linear: 0.5ms for bucket 0, then
// four buckets per doubling (0.625ms, 0.75ms, 0.875ms, 1ms, 1.25ms, 1.5ms,
// …, 28.672s, 32.768s for bucket LatencyBuckets-2), so a bound above 0.5ms
// overstates the latencies in its bucket by at most 25%. The last bucket
// holds what took longer than 32.768s; its bound is the largest Duration.
// i must be in [0, LatencyBuckets).
func LatencyBound(i int) time.Duration {
	if i == LatencyBuckets-1 {
		return math.MaxInt64
	}
	return latencyBounds[i]
}

// latencyBucket returns the index of the Stats.Latency bucket for d.
func latencyBucket(d time.Duration) int {
	i, _ := slices.BinarySearch(latencyBounds[:], d)
	return i
}

// Stats are request statistics of some endpoints of a Pool (see
// Pool.Stats): cumulative counters, so that a window is the difference of
// two snapshots (Sub).
//
// What counts depends on how the endpoint was used:
//
//   - HTTP routes: each attempt of a request counts once, when the
//     endpoint's response header arrived, or when the attempt failed
//     without one (dial refused or timed out, connection reset or closed,
//     malformed response); a request retried on another endpoint counts at
//     each. Errors are those failed attempts, the responses with status 500
//     or more, and the responses the endpoint cut short (its connection
//     failed during the body). A client that leaves is not the endpoint's
//     error: an attempt it abandons before the response header is not
//     counted at all.
//   - TCP routes: a connection counts when it ends, and is an error only
//     when its dial failed; how an established connection ends says
//     nothing reliable about the endpoint. No latency is measured.
//   - Pick: release counts the attempt, an error when failed; no latency.
//     PickReport counts like the HTTP routes from what its caller reports.
type Stats struct {
	// Requests is the number of attempts counted.
	Requests uint64
	// Errors is the number of those that were errors; in a snapshot, at
	// most Requests.
	Errors uint64
	// Latency counts responses by the time from sending the request to the
	// endpoint until reading its response header (for a request with a
	// body, the time to send the body the endpoint waited for too):
	// Latency[i] holds those that took more than LatencyBound(i-1) and at
	// most LatencyBound(i). Only responses are measured, not failed
	// attempts, TCP connections (whose duration is the client's business)
	// or Pick's attempts, so the buckets may sum to less than Requests.
	Latency [LatencyBuckets]uint64
}

// Sub returns s minus prev, an earlier snapshot of the same endpoints: the
// statistics of the window between them. A counter smaller than in prev,
// which happens when an endpoint left the pool and finished draining in
// between (its counters go with it), gives 0 rather than wrapping around.
func (s Stats) Sub(prev Stats) Stats {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	s.Requests = sub(s.Requests, prev.Requests)
	s.Errors = sub(s.Errors, prev.Errors)
	for i := range s.Latency {
		s.Latency[i] = sub(s.Latency[i], prev.Latency[i])
	}
	return s
}

// Add returns the sum of s and o, for statistics of several pools.
func (s Stats) Add(o Stats) Stats {
	s.Requests += o.Requests
	s.Errors += o.Errors
	for i := range s.Latency {
		s.Latency[i] += o.Latency[i]
	}
	return s
}

// ErrorRate returns Errors/Requests, between 0 and 1; 0 without errors.
func (s Stats) ErrorRate() float64 {
	switch {
	case s.Errors == 0:
		return 0
	case s.Errors >= s.Requests:
		// A window can see the error of a response whose request the
		// earlier snapshot already counted.
		return 1
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Quantile returns an upper bound of the q-quantile (0 ≤ q ≤ 1; 0.99 for
// p99) of Latency: the bound of the bucket holding it, which overstates a
// quantile above 0.5ms by at most 25% (see LatencyBound); 0.5ms for one
// below, the largest Duration for one above 32.768s. It is 0 when no
// latency was measured.
func (s Stats) Quantile(q float64) time.Duration {
	var total uint64
	for _, n := range s.Latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	if !(q > 0) { // NaN too
		q = 0
	}
	rank := uint64(math.Ceil(min(q, 1) * float64(total)))
	rank = min(max(rank, 1), total)
	var cum uint64
	for i, n := range s.Latency {
		if cum += n; cum >= rank {
			return LatencyBound(i)
		}
	}
	return LatencyBound(LatencyBuckets - 1)
}

// Stats returns the statistics of the pool's endpoints whose address is in
// addrs, summed: the current endpoints and the removed ones still
// draining. An endpoint's counters start at zero when it enters the pool
// and stay with it through Set and SetWeighted while it remains (also
// when it changes from canary to stable); a removed endpoint's go once it
// has drained. A caller measuring a window, say a canary's error rate and
// p99 latency, takes a snapshot at its start and Subs it from one at its
// end; to keep the counts of endpoints that leave in between, it takes
// snapshots per address and often.
func (p *Pool) Stats(addrs []string) Stats {
	var s Stats
	// Under mu, Set cannot move an endpoint from the list to draining
	// between the two loops and have it counted twice.
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.endpoints() {
		if slices.Contains(addrs, e.addr) {
			e.tally.addTo(&s)
		}
	}
	for _, e := range p.drainingLocked() {
		if slices.Contains(addrs, e.addr) {
			e.tally.addTo(&s)
		}
	}
	return s
}

// requestStats are an endpoint's counters behind Pool.Stats. Writers add
// to requests before errors and latency, and addTo loads requests last, so
// a snapshot never shows more errors or latencies than requests.
type requestStats struct {
	requests atomic.Uint64
	errors   atomic.Uint64
	latency  [LatencyBuckets]atomic.Uint64
}

// response counts an attempt that got a response header.
func (s *requestStats) response(status int, latency time.Duration) {
	s.requests.Add(1)
	if status >= 500 {
		s.errors.Add(1)
	}
	s.latency[latencyBucket(latency)].Add(1)
}

// cutShort counts as an error a response already counted whose body the
// endpoint failed to deliver; a 5xx is an error already.
func (s *requestStats) cutShort(status int) {
	if status < 500 {
		s.errors.Add(1)
	}
}

// attempt counts an attempt without a measured response: a TCP
// connection, a Pick, a failed HTTP attempt.
func (s *requestStats) attempt(failed bool) {
	s.requests.Add(1)
	if failed {
		s.errors.Add(1)
	}
}

func (s *requestStats) addTo(out *Stats) {
	out.Errors += s.errors.Load()
	for i := range s.latency {
		out.Latency[i] += s.latency[i].Load()
	}
	out.Requests += s.requests.Load()
}
