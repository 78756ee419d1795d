package lb

import "testing"

func TestPool_InFlight(t *testing.T) {
	p := NewPool("web", RoundRobin)
	p.Set([]string{"10.0.0.1:80"})
	addr, release, ok := p.Pick()
	if !ok || addr != "10.0.0.1:80" {
		t.Fatalf("Pick = %q %v", addr, ok)
	}
	if n := p.InFlight(addr); n != 1 {
		t.Fatalf("in flight %d, want 1", n)
	}
	t.Run("a removed endpoint still counts its requests in flight", func(t *testing.T) {
		p.Set(nil)
		if n := p.InFlight(addr); n != 1 {
			t.Fatalf("in flight after removal %d, want 1 (draining)", n)
		}
		release(false)
		if n := p.InFlight(addr); n != 0 {
			t.Fatalf("in flight after the request ended %d, want 0", n)
		}
	})
}
