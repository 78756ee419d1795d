package lb

import "fmt"

// Policy picks an endpoint for each new request (HTTP) or connection (TCP).
type Policy int

const (
	// RoundRobin takes the healthy endpoints in turn. It is the default.
	RoundRobin Policy = iota
	// LeastConnections takes the healthy endpoint with the fewest requests
	// (HTTP) or connections (TCP) in flight; ties go round-robin.
	LeastConnections
)

// String returns the policy's name as ParsePolicy accepts it.
func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "round-robin"
	case LeastConnections:
		return "least-connections"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy returns the policy named s: "round-robin" (also for "") or
// "least-connections".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "round-robin":
		return RoundRobin, nil
	case "least-connections":
		return LeastConnections, nil
	}
	return RoundRobin, fmt.Errorf("lb: unknown balancing policy %q (valid: round-robin, least-connections)", s)
}

// choose returns the index in eps of the endpoint to use, or -1 when no
// endpoint is eligible. seq is a fresh value of the pool's round-robin
// counter; eligible, when not nil, filters the endpoints (nil: all are).
// It reads only the endpoints' in-flight counts, so it is tested on a
// fabricated slice.
func (p Policy) choose(eps []*endpoint, seq uint64, eligible func(int) bool) int {
	n := len(eps)
	if n == 0 {
		return -1
	}
	if p == LeastConnections {
		best, bestActive := -1, int64(0)
		start := int(seq % uint64(n))
		for k := range n {
			i := start + k
			if i >= n {
				i -= n
			}
			if eligible != nil && !eligible(i) {
				continue
			}
			if a := eps[i].active.Load(); best < 0 || a < bestActive {
				best, bestActive = i, a
			}
		}
		return best
	}
	if eligible == nil {
		return int(seq % uint64(n))
	}
	// Count first and then take the k-th eligible endpoint, so an ejected
	// endpoint's share spreads evenly over the rest instead of all going to
	// its successor.
	count := 0
	for i := range n {
		if eligible(i) {
			count++
		}
	}
	if count == 0 {
		return -1
	}
	k := int(seq % uint64(count))
	for i := range n {
		if eligible(i) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return -1
}
