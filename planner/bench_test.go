package planner

import (
	"fmt"
	"testing"
)

func BenchmarkCompute_10kOnto1k(b *testing.B) {
	benchmarkPlacement(b, 1, 10_000)
}

func BenchmarkCompute_100WorkloadsOf100(b *testing.B) {
	benchmarkPlacement(b, 100, 100)
}

// benchmarkPlacement places workloads×replicas fresh pods (100m, 128Mi)
// onto 1,000 machines (16 CPU, 64Gi).
func benchmarkPlacement(b *testing.B, workloads, replicas int) {
	s := State{}
	for i := range 1000 {
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("m%04d", i), Ready: true, MilliCPU: 16_000, Memory: 64 << 30})
	}
	for i := range workloads {
		s.Workloads = append(s.Workloads, Workload{Namespace: "default", Name: fmt.Sprintf("app%03d", i), Replicas: replicas, SpecHash: "0123456789abcdef", Revision: 1, MilliCPU: 100, Memory: 128 << 20})
	}
	placements := workloads * replicas
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p, err := Compute(s, goldenNow)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Steps) != placements {
			b.Fatalf("placed %d, want %d", len(p.Steps), placements)
		}
	}
	b.ReportMetric(float64(placements*b.N)/b.Elapsed().Seconds(), "placements/s")
}
