package planner

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCompute_Deterministic(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("random state %d", seed), func(t *testing.T) {
			s := randomState(seed)
			first := renderPlan(Compute(s, goldenNow))
			again := renderPlan(Compute(s, goldenNow))
			if first != again {
				t.Fatalf("same input, different plans:\n%s---\n%s", first, again)
			}
			shuffled := shuffle(s, seed)
			if got := renderPlan(Compute(shuffled, goldenNow)); got != first {
				t.Fatalf("input order changed the plan:\n%s---\n%s", got, first)
			}
		})
	}
}

// TestCompute_Converges applies each plan to its state and plans again:
// when everything was placed, the second plan must be empty, and no
// machine may end over its capacity.
func TestCompute_Converges(t *testing.T) {
	states := goldenScenarios(t)
	for seed := range uint64(20) {
		states[fmt.Sprintf("random state %d", seed)] = randomState(seed)
	}
	for name, s := range states {
		t.Run(name, func(t *testing.T) {
			p, err := Compute(s, goldenNow)
			if err != nil {
				return // input errors have their own tests
			}
			after := apply(t, s, p)
			checkCapacity(t, s, after)
			again, err := Compute(after, goldenNow.Add(time.Minute))
			if err != nil {
				t.Fatalf("plan again: %v", err)
			}
			if len(p.Unplaceable) == 0 && !again.Empty() {
				t.Errorf("not converged after one plan; first:\n%ssecond:\n%s", p, again)
			}
		})
	}
}

func TestCompute_ConvergedStateIsEmpty(t *testing.T) {
	s := State{
		Nodes: []Node{
			{Name: "n1", Ready: true, MilliCPU: 2000, Memory: 4 << 30},
			{Name: "n2", Ready: true, MilliCPU: 2000, Memory: 4 << 30},
			{Name: "n3", NotReadyReason: "unreachable"},
		},
		Workloads: []Workload{{Namespace: "default", Name: "web", Replicas: 2, SpecHash: "aaaaaaaa11", Revision: 3, MilliCPU: 500, Memory: 256 << 20}},
		Pods: []Pod{
			{Namespace: "default", Owner: "web", Name: "web-aaaaaaaa-0", Node: "n1", SpecHash: "aaaaaaaa11", Revision: 3, Running: true},
			{Namespace: "default", Owner: "web", Name: "web-aaaaaaaa-1", Node: "n2", SpecHash: "aaaaaaaa11", Revision: 3},
			{Namespace: "default", Owner: "web", Name: "web-aaaaaaaa-2", Node: "n3", SpecHash: "aaaaaaaa11", Revision: 3},
		},
		Prune: true,
	}
	p, err := Compute(s, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() || len(p.Unplaceable) > 0 {
		t.Fatalf("converged state planned:\n%s", p)
	}
	if got := p.Summary(); got != "no changes" {
		t.Errorf("Summary() = %q, want %q", got, "no changes")
	}
}

func TestCompute_InvalidInput(t *testing.T) {
	web := Workload{Namespace: "default", Name: "web", Replicas: 1, SpecHash: "aaaaaaaa11"}
	pod := func(name, node string) Pod {
		return Pod{Namespace: "default", Owner: "web", Name: name, Node: node, SpecHash: "aaaaaaaa11"}
	}
	nodes := []Node{{Name: "n1", Ready: true}, {Name: "n2", Ready: true}}
	tests := []struct {
		name  string
		state State
		want  string // the offender, named in the message
	}{
		{"a workload listed twice", State{Nodes: nodes, Workloads: []Workload{web, web}}, "workload default/web listed twice"},
		{"negative replicas", State{Nodes: nodes, Workloads: []Workload{{Namespace: "prod", Name: "api", Replicas: -2}}}, "workload prod/api: negative replicas -2"},
		{"negative requests", State{Nodes: nodes, Workloads: []Workload{{Namespace: "prod", Name: "api", Memory: -1}}}, "workload prod/api: negative resource request"},
		{"a machine listed twice", State{Nodes: append(nodes, Node{Name: "n1"})}, `machine "n1" listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compute(tt.state, goldenNow)
			if !errors.Is(err, ErrInvalidState) {
				t.Fatalf("err = %v, want ErrInvalidState", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to say %q", err, tt.want)
			}
		})
	}

	t.Run("the same pod reported twice on one machine is one pod", func(t *testing.T) {
		s := State{Nodes: nodes, Workloads: []Workload{web}, Pods: []Pod{pod("web-aaaaaaaa-0", "n1"), pod("web-aaaaaaaa-0", "n1")}}
		p, err := Compute(s, goldenNow)
		if err != nil || !p.Empty() {
			t.Fatalf("Compute = %v, %v; want an empty plan", p, err)
		}
	})
}

func TestCompute_SpreadsEvenly(t *testing.T) {
	for _, tt := range []struct{ replicas, nodes int }{{50, 10}, {3, 3}, {6, 3}, {1000, 7}} {
		t.Run(fmt.Sprintf("%d replicas on %d machines", tt.replicas, tt.nodes), func(t *testing.T) {
			s := State{Workloads: []Workload{{Namespace: "default", Name: "myapp", Replicas: tt.replicas, SpecHash: "0123456789", MilliCPU: 10, Memory: 1 << 20}}}
			for i := range tt.nodes {
				s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("m%02d", i), Ready: true, MilliCPU: 64000, Memory: 64 << 30})
			}
			p, err := Compute(s, goldenNow)
			if err != nil {
				t.Fatal(err)
			}
			per := map[string]int{}
			for _, st := range p.Steps {
				per[st.(Run).Node]++
			}
			lo, hi := tt.replicas/tt.nodes, (tt.replicas+tt.nodes-1)/tt.nodes
			for _, n := range s.Nodes {
				if c := per[n.Name]; c < lo || c > hi {
					t.Errorf("%s got %d pods, want %d..%d", n.Name, c, lo, hi)
				}
			}
		})
	}
}

func TestPlan_Summary(t *testing.T) {
	p := Plan{
		Steps:       []Step{Run{}, Run{}, Replace{}, Stop{}, Run{}},
		Unplaceable: []Unplaceable{{Count: 2}},
	}
	if got, want := p.Summary(), "run 3, replace 1, stop 1, 2 unplaceable"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}

func TestFormatMemory(t *testing.T) {
	tests := []struct {
		bytes int64
		want  string
	}{
		{512 << 20, "512Mi"},
		{1 << 30, "1Gi"},
		{3 << 29, "1.5Gi"},
		{5 << 28, "1.25Gi"},
		{100 << 20, "100Mi"},
		{1000 << 10, "1000Ki"},
		{500e6, "500M"},
		{1e9, "1G"},
		{1500, "1500"},
		{0, "0"},
		{7 << 60, "7Ei"},
	}
	for _, tt := range tests {
		if got := formatMemory(tt.bytes); got != tt.want {
			t.Errorf("formatMemory(%d) = %q, want %q", tt.bytes, got, tt.want)
		}
	}
}

func TestFormatCPU(t *testing.T) {
	for milli, want := range map[int64]string{500: "500m", 2000: "2", 1500: "1500m", 0: "0"} {
		if got := formatCPU(milli); got != want {
			t.Errorf("formatCPU(%d) = %q, want %q", milli, got, want)
		}
	}
}

// apply executes a plan on a copy of the state, as the reconciler would
// once every step succeeded.
func apply(t *testing.T, s State, p Plan) State {
	t.Helper()
	out := s
	out.Pods = slices.Clone(s.Pods)
	workloads := map[string]Workload{}
	for _, w := range s.Workloads {
		workloads[w.Key()] = w
	}
	start := func(r Run) {
		w, ok := workloads[r.Workload]
		if !ok {
			t.Fatalf("%s: no workload %s", r, r.Workload)
		}
		out.Pods = append(out.Pods, Pod{
			Namespace: w.Namespace, Owner: w.Name, Name: r.Pod, Node: r.Node,
			SpecHash: r.SpecHash, Revision: r.Revision, Created: goldenNow, Running: true,
			MilliCPU: w.MilliCPU, Memory: w.Memory,
		})
	}
	stop := func(st Stop) {
		ns, _, _ := strings.Cut(st.Workload, "/")
		i := slices.IndexFunc(out.Pods, func(p Pod) bool { return p.Namespace == ns && p.Name == st.Pod && p.Node == st.Node })
		if i < 0 {
			t.Fatalf("%s: no such pod", st)
		}
		out.Pods = slices.Delete(out.Pods, i, i+1)
	}
	for _, step := range p.Steps {
		switch st := step.(type) {
		case Run:
			start(st)
		case Stop:
			stop(st)
		case Replace:
			start(st.New)
			stop(st.Old)
		}
	}
	return out
}

// checkCapacity fails if a Ready machine that was within its capacity
// before the plan is over it after.
func checkCapacity(t *testing.T, before, after State) {
	t.Helper()
	use := func(s State) map[string][2]int64 {
		m := map[string][2]int64{}
		for _, p := range s.Pods {
			u := m[p.Node]
			m[p.Node] = [2]int64{u[0] + p.MilliCPU, u[1] + p.Memory}
		}
		return m
	}
	was, is := use(before), use(after)
	over := func(n Node, u [2]int64) bool {
		return (n.MilliCPU > 0 && u[0] > n.MilliCPU) || (n.Memory > 0 && u[1] > n.Memory)
	}
	for _, n := range before.Nodes {
		if n.Ready && !over(n, was[n.Name]) && over(n, is[n.Name]) {
			t.Errorf("%s over capacity after the plan: cpu %dm of %dm, memory %d of %d", n.Name, is[n.Name][0], n.MilliCPU, is[n.Name][1], n.Memory)
		}
	}
}

// randomState builds a valid, messy state: machines down, labels,
// capacity pressure, stale and surplus pods, strangers to prune.
func randomState(seed uint64) State {
	r := rand.New(rand.NewPCG(seed, 42))
	s := State{Prune: r.IntN(2) == 0}
	for i := range 4 + r.IntN(12) {
		n := Node{Name: fmt.Sprintf("n%02d", i), Ready: r.IntN(5) > 0, MilliCPU: int64(1+r.IntN(8)) * 1000, Memory: int64(1+r.IntN(16)) << 30, Labels: map[string]string{"zone": string(rune('a' + r.IntN(3)))}}
		if !n.Ready {
			n.NotReadyReason = []string{"unreachable", "", "docker down"}[r.IntN(3)]
		}
		s.Nodes = append(s.Nodes, n)
	}
	hashes := []string{"aaaaaaaa11", "bbbbbbbb22", "cccccccc33"}
	for i := range 1 + r.IntN(6) {
		w := Workload{Namespace: []string{"default", "prod"}[r.IntN(2)], Name: fmt.Sprintf("w%d", i), Replicas: r.IntN(12), SpecHash: hashes[r.IntN(3)], Revision: int64(1 + r.IntN(3)), MilliCPU: int64(r.IntN(5)) * 100, Memory: int64(r.IntN(5)) << 27}
		if r.IntN(3) == 0 {
			w.NodeSelector = map[string]string{"zone": string(rune('a' + r.IntN(4)))}
		}
		s.Workloads = append(s.Workloads, w)
	}
	for i := range r.IntN(40) {
		owner := fmt.Sprintf("w%d", r.IntN(8)) // some have no workload
		node := fmt.Sprintf("n%02d", r.IntN(len(s.Nodes)+1))
		hash := hashes[r.IntN(3)]
		s.Pods = append(s.Pods, Pod{
			Namespace: []string{"default", "prod"}[r.IntN(2)], Owner: owner,
			Name: fmt.Sprintf("%s-%s-%d", owner, hash[:8], i), Node: node, SpecHash: hash,
			Revision: int64(1 + r.IntN(3)), Created: goldenNow.Add(-time.Duration(r.IntN(5)) * time.Minute),
			Running: r.IntN(4) > 0, MilliCPU: int64(r.IntN(3)) * 100, Memory: int64(r.IntN(3)) << 27,
		})
	}
	return s
}

func shuffle(s State, seed uint64) State {
	r := rand.New(rand.NewPCG(seed, 7))
	out := s
	out.Nodes, out.Workloads, out.Pods = slices.Clone(s.Nodes), slices.Clone(s.Workloads), slices.Clone(s.Pods)
	r.Shuffle(len(out.Nodes), func(i, j int) { out.Nodes[i], out.Nodes[j] = out.Nodes[j], out.Nodes[i] })
	r.Shuffle(len(out.Workloads), func(i, j int) { out.Workloads[i], out.Workloads[j] = out.Workloads[j], out.Workloads[i] })
	r.Shuffle(len(out.Pods), func(i, j int) { out.Pods[i], out.Pods[j] = out.Pods[j], out.Pods[i] })
	return out
}

func TestCompute_PinConflict(t *testing.T) {
	why := "its volume claims a and b are bound to two machines (m1 and m2), and a pod runs on one"
	s := State{
		Workloads: []Workload{{Namespace: "default", Name: "db", Replicas: 1, SpecHash: "0123456789", Pin: "m1", PinConflict: why}},
		Nodes:     []Node{{Name: "m1", Ready: true, MilliCPU: 1000, Memory: 1 << 30}, {Name: "m2", Ready: true, MilliCPU: 1000, Memory: 1 << 30}},
	}
	p, err := Compute(s, goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Steps) != 0 || len(p.Unplaceable) != 1 || p.Unplaceable[0].Reason != why {
		t.Fatalf("steps %v, unplaceable %+v; want none placed, and why", p.Steps, p.Unplaceable)
	}
}
