package inventory

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// This is a local implementation of the Kubernetes quantity grammar
// (k8s.io/apimachinery/pkg/api/resource). That package cannot be imported
// as the module stands: go.sum lacks its dependencies (gopkg.in/inf.v0 and
// others). It follows the same grammar and rounds up like
// Quantity.MilliValue and Quantity.Value do.

// quantitySuffixes maps a suffix to its multiplier as a rational string.
var quantitySuffixes = map[string]string{
	"":   "1",
	"n":  "1/1000000000",
	"u":  "1/1000000",
	"m":  "1/1000",
	"k":  "1000",
	"M":  "1000000",
	"G":  "1000000000",
	"T":  "1000000000000",
	"P":  "1000000000000000",
	"E":  "1000000000000000000",
	"Ki": "1024",
	"Mi": "1048576",
	"Gi": "1073741824",
	"Ti": "1099511627776",
	"Pi": "1125899906842624",
	"Ei": "1152921504606846976",
}

// maxExponent bounds "1e<n>" so a hostile file cannot make us build huge
// numbers; anything this large overflows int64 regardless.
const maxExponent = 40

var errQuantitySyntax = errors.New("invalid quantity")

// parseQuantity parses a Kubernetes quantity such as "500m", "2", "4Gi" or
// "1.5e3" into an exact rational.
func parseQuantity(s string) (*big.Rat, error) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits, dots := 0, 0
	for ; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			digits++
		} else if s[i] == '.' {
			dots++
		} else {
			break
		}
	}
	if digits == 0 || dots > 1 {
		return nil, errQuantitySyntax
	}
	num, suffix := s[:i], s[i:]
	num = strings.TrimPrefix(num, "+")
	if strings.HasSuffix(num, ".") {
		num += "0"
	}
	v, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, errQuantitySyntax
	}
	if mult, ok := quantitySuffixes[suffix]; ok {
		m, _ := new(big.Rat).SetString(mult)
		return v.Mul(v, m), nil
	}
	if len(suffix) > 1 && (suffix[0] == 'e' || suffix[0] == 'E') {
		exp, err := strconv.Atoi(suffix[1:])
		if err != nil {
			return nil, errQuantitySyntax
		}
		if exp > maxExponent || exp < -maxExponent {
			return nil, errors.New("exponent out of range")
		}
		pow := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
		p := new(big.Rat).SetInt(pow)
		if exp < 0 {
			return v.Quo(v, p), nil
		}
		return v.Mul(v, p), nil
	}
	return nil, errQuantitySyntax
}

// scaledQuantity parses a positive quantity and returns it times scale,
// rounded up, e.g. scale 1000 for millicores. The error is a message for a
// FieldError.
func scaledQuantity(s string, scale int64, examples string) (int64, string) {
	v, err := parseQuantity(s)
	if errors.Is(err, errQuantitySyntax) {
		msg := fmt.Sprintf("invalid quantity %q (examples: %s)", s, examples)
		if hint := quantityHint(s); hint != "" {
			msg = fmt.Sprintf("invalid quantity %q, did you mean %s? (examples: %s)", s, hint, examples)
		}
		return 0, msg
	}
	if err != nil {
		return 0, fmt.Sprintf("invalid quantity %q: %v", s, err)
	}
	if v.Sign() <= 0 {
		return 0, fmt.Sprintf("must be greater than 0, got %q", s)
	}
	v.Mul(v, new(big.Rat).SetInt64(scale))
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, fmt.Sprintf("quantity %q is too large", s)
	}
	return q.Int64(), ""
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

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
