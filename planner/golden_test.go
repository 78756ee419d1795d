package planner

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Golden scenarios: planner/testdata/*.txt. Each file is an input section,
// a line "----", and the expected plan (Plan.String(), or "error: ..."
// when Compute rejects the input). `go test ./planner -rewrite` regenerates
// the expected sections from the current code; review the diff.
//
// Input lines (blank lines and lines starting with # are ignored):
//
//	node NAME [cpu=Q] [mem=Q] [ready | notready | notready=REASON] [unschedulable[=REASON]] [labels=k=v,k=v]
//	workload NS/NAME replicas=N hash=H [rev=N] [cpu=Q] [mem=Q] [selector=k=v,k=v] [ports=30080/tcp,…] [paused] [recreate] [stopfirst] [pin=NODE] [together] [stable=HASH@REV,NEWREPLICAS]
//	pod NS/OWNER/NAME node=N hash=H [rev=N] [created=SECONDS] [running | exited | unready] [stale] [cpu=Q] [mem=Q] [ports=…]
//	prune
//
// Quantities are Kubernetes-style: cpu=500m, cpu=2, mem=512Mi, mem=1.5Gi.
// A value with spaces is double-quoted: notready="ssh: handshake failed".
// A pod without cpu= or mem= requests what its workload (if declared)
// requests, which is what a pod of the current template would.
var rewrite = flag.Bool("rewrite", false, "rewrite the expected plans in testdata/*.txt")

// goldenNow is the now every scenario is planned at.
var goldenNow = time.Unix(1_000_000, 0).UTC()

const separator = "----"

func TestCompute_Golden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			input, want := readGolden(t, file)
			s, err := parseState(input)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			got := renderPlan(Compute(s, goldenNow))
			if *rewrite {
				if err := os.WriteFile(file, []byte(input+separator+"\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: plan differs (go test ./planner -rewrite to accept)\n--- got\n%s--- want\n%s", file, got, want)
			}
		})
	}
}

func readGolden(t *testing.T, file string) (input, want string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if i := strings.Index(text, "\n"+separator+"\n"); i >= 0 {
		return text[:i+1], text[i+len(separator)+2:]
	}
	if !*rewrite {
		t.Fatalf("%s: no %q line between input and expected plan", file, separator)
	}
	return strings.TrimRight(text, "\n") + "\n", ""
}

func renderPlan(p Plan, err error) string {
	if err != nil {
		return "error: " + strings.ReplaceAll(err.Error(), "\n", "\nerror: ") + "\n"
	}
	return p.String()
}

// goldenScenarios parses every scenario's input, for property tests.
func goldenScenarios(t *testing.T) map[string]State {
	t.Helper()
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]State{}
	for _, file := range files {
		input, _ := readGolden(t, file)
		s, err := parseState(input)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out[strings.TrimSuffix(filepath.Base(file), ".txt")] = s
	}
	return out
}

func parseState(input string) (State, error) {
	var s State
	type inherit struct{ cpu, mem bool }
	var defaults []inherit
	for n, line := range strings.Split(input, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields, err := splitFields(line)
		if err != nil {
			return s, fmt.Errorf("line %d: %v", n+1, err)
		}
		kind, name, args := fields[0], "", fields[1:]
		if kind != "prune" {
			if len(args) == 0 {
				return s, fmt.Errorf("line %d: %s needs a name", n+1, kind)
			}
			name, args = args[0], args[1:]
		}
		var err2 error
		switch kind {
		case "prune":
			s.Prune = true
		case "node":
			node := Node{Name: name, Ready: true}
			for _, a := range args {
				k, v, _ := strings.Cut(a, "=")
				switch k {
				case "cpu":
					node.MilliCPU, err2 = parseCPU(v)
				case "mem":
					node.Memory, err2 = parseMemory(v)
				case "ready":
					node.Ready = true
				case "notready":
					node.Ready, node.NotReadyReason = false, v
				case "unschedulable":
					node.Unschedulable, node.UnschedulableReason = true, v
				case "labels":
					node.Labels, err2 = parseLabels(v)
				default:
					err2 = fmt.Errorf("unknown node field %q", k)
				}
				if err2 != nil {
					break
				}
			}
			s.Nodes = append(s.Nodes, node)
		case "workload":
			ns, nm, ok := strings.Cut(name, "/")
			if !ok {
				return s, fmt.Errorf("line %d: workload wants NS/NAME, got %q", n+1, name)
			}
			w := Workload{Namespace: ns, Name: nm}
			for _, a := range args {
				k, v, _ := strings.Cut(a, "=")
				switch k {
				case "replicas":
					w.Replicas, err2 = strconv.Atoi(v)
				case "hash":
					w.SpecHash = v
				case "rev":
					w.Revision, err2 = strconv.ParseInt(v, 10, 64)
				case "cpu":
					w.MilliCPU, err2 = parseCPU(v)
				case "mem":
					w.Memory, err2 = parseMemory(v)
				case "selector":
					w.NodeSelector, err2 = parseLabels(v)
				case "ports":
					w.HostPorts = strings.Split(v, ",")
				case "paused":
					w.Paused = true
				case "recreate":
					w.Recreate = true
				case "pin":
					w.Pin, w.PinReason = v, "its volume claim's data is"
				case "together":
					w.Together = true
				case "stopfirst":
					w.StopFirstOK = true
				case "stable":
					// stable=HASH@REV,NEW: a staged rollout keeping
					// replicas of HASH beside NEW pods of this template.
					at, n, _ := strings.Cut(v, ",")
					h, rev, _ := strings.Cut(at, "@")
					w.Stable = &Stable{SpecHash: h}
					if w.Stable.Revision, err2 = strconv.ParseInt(rev, 10, 64); err2 == nil {
						w.NewReplicas, err2 = strconv.Atoi(n)
					}
				default:
					err2 = fmt.Errorf("unknown workload field %q", k)
				}
				if err2 != nil {
					break
				}
			}
			s.Workloads = append(s.Workloads, w)
		case "pod":
			parts := strings.Split(name, "/")
			if len(parts) != 3 {
				return s, fmt.Errorf("line %d: pod wants NS/OWNER/NAME, got %q", n+1, name)
			}
			p := Pod{Namespace: parts[0], Owner: parts[1], Name: parts[2], Running: true, Ready: true, Created: goldenNow}
			d := inherit{cpu: true, mem: true}
			for _, a := range args {
				k, v, _ := strings.Cut(a, "=")
				switch k {
				case "node":
					p.Node = v
				case "hash":
					p.SpecHash = v
				case "rev":
					p.Revision, err2 = strconv.ParseInt(v, 10, 64)
				case "created":
					var sec int64
					sec, err2 = strconv.ParseInt(v, 10, 64)
					p.Created = time.Unix(sec, 0).UTC()
				case "running":
					p.Running = true
				case "exited":
					p.Running, p.Ready = false, false
				case "unready":
					p.Ready = false
				case "stale":
					p.Stale = true
				case "ports":
					p.HostPorts = strings.Split(v, ",")
				case "cpu":
					p.MilliCPU, err2 = parseCPU(v)
					d.cpu = false
				case "mem":
					p.Memory, err2 = parseMemory(v)
					d.mem = false
				default:
					err2 = fmt.Errorf("unknown pod field %q", k)
				}
				if err2 != nil {
					break
				}
			}
			s.Pods = append(s.Pods, p)
			defaults = append(defaults, d)
		default:
			err2 = fmt.Errorf("unknown line kind %q", kind)
		}
		if err2 != nil {
			return s, fmt.Errorf("line %d: %v", n+1, err2)
		}
	}
	for i := range s.Pods {
		p := &s.Pods[i]
		for _, w := range s.Workloads {
			if w.Namespace == p.Namespace && w.Name == p.Owner {
				if defaults[i].cpu {
					p.MilliCPU = w.MilliCPU
				}
				if defaults[i].mem {
					p.Memory = w.Memory
				}
			}
		}
	}
	return s, nil
}

// splitFields splits on spaces, keeping double-quoted values whole.
func splitFields(line string) ([]string, error) {
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		end := strings.IndexByte(line, ' ')
		if q := strings.IndexByte(line, '"'); q >= 0 && (end < 0 || q < end) {
			prefix, rest := line[:q], line[q:]
			quoted, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, fmt.Errorf("bad quoting in %q", line)
			}
			v, _ := strconv.Unquote(quoted)
			out = append(out, prefix+v)
			line = rest[len(quoted):]
			continue
		}
		if end < 0 {
			end = len(line)
		}
		out = append(out, line[:end])
		line = line[end:]
	}
	return out, nil
}

func parseLabels(v string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("label %q wants k=v", kv)
		}
		m[k] = val
	}
	return m, nil
}

func parseCPU(v string) (int64, error) {
	if m, ok := strings.CutSuffix(v, "m"); ok {
		return strconv.ParseInt(m, 10, 64)
	}
	f, err := strconv.ParseFloat(v, 64)
	return int64(math.Round(f * 1000)), err
}

func parseMemory(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	}
	mult := 1.0
	for _, u := range units {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = num, u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	return int64(math.Round(f * mult)), err
}
