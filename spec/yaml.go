package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks the YAML node trees of one file, collecting every problem.
type decoder struct {
	file string
	// object is "Kind/name" of the object being decoded, stamped on its
	// problems; "" when unknown.
	object string
	errs   ErrorList
	warns  []Warning
	// keyLine is the line of the key whose value fields is visiting; a
	// visit reads it first thing, before nested walks move it.
	keyLine int
}

func (d *decoder) errorf(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Object: d.object, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(line int, field, format string, args ...any) {
	d.warns = append(d.warns, Warning{Source: Source{File: d.file, Line: line}, Object: d.object, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// schema is what fleet knows about the keys of one mapping.
type schema struct {
	// known are the fields fleet reads, listed in messages.
	known []string
	// hidden are read like known ones but not listed: Kubernetes fields
	// whose handling depends on the value.
	hidden []string
	// unsupported are Kubernetes fields fleet rejects, for now; each maps
	// to a message, "" meaning "not supported (yet)".
	unsupported map[string]string
	// unsupportedIf, when set, marks more keys unsupported by pattern.
	unsupportedIf func(key string) bool
	// ignored are Kubernetes fields fleet accepts and ignores with a
	// warning saying why.
	ignored map[string]string
}

// unsupported builds a schema.unsupported map of fields that all get the
// plain message.
func unsupported(keys ...string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = ""
	}
	return m
}

const notSupported = "not supported (yet)"

// fields calls visit for each known key of mapping n in file order and
// reports unknown, unsupported and duplicate keys. n must be a mapping.
func (d *decoder) fields(n *yaml.Node, base string, s schema, visit func(key string, v *yaml.Node, path string)) {
	seen := map[string]int{}
	for _, kv := range pairs(n) {
		k, v := kv[0], resolve(kv[1])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, base, "keys must be strings, got %s", describe(k))
			continue
		}
		key := k.Value
		path := join(base, key)
		if first, dup := seen[key]; dup {
			d.errorf(k.Line, path, "duplicate key (first at line %d)", first)
			continue
		}
		seen[key] = k.Line
		switch msg, isUnsupported := s.unsupported[key]; {
		case slices.Contains(s.known, key) || slices.Contains(s.hidden, key):
			d.keyLine = k.Line
			visit(key, v, path)
		case isUnsupported || s.unsupportedIf != nil && s.unsupportedIf(key):
			if msg == "" {
				msg = notSupported
			}
			d.errorf(k.Line, path, "%s", msg)
		case s.ignored[key] != "":
			d.warnf(k.Line, path, "%s", s.ignored[key])
		default:
			all := slices.Concat(s.known, s.hidden)
			for k := range s.unsupported {
				all = append(all, k)
			}
			for k := range s.ignored {
				all = append(all, k)
			}
			slices.Sort(all)
			hint := ""
			if sug := suggest(key, all); sug != "" {
				hint = fmt.Sprintf(", did you mean %s?", sug)
			}
			d.errorf(k.Line, path, "unknown field%s (known: %s)", hint, strings.Join(s.known, ", "))
		}
	}
}

// mapping reports whether n is a mapping, reporting anything else but
// null, which means unset.
func (d *decoder) mapping(n *yaml.Node, path, what string) bool {
	if isNull(n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "expected a mapping%s, got %s", what, describe(n))
		return false
	}
	return true
}

// list returns the items of sequence n, reporting anything else but null.
func (d *decoder) list(n *yaml.Node, path, what string) []*yaml.Node {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "expected a list%s, got %s", what, describe(n))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		items[i] = resolve(item)
	}
	return items
}

// str reads a scalar as written. ok is false for null, which means unset,
// and for non-scalars, which are reported.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, path, "expected a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// oneOf reads a string that must be one of allowed.
func (d *decoder) oneOf(n *yaml.Node, path string, allowed ...string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		hint := ""
		if sug := suggest(s, allowed); sug != "" {
			hint = fmt.Sprintf(", did you mean %s?", sug)
		}
		d.errorf(n.Line, path, "must be %s, got %q%s", orList(allowed), s, hint)
		return "", false
	}
	return s, true
}

// stringList reads a list of strings, such as command or args.
func (d *decoder) stringList(n *yaml.Node, path string) []string {
	var out []string
	for i, item := range d.list(n, path, " of strings") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if isNull(item) {
			out = append(out, "")
			continue
		}
		if s, ok := d.str(item, ipath); ok {
			out = append(out, s)
		}
	}
	return out
}

var digits = regexp.MustCompile(`^[-+]?[0-9]+$`)

// integer reads an integer. ok is false for null, meaning unset.
func (d *decoder) integer(n *yaml.Node, path string) (int, bool) {
	if isNull(n) {
		return 0, false
	}
	var v int32 // every integer field in a manifest is an int32 in Kubernetes
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" && digits.MatchString(n.Value) && n.Decode(&v) != nil {
		d.errorf(n.Line, path, "%s is out of range", n.Value)
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		d.errorf(n.Line, path, "expected an integer, got %s", describe(n))
		return 0, false
	}
	return int(v), true
}

// atLeast reads an integer of at least lo.
func (d *decoder) atLeast(n *yaml.Node, path string, lo int) (int, bool) {
	v, ok := d.integer(n, path)
	if ok && v < lo {
		d.errorf(n.Line, path, "must be at least %d, got %d", lo, v)
		return 0, false
	}
	return v, ok
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	if isNull(n) {
		return false, false
	}
	var v bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&v) != nil {
		d.errorf(n.Line, path, "expected true or false, got %s", describe(n))
		return false, false
	}
	return v, true
}

// stringMap reads a mapping of strings, such as labels, annotations or a
// node selector, checking keys and values with the given functions, which
// return "" for valid.
func (d *decoder) stringMap(n *yaml.Node, path string, checkKey, checkValue func(string) string) map[string]string {
	m := map[string]string{}
	if !d.mapping(n, path, " of keys to values") {
		return m
	}
	seen := map[string]int{}
	for _, kv := range pairs(n) {
		k, v := kv[0], resolve(kv[1])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "keys must be strings, got %s", describe(k))
			continue
		}
		kpath := fmt.Sprintf("%s[%s]", path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, kpath, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		if msg := checkKey(k.Value); msg != "" {
			d.errorf(k.Line, kpath, "%s", msg)
			continue
		}
		val, ok := "", true
		if !isNull(v) {
			val, ok = d.str(v, kpath)
		}
		if !ok {
			continue
		}
		if msg := checkValue(val); msg != "" {
			d.errorf(v.Line, kpath, "%s", msg)
			continue
		}
		m[k.Value] = val
	}
	return m
}

func (d *decoder) labels(n *yaml.Node, path string) map[string]string {
	return d.stringMap(n, path, checkLabelKey, checkLabelValue)
}

// pairs returns the key/value pairs of a mapping, expanding "<<" merge
// keys; explicit keys win over merged ones, earlier merges over later.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	return mergePairs(n, map[*yaml.Node]bool{n: true})
}

// mergePairs merges each mapping at most once per expansion, which stops
// self-referencing merges and exponential alias fan-out.
func mergePairs(n *yaml.Node, seen map[*yaml.Node]bool) [][2]*yaml.Node {
	var explicit, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!merge" {
			explicit = append(explicit, [2]*yaml.Node{k, v})
			continue
		}
		v = resolve(v)
		sources := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			sources = v.Content
		}
		for _, src := range sources {
			if src = resolve(src); src.Kind == yaml.MappingNode && !seen[src] {
				seen[src] = true
				merged = append(merged, mergePairs(src, seen)...)
			}
		}
	}
	have := map[string]bool{}
	for _, kv := range explicit {
		have[kv[0].Value] = true
	}
	for _, kv := range merged {
		if !have[kv[0].Value] {
			have[kv[0].Value] = true
			explicit = append(explicit, kv)
		}
	}
	return explicit
}

// maxExpandedNodes bounds the size of a document with its aliases
// expanded, so a few lines of anchors cannot make the walk take forever
// (the "billion laughs").
const maxExpandedNodes = 1 << 20

// expandedSize counts the nodes of n with aliases expanded, stopping once
// the count passes maxExpandedNodes.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int) int {
	if n == nil {
		return 0
	}
	if s, ok := memo[n]; ok {
		return s
	}
	memo[n] = maxExpandedNodes + 1 // a cycle counts as too large
	size := 1
	if n.Kind == yaml.AliasNode {
		size += expandedSize(n.Alias, memo)
	}
	for _, c := range n.Content {
		if size > maxExpandedNodes {
			break
		}
		size += expandedSize(c, memo)
	}
	memo[n] = min(size, maxExpandedNodes+1)
	return memo[n]
}

// resolve follows aliases and unwraps documents.
func resolve(n *yaml.Node) *yaml.Node {
	for range 100 {
		switch {
		case n == nil:
			return nil
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line}
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.DocumentNode && len(n.Content) == 0 ||
		n.Kind == yaml.ScalarNode && n.Tag == "!!null" ||
		n.Kind == yaml.AliasNode && n.Alias == nil
}

// describe names what was found, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "nothing"
	case n.Tag == "!!str":
		return strconv.Quote(n.Value)
	}
	return n.Value
}

// join extends a field path; keys that would make it ambiguous, such as
// nvidia.com/gpu, are bracketed like label keys.
func join(base, key string) string {
	switch {
	case strings.ContainsAny(key, "./[]"):
		return base + "[" + key + "]"
	case base == "":
		return key
	}
	return base + "." + key
}

// orList formats "a, b or c".
func orList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// suggest returns the candidate closest to s, if it is close enough to be
// a likely typo.
func suggest(s string, candidates []string) string {
	if len(s) > 64 {
		return ""
	}
	// Allow three edits in longer words: workdir -> workingDir.
	best, bestDist := "", 3
	if len(s) >= 6 {
		bestDist = 4
	}
	for _, c := range candidates {
		if strings.EqualFold(c, s) {
			return c
		}
		if dist := editDistance(strings.ToLower(s), strings.ToLower(c)); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	if len(s) <= 2 && bestDist > 0 {
		return "" // everything is close to a two-letter word
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
