package lb

import (
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

// pickCounts picks n times from p, releasing each attempt, and counts the
// picks per address.
func pickCounts(t *testing.T, p *Pool, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		addr, release, ok := p.Pick()
		if !ok {
			t.Fatal("picked nothing")
		}
		release(false)
		got[addr]++
	}
	return got
}

func TestPool_SetWeighted(t *testing.T) {
	stable, canary := []string{"s1:80", "s2:80"}, []string{"c1:80", "c2:80"}
	for _, tc := range []struct {
		name    string
		policy  Policy
		percent int
		want    map[string]int // of 100 picks
	}{
		{"10% go to the canary", RoundRobin, 10, map[string]int{"s1:80": 45, "s2:80": 45, "c1:80": 5, "c2:80": 5}},
		{"50% go to the canary", RoundRobin, 50, map[string]int{"s1:80": 25, "s2:80": 25, "c1:80": 25, "c2:80": 25}},
		{"at 100% the stable endpoints get nothing", RoundRobin, 100, map[string]int{"c1:80": 50, "c2:80": 50}},
		{"at 0% the canary endpoints get nothing", RoundRobin, 0, map[string]int{"s1:80": 50, "s2:80": 50}},
		{"a percentage above 100 is 100", RoundRobin, 150, map[string]int{"c1:80": 50, "c2:80": 50}},
		{"a negative percentage is 0", RoundRobin, -5, map[string]int{"s1:80": 50, "s2:80": 50}},
		{"least-connections applies within each group", LeastConnections, 30, map[string]int{"s1:80": 35, "s2:80": 35, "c1:80": 15, "c2:80": 15}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool("p", tc.policy)
			p.SetWeighted(stable, canary, tc.percent)
			got := pickCounts(t, p, 100)
			for _, a := range append(slices.Clone(stable), canary...) {
				if got[a] != tc.want[a] {
					t.Errorf("of 100 picks: %v, want %v", got, tc.want)
					break
				}
			}
		})
	}

	t.Run("least-connections avoids a busy endpoint of the chosen group", func(t *testing.T) {
		p := NewPool("p", LeastConnections)
		p.SetWeighted(stable, canary, 100)
		busy, release, _ := p.Pick()
		defer release(false)
		for addr, n := range pickCounts(t, p, 10) {
			if addr != "c1:80" && addr != "c2:80" || addr == busy {
				t.Errorf("%d picks went to %s with %s busy", n, addr, busy)
			}
		}
	})

	t.Run("the canary's picks are spread evenly", func(t *testing.T) {
		p := NewPool("p", RoundRobin)
		p.SetWeighted(stable, canary, 10)
		var at []int
		for i := range 100 {
			addr, release, _ := p.Pick()
			release(false)
			if addr[0] == 'c' {
				at = append(at, i+1)
			}
		}
		if want := []int{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}; !slices.Equal(at, want) {
			t.Errorf("canary picks at %v, want %v", at, want)
		}
	})

	t.Run("any 100 consecutive picks give the canary its share", func(t *testing.T) {
		p := NewPool("p", RoundRobin)
		p.SetWeighted(stable, canary, 37)
		pickCounts(t, p, 13) // not a multiple of 100
		got := pickCounts(t, p, 100)
		if n := got["c1:80"] + got["c2:80"]; n != 37 {
			t.Errorf("canary got %d of 100 picks, want 37: %v", n, got)
		}
	})

	t.Run("an address in both lists is canary, duplicates are ignored", func(t *testing.T) {
		p := NewPool("p", RoundRobin)
		p.SetWeighted([]string{"a:1", "b:1", "a:1"}, []string{"b:1", "c:1", "c:1"}, 50)
		want := []EndpointStatus{
			{Addr: "a:1", Healthy: true},
			{Addr: "b:1", Healthy: true, Canary: true},
			{Addr: "c:1", Healthy: true, Canary: true},
		}
		if got := p.Endpoints(); !slices.Equal(got, want) {
			t.Errorf("Endpoints() = %+v, want %+v", got, want)
		}
	})

	t.Run("endpoints keep their state across groups, removed ones drain", func(t *testing.T) {
		p := NewPool("p", RoundRobin)
		p.SetWeighted([]string{"a:1"}, []string{"b:1"}, 100)
		addr, release, _ := p.Pick() // b, in flight across the changes
		if addr != "b:1" {
			t.Fatalf("picked %s, want the canary", addr)
		}
		b := p.endpoints()[1]
		p.SetWeighted([]string{"b:1"}, []string{"c:1"}, 0) // b promoted
		if p.endpoints()[0] != b || b.removed.Load() {
			t.Fatalf("the promoted endpoint is a new one or marked removed")
		}
		p.Set([]string{"a:1"})
		if !b.removed.Load() || p.InFlight("b:1") != 1 {
			t.Errorf("removed endpoint not draining: removed %v, in flight %d", b.removed.Load(), p.InFlight("b:1"))
		}
		release(false)
		if st := p.Endpoints(); len(st) != 1 || st[0].Canary {
			t.Errorf("Set did not end the split: %+v", st)
		}
	})

	t.Run("Set is SetWeighted without a canary", func(t *testing.T) {
		p := NewPool("p", RoundRobin)
		p.SetWeighted(stable, canary, 50)
		p.Set([]string{"s1:80", "c1:80"})
		if got := pickCounts(t, p, 10); got["s1:80"] != 5 || got["c1:80"] != 5 {
			t.Errorf("after Set, picks %v, want round-robin over both", got)
		}
		if p.eps.Load().split {
			t.Error("Set left a split")
		}
	})
}

func TestPool_SetWeightedFallback(t *testing.T) {
	eject := func(p *Pool, addr string) {
		for _, e := range p.endpoints() {
			if e.addr == addr {
				e.dialFailed(time.Now())
			}
		}
	}
	for _, tc := range []struct {
		name            string
		stable, canary  []string
		percent         int
		ejected         []string
		want            string // every pick
		wantSplitActive bool
	}{
		{"a canary with every endpoint ejected gives way to the stable ones", []string{"s:1"}, []string{"c1:1", "c2:1"}, 100, []string{"c1:1", "c2:1"}, "s:1", true},
		{"stable endpoints all ejected give way to the canary, even at 0%", []string{"s1:1", "s2:1"}, []string{"c:1"}, 0, []string{"s1:1", "s2:1"}, "c:1", true},
		{"an empty stable list leaves the canary serving at 0%", nil, []string{"c:1"}, 0, nil, "c:1", false},
		{"an empty canary list leaves the stable endpoints serving at 100%", []string{"s:1"}, nil, 100, nil, "s:1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool("p", RoundRobin)
			p.SetWeighted(tc.stable, tc.canary, tc.percent)
			if p.eps.Load().split != tc.wantSplitActive {
				t.Errorf("split %v, want %v", p.eps.Load().split, tc.wantSplitActive)
			}
			for _, a := range tc.ejected {
				eject(p, a)
			}
			for addr, n := range pickCounts(t, p, 20) {
				if addr != tc.want {
					t.Errorf("%d picks went to %s, want all to %s", n, addr, tc.want)
				}
			}
		})
	}

	t.Run("a retry crosses to the other group once its own is tried", func(t *testing.T) {
		p := NewPool("p", RoundRobin)
		p.SetWeighted([]string{"s:1"}, []string{"c1:1", "c2:1"}, 100)
		var tried triedSet
		var got []string
		for range 4 {
			e, _ := p.pick(p.eps.Load(), &tried, time.Now)
			if e == nil {
				break
			}
			tried.add(e)
			got = append(got, e.addr)
		}
		if want := []string{"c1:1", "c2:1", "s:1"}; !slices.Equal(got, want) {
			t.Errorf("attempts went to %v, want %v", got, want)
		}
	})
}

func TestBalancer_CanarySplit(t *testing.T) {
	for _, percent := range []int{10, 50, 100, 0} {
		t.Run("HTTP requests at "+strconv.Itoa(percent)+"% to the canary", func(t *testing.T) {
			s1, s2 := namedBackend(t, "s1"), namedBackend(t, "s2")
			c1 := namedBackend(t, "c1")
			pool := NewPool("web", RoundRobin)
			pool.SetWeighted([]string{s1.addr(), s2.addr()}, []string{c1.addr()}, percent)
			_, addr := httpRoute(t, pool)
			c := client(t)
			got := map[string]int{}
			for range 100 {
				code, body := get(t, c, "http://"+addr+"/")
				if code != 200 {
					t.Fatalf("status %d: %s", code, body)
				}
				got[body]++
			}
			stable := (100 - percent) / 2
			if want := map[string]int{"c1": percent, "s1": stable, "s2": stable}; got["c1"] != percent || got["s1"] != stable || got["s2"] != stable {
				t.Errorf("of 100 requests: %v, want %v", got, want)
			}
			if st := pool.Stats([]string{c1.addr()}); st.Requests != uint64(percent) {
				t.Errorf("canary Stats counted %d requests, want %d", st.Requests, percent)
			}
		})
	}

	t.Run("TCP connections at 30% to the canary", func(t *testing.T) {
		s, c := namedTCPBackend(t, "s"), namedTCPBackend(t, "c")
		pool := NewPool("db", RoundRobin)
		pool.SetWeighted([]string{s}, []string{c}, 30)
		b := startBalancer(t, Options{}, Route{Name: "db", Listen: "127.0.0.1:0", Mode: TCP, Pool: pool})
		got := map[string]int{}
		for range 100 {
			conn := dialRaw(t, b.Addr("db").String())
			name, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
			got[string(name)]++
		}
		if got["c"] != 30 || got["s"] != 70 {
			t.Errorf("of 100 connections: %v, want c:30 s:70", got)
		}
		// A TCP connection counts when the proxy's side ends too, which
		// Shutdown waits for.
		if err := b.Shutdown(shutdownCtx(t)); err != nil {
			t.Fatal(err)
		}
		st := pool.Stats([]string{c})
		if st.Requests != 30 || st.Errors != 0 || st.Quantile(1) != 0 {
			t.Errorf("canary Stats %d requests, %d errors, max latency %v; want 30, 0 and none measured for TCP",
				st.Requests, st.Errors, st.Quantile(1))
		}
	})
}

func TestBalancer_CanaryFallback(t *testing.T) {
	for _, percent := range []int{50, 100} {
		t.Run("with the canary down at "+strconv.Itoa(percent)+"% every request is served by the stable endpoints", func(t *testing.T) {
			s := namedBackend(t, "s")
			down := []string{refusedAddr(t), refusedAddr(t)}
			pool := NewPool("web", RoundRobin)
			pool.SetWeighted([]string{s.addr()}, down, percent)
			_, addr := httpRoute(t, pool)
			c := client(t)
			for i := range 100 {
				if code, body := get(t, c, "http://"+addr+"/"); code != 200 || body != "s" {
					t.Fatalf("request %d: %d %q, want 200 from the stable endpoint", i, code, body)
				}
			}
			st := pool.Stats(down)
			if st.Requests == 0 || st.Errors != st.Requests {
				t.Errorf("canary Stats %d requests, %d errors; want the failed dials counted as both", st.Requests, st.Errors)
			}
			if st := pool.Stats([]string{s.addr()}); st.Requests != 100 || st.Errors != 0 {
				t.Errorf("stable Stats %d requests, %d errors; want 100 and 0", st.Requests, st.Errors)
			}
		})
	}
}

// namedTCPBackend writes its name on each connection and closes it.
func namedTCPBackend(t *testing.T, name string) string {
	return tcpBackend(t, func(c net.Conn) {
		io.WriteString(c, name)
		c.Close()
	})
}
