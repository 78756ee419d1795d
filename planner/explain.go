package planner

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// rejectKind is the first check a node failed, in the order they run.
type rejectKind int

const (
	rejectNotReady rejectKind = iota
	rejectUnschedulable
	rejectSelector
	rejectCPU
	rejectMemory
	rejectPort
)

// rejection is why one node cannot take a pod; detail is the NotReady
// reason, the missing labels, or the request as a quantity.
type rejection struct {
	kind   rejectKind
	detail string
}

// summarise turns per-node rejections into one sentence, largest group
// first: "2 of 3 machines lack 512Mi memory; 1 is NotReady (unreachable)".
func summarise(total int, rs []rejection) string {
	if total == 0 {
		return "no machines in inventory"
	}
	type group struct {
		rejection
		n int
	}
	var groups []group
	for _, r := range mergeNotReady(rs) {
		if i := slices.IndexFunc(groups, func(g group) bool { return g.rejection == r }); i >= 0 {
			groups[i].n++
		} else {
			groups = append(groups, group{r, 1})
		}
	}
	slices.SortFunc(groups, func(a, b group) int {
		if a.n != b.n {
			return b.n - a.n
		}
		if a.kind != b.kind {
			return int(a.kind) - int(b.kind)
		}
		return strings.Compare(a.detail, b.detail)
	})
	var b strings.Builder
	for i, g := range groups {
		if i == 0 {
			fmt.Fprintf(&b, "%d of %d machines %s", g.n, total, g.phrase(g.n))
		} else {
			fmt.Fprintf(&b, "; %d %s", g.n, g.phrase(g.n))
		}
	}
	if len(groups) == 0 {
		// Unreachable while the scheduler and this explanation agree;
		// said plainly rather than hidden if they ever drift.
		fmt.Fprintf(&b, "none of %d machines fits", total)
	}
	return b.String()
}

// mergeNotReady folds the NotReady machines into one rejection whose
// detail counts the reasons when they differ: "2 unreachable, 1 no reason
// given".
func mergeNotReady(rs []rejection) []rejection {
	reasons := map[string]int{}
	out := make([]rejection, 0, len(rs))
	for _, r := range rs {
		if r.kind != rejectNotReady {
			out = append(out, r)
			continue
		}
		reasons[r.detail]++
	}
	switch len(reasons) {
	case 0:
		return out
	case 1:
		for reason, n := range reasons {
			for range n {
				out = append(out, rejection{kind: rejectNotReady, detail: reason})
			}
		}
		return out
	}
	keys := slices.Sorted(maps.Keys(reasons))
	parts := make([]string, len(keys))
	for i, k := range keys {
		if k == "" {
			k = "no reason given"
		}
		parts[i] = fmt.Sprintf("%d %s", reasons[keys[i]], k)
	}
	detail := strings.Join(parts, ", ")
	for range len(rs) - len(out) {
		out = append(out, rejection{kind: rejectNotReady, detail: detail})
	}
	return out
}

func (r rejection) phrase(n int) string {
	one := n == 1
	pick := func(singular, plural string) string {
		if one {
			return singular
		}
		return plural
	}
	switch r.kind {
	case rejectNotReady:
		if r.detail == "" {
			return pick("is NotReady", "are NotReady")
		}
		return pick("is NotReady", "are NotReady") + " (" + r.detail + ")"
	case rejectUnschedulable:
		if r.detail == "" {
			return pick("is unschedulable", "are unschedulable")
		}
		return pick("is unschedulable", "are unschedulable") + " (" + r.detail + ")"
	case rejectSelector:
		return pick("doesn't", "don't") + " match nodeSelector (missing " + r.detail + ")"
	case rejectCPU:
		return pick("lacks ", "lack ") + r.detail + " CPU"
	case rejectPort:
		return pick("has", "have") + " host port " + r.detail + " taken"
	default:
		return pick("lacks ", "lack ") + r.detail + " memory"
	}
}

// formatCPU writes millicores as Kubernetes would: "500m", "2".
func formatCPU(milli int64) string {
	if milli%1000 == 0 {
		return strconv.FormatInt(milli/1000, 10)
	}
	return strconv.FormatInt(milli, 10) + "m"
}

// formatMemory writes bytes as a short Kubernetes quantity: the largest
// binary unit (Mi and up) that shows it exactly in quarters ("1.5Gi",
// "512Mi"), else whole Ki, else a whole decimal unit ("500M"), else bytes.
func formatMemory(b int64) string {
	binary := []struct {
		suffix string
		unit   int64
	}{{"Ei", 1 << 60}, {"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}}
	for _, u := range binary {
		// unit/4 divides b exactly: a float64 shows the quotient exactly.
		if b >= u.unit && b%(u.unit/4) == 0 {
			return strconv.FormatFloat(float64(b)/float64(u.unit), 'f', -1, 64) + u.suffix
		}
	}
	if b >= 1<<10 && b%(1<<10) == 0 {
		return strconv.FormatInt(b>>10, 10) + "Ki"
	}
	decimal := []struct {
		suffix string
		unit   int64
	}{{"E", 1e18}, {"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}}
	for _, u := range decimal {
		if b >= u.unit && b%u.unit == 0 {
			return strconv.FormatInt(b/u.unit, 10) + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}
