package lb

import (
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Policy
		err  bool
	}{
		{"", RoundRobin, false},
		{"round-robin", RoundRobin, false},
		{"least-connections", LeastConnections, false},
		{"random", 0, true},
	} {
		t.Run("parsing "+tc.in, func(t *testing.T) {
			got, err := ParsePolicy(tc.in)
			if tc.err {
				if err == nil || !strings.Contains(err.Error(), `"random"`) || !strings.Contains(err.Error(), "round-robin, least-connections") {
					t.Errorf("error %v should name the bad value and the valid ones", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
			if tc.in != "" && got.String() != tc.in {
				t.Errorf("String() = %q", got.String())
			}
		})
	}
}

// fabricated returns endpoints with the given in-flight counts.
func fabricated(active ...int64) []*endpoint {
	eps := make([]*endpoint, len(active))
	for i, a := range active {
		eps[i] = &endpoint{addr: string(rune('a' + i))}
		eps[i].active.Store(a)
	}
	return eps
}

func TestPolicy_choose(t *testing.T) {
	all := func(int) bool { return true }
	not := func(skip int) func(int) bool { return func(i int) bool { return i != skip } }
	for _, tc := range []struct {
		name     string
		policy   Policy
		active   []int64
		eligible func(int) bool
		seqs     []uint64
		want     []int
	}{
		{"round-robin takes the endpoints in turn", RoundRobin, []int64{0, 0, 0}, nil, []uint64{0, 1, 2, 3}, []int{0, 1, 2, 0}},
		{"round-robin spreads over the eligible ones evenly", RoundRobin, []int64{0, 0, 0}, not(1), []uint64{0, 1, 2, 3}, []int{0, 2, 0, 2}},
		{"least-connections takes the idlest", LeastConnections, []int64{3, 1, 2}, nil, []uint64{0, 1, 2}, []int{1, 1, 1}},
		{"least-connections breaks ties round-robin", LeastConnections, []int64{1, 0, 0}, nil, []uint64{0, 1, 2, 3}, []int{1, 1, 2, 1}},
		{"least-connections skips ineligible endpoints", LeastConnections, []int64{5, 0, 9}, not(1), []uint64{0}, []int{0}},
		{"an empty pool has no choice", RoundRobin, nil, all, []uint64{0}, []int{-1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps := fabricated(tc.active...)
			for i, seq := range tc.seqs {
				if got := tc.policy.choose(eps, seq, tc.eligible); got != tc.want[i] {
					t.Errorf("seq %d: chose %d, want %d", seq, got, tc.want[i])
				}
			}
		})
	}
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestPool_pick(t *testing.T) {
	t.Run("ejected endpoints are skipped until their cool-down ends, then probed once", func(t *testing.T) {
		clk := &clock{t: time.Unix(1000, 0)}
		p := poolOf("p", RoundRobin, "a:1", "b:1")
		a := p.endpoints()[0]
		a.dialFailed(clk.now())
		for range 4 {
			if e, _ := p.pick(p.eps.Load(), &triedSet{}, clk.now); e.addr != "b:1" {
				t.Fatalf("picked %s during the cool-down", e.addr)
			}
		}
		clk.t = clk.t.Add(baseCooldown)
		var probes int
		for range 4 {
			e, probe := p.pick(p.eps.Load(), &triedSet{}, clk.now)
			if e == a {
				probes++
				if !probe {
					t.Errorf("the first pick after the cool-down is not a probe")
				}
			}
		}
		if probes != 1 {
			t.Errorf("after the cool-down the endpoint was picked %d times before its probe ended, want 1", probes)
		}
		a.dialSucceeded()
		if st := p.Endpoints(); !st[0].Healthy || p.ejected.Load() != 0 {
			t.Errorf("a successful probe did not restore the endpoint: %+v", st)
		}
	})

	t.Run("cool-downs double per failure up to 30s", func(t *testing.T) {
		clk := &clock{t: time.Unix(1000, 0)}
		p := poolOf("p", RoundRobin, "a:1")
		e := p.endpoints()[0]
		for _, want := range []time.Duration{1, 2, 4, 8, 16, 30, 30} {
			e.dialFailed(clk.now())
			if got := time.Duration(e.ejectedUntil.Load() - clk.t.UnixNano()); got != want*time.Second {
				t.Errorf("failure %d: cool-down %v, want %v", e.failures, got, want*time.Second)
			}
		}
	})

	t.Run("with every endpoint ejected one is still tried", func(t *testing.T) {
		clk := &clock{t: time.Unix(1000, 0)}
		p := poolOf("p", RoundRobin, "a:1", "b:1")
		for _, e := range p.endpoints() {
			e.dialFailed(clk.now())
		}
		var tried triedSet
		for range 2 {
			e, probe := p.pick(p.eps.Load(), &tried, clk.now)
			if e == nil || !probe {
				t.Fatalf("picked %v (probe %v), want an ejected endpoint to probe", e, probe)
			}
			tried.add(e)
		}
		if e, _ := p.pick(p.eps.Load(), &tried, clk.now); e != nil {
			t.Errorf("picked %s after every endpoint was tried", e.addr)
		}
	})

	t.Run("Set keeps the state of endpoints that stay", func(t *testing.T) {
		clk := &clock{t: time.Unix(1000, 0)}
		p := poolOf("p", RoundRobin, "a:1", "b:1")
		a := p.endpoints()[0]
		a.requests.Add(7)
		a.dialFailed(clk.now())
		b := p.endpoints()[1]
		p.Set([]string{"c:1", "a:1", "a:1"})
		st := p.Endpoints()
		if len(st) != 2 || st[0].Addr != "c:1" || st[1].Addr != "a:1" || st[1].Requests != 7 || st[1].Healthy {
			t.Errorf("after Set: %+v", st)
		}
		if !b.removed.Load() || p.ejected.Load() != 1 {
			t.Errorf("removed endpoint not marked, or ejected count %d != 1", p.ejected.Load())
		}
	})
}

func TestPool_Pick(t *testing.T) {
	t.Run("a failed attempt ejects the endpoint and the next pick avoids it", func(t *testing.T) {
		p := poolOf("p", RoundRobin, "a:1", "b:1")
		addr, release, ok := p.Pick()
		if !ok || addr != "a:1" {
			t.Fatalf("picked %q %v", addr, ok)
		}
		if st := p.Endpoints(); st[0].Active != 1 || st[0].Requests != 1 {
			t.Errorf("in flight: %+v", st[0])
		}
		release(true)
		release(true) // once only
		if st := p.Endpoints(); st[0].Active != 0 || st[0].Healthy {
			t.Errorf("after a failed attempt: %+v", st[0])
		}
		for range 3 {
			addr, release, _ := p.Pick()
			release(false)
			if addr != "b:1" {
				t.Errorf("picked the ejected endpoint %s", addr)
			}
		}
	})

	t.Run("an empty pool picks nothing", func(t *testing.T) {
		if _, _, ok := NewPool("p", RoundRobin).Pick(); ok {
			t.Error("picked from an empty pool")
		}
	})
}
