package planner

import (
	"math/bits"
	"slices"
	"strings"

	"github.com/fleetdev/fleet/spec"
)

// scheduler places new pods: feasibility (ready, nodeSelector, CPU,
// memory), then ranking (spread, free memory, name). It keeps per-node
// counters so one placement is a single pass over the workload's eligible
// nodes, never a rescan of pods.
type scheduler struct {
	nodes  []nodeState // sorted by name; the index is the node's id
	byName map[string]int
	// count is the number of pods of the workload being placed on each
	// node, as they will be when the plan is done.
	count []int
}

type nodeState struct {
	Node
	cpuUsed, memUsed int64
	ports            map[string]bool // host ports held
}

func newScheduler(nodes []Node) *scheduler {
	s := &scheduler{
		nodes:  make([]nodeState, len(nodes)),
		byName: make(map[string]int, len(nodes)),
		count:  make([]int, len(nodes)),
	}
	for i, n := range nodes {
		s.nodes[i] = nodeState{Node: n}
	}
	slices.SortFunc(s.nodes, func(a, b nodeState) int { return strings.Compare(a.Name, b.Name) })
	for i, n := range s.nodes {
		s.byName[n.Name] = i
	}
	return s
}

// ready returns the id of a Ready node by name.
func (s *scheduler) ready(name string) (int, bool) {
	i, ok := s.byName[name]
	return i, ok && s.nodes[i].Ready
}

func (s *scheduler) use(node int, cpu, mem int64) {
	s.nodes[node].cpuUsed += cpu
	s.nodes[node].memUsed += mem
}

// free gives back what a pod that stops held on node.
func (s *scheduler) free(node int, cpu, mem int64, ports []string) {
	s.use(node, -cpu, -mem)
	for _, p := range ports {
		delete(s.nodes[node].ports, p)
	}
}

// hold marks host ports taken on node.
func (s *scheduler) hold(node int, ports []string) {
	if len(ports) == 0 {
		return
	}
	n := &s.nodes[node]
	if n.ports == nil {
		n.ports = map[string]bool{}
	}
	for _, p := range ports {
		n.ports[p] = true
	}
}

// portTaken returns the first of ports already held on node, or "".
func (s *scheduler) portTaken(node int, ports []string) string {
	for _, p := range ports {
		if s.nodes[node].ports[p] {
			return p
		}
	}
	return ""
}

// eligible lists, in name order, the nodes that pass the checks that do
// not change during a plan: Ready and nodeSelector.
func (s *scheduler) eligible(w *Workload) []int {
	out := make([]int, 0, len(s.nodes))
	for i := range s.nodes {
		if s.nodes[i].Ready && !s.nodes[i].Unschedulable && spec.MatchLabels(s.nodes[i].Labels, w.NodeSelector) {
			out = append(out, i)
		}
	}
	return out
}

// fits reports whether a request fits what is free; a capacity of 0 means
// unknown (no limit), and a request of 0 always fits, even on an
// overcommitted node.
func fits(req, used, capacity int64) bool {
	return req == 0 || capacity <= 0 || used+req <= capacity
}

// place picks the best eligible node for one pod of w and books its
// requests there; ok is false when no node can take it.
func (s *scheduler) place(w *Workload, eligible []int) (node int, ok bool) {
	best := -1
	var bestCount int
	var bestFree, bestCap uint64 // free memory fraction after placement, bestFree/bestCap
	for _, i := range eligible {
		n := &s.nodes[i]
		if !fits(w.MilliCPU, n.cpuUsed, n.MilliCPU) || !fits(w.Memory, n.memUsed, n.Memory) || s.portTaken(i, w.HostPorts) != "" {
			continue
		}
		c := s.count[i]
		if best >= 0 && c > bestCount {
			continue
		}
		free, capacity := uint64(1), uint64(1) // unknown capacity: all free
		if n.Memory > 0 {
			free, capacity = uint64(max(n.Memory-n.memUsed-w.Memory, 0)), uint64(n.Memory)
		}
		// Nodes come in name order, so only a strictly better node wins.
		if best < 0 || c < bestCount || fractionGreater(free, capacity, bestFree, bestCap) {
			best, bestCount, bestFree, bestCap = i, c, free, capacity
		}
	}
	if best < 0 {
		return -1, false
	}
	s.use(best, w.MilliCPU, w.Memory)
	s.hold(best, w.HostPorts)
	s.count[best]++
	return best, true
}

// fractionGreater reports a/b > c/d exactly (128-bit cross products).
func fractionGreater(a, b, c, d uint64) bool {
	hi1, lo1 := bits.Mul64(a, d)
	hi2, lo2 := bits.Mul64(c, b)
	return hi1 > hi2 || (hi1 == hi2 && lo1 > lo2)
}

// rejections explains, node by node, why no node can take a pod of w:
// each node is counted once, by its first failing check.
func (s *scheduler) rejections(w *Workload) []rejection {
	var out []rejection
	for i := range s.nodes {
		n := &s.nodes[i]
		switch {
		case !n.Ready:
			out = append(out, rejection{kind: rejectNotReady, detail: n.NotReadyReason})
		case n.Unschedulable:
			out = append(out, rejection{kind: rejectUnschedulable, detail: n.UnschedulableReason})
		case !spec.MatchLabels(n.Labels, w.NodeSelector):
			out = append(out, rejection{kind: rejectSelector, detail: missingLabels(n.Labels, w.NodeSelector)})
		case !fits(w.MilliCPU, n.cpuUsed, n.MilliCPU):
			out = append(out, rejection{kind: rejectCPU, detail: formatCPU(w.MilliCPU)})
		case !fits(w.Memory, n.memUsed, n.Memory):
			out = append(out, rejection{kind: rejectMemory, detail: formatMemory(w.Memory)})
		case s.portTaken(i, w.HostPorts) != "":
			out = append(out, rejection{kind: rejectPort, detail: s.portTaken(i, w.HostPorts)})
		}
	}
	return out
}

func missingLabels(have, want map[string]string) string {
	var missing []string
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			missing = append(missing, k+"="+v)
		}
	}
	slices.Sort(missing)
	return strings.Join(missing, ", ")
}
