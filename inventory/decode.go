package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Known keys, in the order they are listed in messages.
var (
	topKeys      = []string{"apiVersion", "kind", "knownHosts", "defaults", "machines"}
	machineKeys  = []string{"name", "address", "port", "user", "identityFile", "agent", "labels", "capacity", "proxyJump"}
	defaultsKeys = []string{"port", "user", "identityFile", "agent", "capacity", "proxyJump"}
	capacityKeys = []string{"cpu", "memory"}
)

// proxyJumpNone disables a default proxyJump for one machine, as the same
// keyword does in ssh_config.
const proxyJumpNone = "none"

// setting is one optional field, remembering where it was written so that
// checks made after defaults are applied still point at the right line.
type setting[T any] struct {
	val  T
	set  bool
	line int
	path string
}

func (s *setting[T]) put(v T, n *yaml.Node, path string) {
	*s = setting[T]{val: v, set: true, line: n.Line, path: path}
}

// or returns s, or def when s is unset.
func (s setting[T]) or(def setting[T]) setting[T] {
	if s.set {
		return s
	}
	return def
}

// spec is the fields of one machine entry, or of defaults.
type spec struct {
	line          int
	path          string
	name, address setting[string]
	port          setting[int]
	user          setting[string]
	identityFile  setting[string] // already resolved to an absolute path
	agent         setting[bool]
	labels        map[string]string
	cpu, memory   setting[int64]
	proxyJump     setting[string]
}

// decoder walks the YAML node tree, collecting every problem it finds.
type decoder struct {
	file string // as shown in messages
	dir  string // relative paths in the file resolve against this
	errs ErrorList
}

func (d *decoder) errorf(line int, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// inventory parses data; it returns an error only for failures unrelated to
// the file's content, the rest goes to d.errs.
func (d *decoder) inventory(name string, data []byte) (*Inventory, error) {
	inv := &Inventory{}
	if name == "-" {
		dir, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("resolve inventory paths: %w", err)
		}
		d.dir = dir
	} else {
		path, err := filepath.Abs(name)
		if err != nil {
			return nil, fmt.Errorf("resolve inventory path: %w", err)
		}
		inv.Path = path
		d.dir = filepath.Dir(path)
	}

	root := d.document(data)
	if root == nil {
		return inv, nil
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root.Line, "", "expected a mapping with a machines list at the top level, got %s", describe(root))
		return inv, nil
	}

	var defaults spec
	var machines *yaml.Node
	d.fields(root, "", topKeys, nil, func(key string, v *yaml.Node, path string) {
		switch key {
		case "apiVersion", "kind":
			want := map[string]string{"apiVersion": APIVersion, "kind": Kind}[key]
			if s, ok := d.str(v, path); ok && s != want {
				d.errorf(v.Line, path, "must be %q, got %q", want, s)
			}
		case "knownHosts":
			inv.KnownHosts = d.knownHosts(v, path)
		case "defaults":
			if !isNull(v) {
				defaults = d.spec(v, path, defaultsKeys)
			}
		case "machines":
			machines = v
		}
	})

	if machines == nil || isNull(machines) {
		d.errorf(root.Line, "machines", "no machines; list at least one under machines:")
		return inv, nil
	}
	if machines.Kind != yaml.SequenceNode {
		d.errorf(machines.Line, "machines", "expected a list, got %s", describe(machines))
		return inv, nil
	}
	if len(machines.Content) == 0 {
		d.errorf(machines.Line, "machines", "no machines; list at least one")
		return inv, nil
	}
	var specs []spec
	for i, n := range machines.Content {
		n = resolve(n)
		path := fmt.Sprintf("machines[%d]", i)
		if n.Kind != yaml.MappingNode {
			d.errorf(n.Line, path, "expected a mapping with name and address, got %s", describe(n))
			continue
		}
		specs = append(specs, d.spec(n, path, machineKeys))
	}
	inv.Machines = d.machines(specs, defaults)
	return inv, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document returns the root node of the single document in data, or nil
// when there is none or the YAML is malformed.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root *yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				line, _ := strconv.Atoi(m[1])
				d.errorf(line, "", "invalid YAML: %s", m[2])
			} else {
				d.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
			}
			return nil
		}
		n := resolve(&doc)
		if isNull(n) {
			continue // an empty document, e.g. after a trailing "---"
		}
		if root != nil {
			d.errorf(n.Line, "", "a second YAML document starts here; an inventory is one document")
			return nil
		}
		root = n
	}
	if root == nil {
		d.errorf(0, "machines", "no machines; the file is empty")
	}
	return root
}

// fields calls visit for each known key of mapping n in file order and
// reports unknown and duplicate keys. forbidden keys get their own message.
func (d *decoder) fields(n *yaml.Node, base string, known []string, forbidden map[string]string, visit func(key string, v *yaml.Node, path string)) {
	seen := map[string]int{}
	for _, kv := range pairs(n) {
		k, v := kv[0], resolve(kv[1])
		key := k.Value
		path := join(base, key)
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, base, "keys must be strings, got %s", describe(k))
			continue
		}
		if first, dup := seen[key]; dup {
			d.errorf(k.Line, path, "duplicate key (first at line %d)", first)
			continue
		}
		seen[key] = k.Line
		if msg, ok := forbidden[key]; ok {
			d.errorf(k.Line, path, "%s", msg)
			continue
		}
		if !slices.Contains(known, key) {
			hint := ""
			if s := suggest(key, known); s != "" {
				hint = fmt.Sprintf(", did you mean %s?", s)
			}
			d.errorf(k.Line, path, "unknown field%s (known: %s)", hint, strings.Join(known, ", "))
			continue
		}
		visit(key, v, path)
	}
}

// spec reads the fields of a machine entry or of defaults.
func (d *decoder) spec(n *yaml.Node, path string, known []string) spec {
	s := spec{line: n.Line, path: path, labels: map[string]string{}}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "expected a mapping, got %s", describe(n))
		return s
	}
	var forbidden map[string]string
	if path == "defaults" {
		forbidden = map[string]string{}
		for _, k := range []string{"name", "address", "labels"} {
			forbidden[k] = "not allowed in defaults; set it on each machine"
		}
	}
	d.fields(n, path, known, forbidden, func(key string, v *yaml.Node, path string) {
		switch key {
		case "name":
			if name, ok := d.str(v, path); ok {
				if msg := checkName(name); name != "" && msg != "" {
					d.errorf(v.Line, path, "%s", msg)
				}
				s.name.put(name, v, path)
			}
		case "address":
			if addr, ok := d.str(v, path); ok {
				if addr == "" {
					d.errorf(v.Line, path, "must not be empty")
				} else if msg := checkAddress(addr); msg != "" {
					d.errorf(v.Line, path, "%s", msg)
				}
				s.address.put(addr, v, path)
			}
		case "port":
			if port, ok := d.integer(v, path); ok {
				if port < 0 || port > 65535 {
					d.errorf(v.Line, path, "must be between 1 and 65535, got %d", port)
				} else if port > 0 {
					s.port.put(int(port), v, path)
				}
			}
		case "user":
			if user, ok := d.nonEmpty(v, path); ok {
				if strings.ContainsAny(user, "@ \t") {
					d.errorf(v.Line, path, "must not contain '@' or spaces, got %q", user)
				}
				s.user.put(user, v, path)
			}
		case "identityFile":
			if file, ok := d.nonEmpty(v, path); ok {
				if abs, ok := d.localPath(file, v, path); ok {
					s.identityFile.put(abs, v, path)
				}
			}
		case "agent":
			if b, ok := d.boolean(v, path); ok {
				s.agent.put(b, v, path)
			}
		case "labels":
			s.labels = d.labels(v, path)
		case "capacity":
			if !isNull(v) {
				d.capacity(v, path, &s)
			}
		case "proxyJump":
			// Checked in machines, where the other names are known.
			if pj, ok := d.nonEmpty(v, path); ok {
				s.proxyJump.put(pj, v, path)
			}
		}
	})
	return s
}

func (d *decoder) capacity(n *yaml.Node, path string, s *spec) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "expected a mapping with cpu and memory, got %s", describe(n))
		return
	}
	d.fields(n, path, capacityKeys, nil, func(key string, v *yaml.Node, path string) {
		q, ok := d.str(v, path)
		if !ok {
			return
		}
		switch key {
		case "cpu":
			if milli, msg := scaledQuantity(q, 1000, `"500m", "2"`); msg != "" {
				d.errorf(v.Line, path, "%s", msg)
			} else {
				s.cpu.put(milli, v, path)
			}
		case "memory":
			if bytes, msg := scaledQuantity(q, 1, `"512Mi", "4Gi"`); msg != "" {
				d.errorf(v.Line, path, "%s", msg)
			} else {
				s.memory.put(bytes, v, path)
			}
		}
	})
}

func (d *decoder) labels(n *yaml.Node, path string) map[string]string {
	labels := map[string]string{}
	if isNull(n) {
		return labels
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "expected a mapping of label keys to values, got %s", describe(n))
		return labels
	}
	seen := map[string]int{}
	for _, kv := range pairs(n) {
		k, v := kv[0], resolve(kv[1])
		lpath := fmt.Sprintf("%s[%s]", path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "label keys must be strings, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, lpath, "duplicate label (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		if msg := checkLabelKey(k.Value); msg != "" {
			d.errorf(k.Line, lpath, "%s", msg)
			continue
		}
		val, ok := "", true
		if !isNull(v) {
			val, ok = d.str(v, lpath)
		}
		if !ok {
			continue
		}
		if msg := checkLabelValue(val); msg != "" {
			d.errorf(v.Line, lpath, "%s", msg)
			continue
		}
		labels[k.Value] = val
	}
	return labels
}

func (d *decoder) knownHosts(n *yaml.Node, path string) []string {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "expected a list of file paths, got %s", describe(n))
		return nil
	}
	var files []string
	for i, item := range n.Content {
		item = resolve(item)
		ipath := fmt.Sprintf("%s[%d]", path, i)
		file, ok := d.str(item, ipath)
		if !ok {
			if isNull(item) {
				d.errorf(item.Line, ipath, "must not be empty")
			}
			continue
		}
		if file == "" {
			d.errorf(item.Line, ipath, "must not be empty")
			continue
		}
		if abs, ok := d.localPath(file, item, ipath); ok {
			files = append(files, abs)
		}
	}
	return files
}

// machines applies defaults and checks what spans machines: required
// fields, unique names and proxyJump references.
func (d *decoder) machines(specs []spec, def spec) []Machine {
	index := map[string]int{} // name -> first spec
	for i, s := range specs {
		if !s.name.set || s.name.val == "" {
			d.errorf(s.line, join(s.path, "name"), "required")
		} else if first, dup := index[s.name.val]; dup {
			d.errorf(s.name.line, s.name.path, "duplicate name %q (first at line %d)", s.name.val, specs[first].line)
		} else {
			index[s.name.val] = i
		}
		if !s.address.set {
			d.errorf(s.line, join(s.path, "address"), "required")
		}
	}

	if pj := def.proxyJump; pj.set && pj.val != proxyJumpNone {
		if _, ok := index[pj.val]; !ok {
			if msg := checkJumpHost(pj.val); msg != "" {
				d.errorf(pj.line, pj.path, "%s", msg)
			}
		}
	}

	machines := make([]Machine, len(specs))
	jumps := make([]setting[string], len(specs))
	for i, s := range specs {
		pj := s.proxyJump
		if !pj.set && def.proxyJump.val != s.name.val {
			// The machine a default names is the jump host itself.
			pj = def.proxyJump
		}
		if pj.val == proxyJumpNone {
			pj = setting[string]{}
		}
		if s.proxyJump.set && pj.set {
			if pj.val == s.name.val {
				d.errorf(pj.line, pj.path, "a machine may not jump through itself")
			} else if _, ok := index[pj.val]; !ok {
				if msg := checkJumpHost(pj.val); msg != "" {
					d.errorf(pj.line, pj.path, "%s", msg)
				}
			}
		}
		jumps[i] = pj
		machines[i] = Machine{
			Name:         s.name.val,
			Address:      s.address.val,
			Port:         s.port.or(def.port).val,
			User:         s.user.or(def.user).val,
			IdentityFile: s.identityFile.or(def.identityFile).val,
			Agent:        s.agent.or(def.agent).val,
			Labels:       s.labels,
			Capacity: Capacity{
				MilliCPU:    s.cpu.or(def.cpu).val,
				MemoryBytes: s.memory.or(def.memory).val,
			},
			ProxyJump: pj.val,
			Line:      s.line,
		}
	}
	d.jumpCycles(machines, jumps, index)
	return machines
}

// jumpCycles reports each cycle of proxyJump names once, at the member
// that comes first in the file.
func (d *decoder) jumpCycles(machines []Machine, jumps []setting[string], index map[string]int) {
	next := func(i int) int {
		j, ok := index[machines[i].ProxyJump]
		if !ok || j == i || machines[i].ProxyJump == "" {
			return -1 // self-jumps are reported on their own
		}
		return j
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := make([]int, len(machines))
	for start := range machines {
		var path []int
		i := start
		for i >= 0 && state[i] == unvisited {
			state[i] = onPath
			path = append(path, i)
			i = next(i)
		}
		if i >= 0 && state[i] == onPath {
			k := 0
			for path[k] != i {
				k++
			}
			cycle := path[k:]
			first := cycle[0]
			for _, c := range cycle {
				first = min(first, c)
			}
			names := make([]string, 0, len(cycle)+1)
			at := first
			for range cycle {
				names = append(names, machines[at].Name)
				at = next(at)
			}
			names = append(names, machines[first].Name)
			pj := jumps[first]
			msg := "proxyJump cycle: " + strings.Join(names, " -> ")
			if pj.path == "defaults.proxyJump" {
				msg += fmt.Sprintf(" (machines[%d] inherits defaults.proxyJump)", first)
			}
			d.errorf(pj.line, pj.path, "%s", msg)
		}
		for _, p := range path {
			state[p] = done
		}
	}
}

// localPath makes a path from the file absolute: "~" and "~/" expand to
// the home directory, relative paths resolve against the file's directory.
func (d *decoder) localPath(p string, n *yaml.Node, path string) (string, bool) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			d.errorf(n.Line, path, "expand ~: %v", err)
			return "", false
		}
		return filepath.Join(home, p[1:]), true
	}
	if strings.HasPrefix(p, "~") {
		d.errorf(n.Line, path, "~user is not supported, got %q; write the full path", p)
		return "", false
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), true
	}
	return filepath.Join(d.dir, p), true
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

// nonEmpty is str for optional fields, where "" is more likely a mistake
// than a way to unset.
func (d *decoder) nonEmpty(n *yaml.Node, path string) (string, bool) {
	s, ok := d.str(n, path)
	if ok && s == "" {
		d.errorf(n.Line, path, "must not be empty; leave the field out to leave it unset")
		return "", false
	}
	return s, ok
}

func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	if isNull(n) {
		return 0, false
	}
	var v int64
	if n.Kind == yaml.ScalarNode && digits.MatchString(n.Value) && n.Decode(&v) != nil {
		d.errorf(n.Line, path, "%s is out of range", n.Value)
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		d.errorf(n.Line, path, "expected an integer, got %s", describe(n))
		return 0, false
	}
	return v, true
}

var digits = regexp.MustCompile(`^[-+]?[0-9]+$`)

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

// resolve follows aliases and unwraps documents.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch {
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == yaml.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		default:
			return n
		}
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.DocumentNode && len(n.Content) == 0 ||
		n.Kind == yaml.ScalarNode && n.Tag == "!!null"
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

func join(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// suggest returns the known key closest to key, if it is close enough to
// be a likely typo.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k
		}
		if dist := editDistance(strings.ToLower(key), strings.ToLower(k)); dist < bestDist {
			best, bestDist = k, dist
		}
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
