package inventory

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Quantities follow Kubernetes' grammar and rounding, by using its own
// parser (k8s.io/apimachinery/pkg/api/resource).

func parseQuantity(s string) (resource.Quantity, error) {
	return resource.ParseQuantity(s)
}

// scaledQuantity parses a positive quantity and returns it times scale,
// rounded up, e.g. scale 1000 for millicores. The error is a message for a
// FieldError.
func scaledQuantity(s string, scale int64, examples string) (int64, string) {
	v, err := parseQuantity(s)
	if err != nil {
		msg := fmt.Sprintf("invalid quantity %q (examples: %s)", s, examples)
		if hint := quantityHint(s); hint != "" {
			msg = fmt.Sprintf("invalid quantity %q, did you mean %s? (examples: %s)", s, hint, examples)
		}
		return 0, msg
	}
	if v.Sign() <= 0 {
		return 0, fmt.Sprintf("must be greater than 0, got %q", s)
	}
	// MilliValue and Value round up, as Kubernetes does for requests.
	var n int64
	if scale == 1000 {
		n = v.MilliValue()
	} else {
		n = v.Value() * scale
	}
	if n <= 0 || n == math.MaxInt64 {
		return 0, fmt.Sprintf("quantity %q is too large", s)
	}
	return n, ""
}

// quantityHint suggests valid spellings for the common "4GB" mistake.
func quantityHint(s string) string {
	base, ok := strings.CutSuffix(strings.TrimSuffix(s, "b"), "B")
	if !ok && base == s {
		return ""
	}
	var valid []string
	for _, c := range []string{base, base + "i", strings.ToUpper(base) + "i"} {
		if _, err := parseQuantity(c); err == nil && !slices.Contains(valid, strconv.Quote(c)) {
			valid = append(valid, strconv.Quote(c))
		}
	}
	return strings.Join(valid, " or ")
}
