package spec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Quantities follow Kubernetes' grammar and rounding by using its own
// parser. Its MilliValue and Value wrap around silently past int64, hence
// the upper bounds, far above any real machine.
var (
	maxCPU    = resource.NewQuantity(1_000_000, resource.DecimalSI) // cores
	maxMemory = resource.NewQuantity(1<<62, resource.BinarySI)      // bytes
)

// quantity reads a cpu or memory amount: millicores for cpu, bytes for
// memory, both rounded up. The value may be a YAML number (cpu: 0.5) or a
// string ("500m", "512Mi").
func (d *decoder) quantity(n *yaml.Node, path, resourceName string) (int64, bool) {
	if isNull(n) {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, path, "expected a quantity, got %s", describe(n))
		return 0, false
	}
	examples := map[string]string{"cpu": `"500m", "2"`, "memory": `"512Mi", "4Gi"`}[resourceName]
	q, err := resource.ParseQuantity(n.Value)
	if err != nil {
		msg := fmt.Sprintf("invalid quantity %q (examples: %s)", n.Value, examples)
		if hint := quantityHint(n.Value); hint != "" {
			msg = fmt.Sprintf("invalid quantity %q, did you mean %s? (examples: %s)", n.Value, hint, examples)
		}
		d.errorf(n.Line, path, "%s", msg)
		return 0, false
	}
	if q.Sign() < 0 {
		d.errorf(n.Line, path, "must not be negative, got %s", n.Value)
		return 0, false
	}
	if resourceName == "cpu" {
		if q.Cmp(*maxCPU) > 0 {
			d.errorf(n.Line, path, "quantity %s is too large", n.Value)
			return 0, false
		}
		return q.MilliValue(), true
	}
	if q.Cmp(*maxMemory) > 0 {
		d.errorf(n.Line, path, "quantity %s is too large", n.Value)
		return 0, false
	}
	return q.Value(), true
}

// quantityHint suggests valid spellings for the common "4GB" mistake.
func quantityHint(s string) string {
	base, ok := strings.CutSuffix(strings.TrimSuffix(s, "b"), "B")
	if !ok && base == s {
		return ""
	}
	var valid []string
	for _, c := range []string{base, base + "i", strings.ToUpper(base) + "i"} {
		if _, err := resource.ParseQuantity(c); err == nil && !slices.Contains(valid, strconv.Quote(c)) {
			valid = append(valid, strconv.Quote(c))
		}
	}
	return strings.Join(valid, " or ")
}

// formatMilliCPU and formatBytes write amounts back in manifest units,
// for messages.
func formatMilliCPU(m int64) string {
	return resource.NewMilliQuantity(m, resource.DecimalSI).String()
}

func formatBytes(b int64) string {
	return resource.NewQuantity(b, resource.BinarySI).String()
}
