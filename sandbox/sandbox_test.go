package sandbox

import (
	"net"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"default", true}, {"e2e-123-456", true}, {"", false}, {"Upper", false},
		{"-lead", false}, {"trail-", false}, {"has_underscore", false}, {strings.Repeat("a", 31), false},
	} {
		if got := validName(tt.name); got != tt.ok {
			t.Errorf("validName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestHostAddress(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.213.7.0/24")
	t.Run("host i gets .10+i", func(t *testing.T) {
		got, err := hostAddress(subnet, 3)
		if err != nil || got != "10.213.7.13" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("indexes past the subnet are refused", func(t *testing.T) {
		if _, err := hostAddress(subnet, 250); err == nil {
			t.Fatal("want an error")
		}
	})
}

func TestOverlapsAny(t *testing.T) {
	_, a, _ := net.ParseCIDR("10.213.1.0/24")
	_, inside, _ := net.ParseCIDR("10.213.1.128/25")
	_, wide, _ := net.ParseCIDR("10.0.0.0/8")
	_, apart, _ := net.ParseCIDR("10.213.2.0/24")
	if !overlapsAny(a, []*net.IPNet{inside}) || !overlapsAny(a, []*net.IPNet{wide}) {
		t.Error("overlapping subnets not detected")
	}
	if overlapsAny(a, []*net.IPNet{apart}) {
		t.Error("disjoint subnets reported as overlapping")
	}
}
