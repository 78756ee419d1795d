package spec

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Result is what Parse and Load return.
type Result struct {
	// Objects are in file order, with every default applied.
	Objects []Object
	// Warnings are Kubernetes fields that were accepted and ignored.
	Warnings []Warning
}

func sortWarnings(ws []Warning) {
	slices.SortStableFunc(ws, func(a, b Warning) int {
		return cmp.Or(cmp.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Line, b.Source.Line))
	})
}

// apiVersions maps each supported kind to the one apiVersion it needs.
var apiVersions = map[string]string{
	KindNamespace:  "v1",
	KindDeployment: "apps/v1",
	KindService:    "v1",
	KindIngress:    "networking.k8s.io/v1",
	KindConfigMap:  "v1",
	KindSecret:     "v1",

	KindPersistentVolumeClaim: "v1",
}

// supportedKinds is apiVersions' keys in the order messages list them.
var supportedKinds = []string{KindNamespace, KindDeployment, KindService, KindIngress, KindConfigMap, KindSecret, KindPersistentVolumeClaim}

// laterKinds are Kubernetes kinds fleet does not support yet; anything
// else is an unknown kind.
var laterKinds = []string{
	"IngressClass", "PersistentVolume",
	"StorageClass", "StatefulSet", "DaemonSet", "HorizontalPodAutoscaler", "Job", "CronJob",
	"Pod", "ReplicaSet", "ReplicationController", "PodDisruptionBudget", "NetworkPolicy",
	"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
	"LimitRange", "ResourceQuota", "Endpoints", "EndpointSlice", "PriorityClass",
	"CustomResourceDefinition", "List",
}

// serverSet are the metadata fields the Kubernetes API server fills in;
// exported manifests carry them, and fleet ignores them.
var serverSet = map[string]string{}

func init() {
	for _, k := range []string{"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"} {
		serverSet[k] = "ignored: set by the Kubernetes API server"
	}
}

var metadataSchema = schema{
	known: []string{"name", "namespace", "labels", "annotations"},
	unsupported: map[string]string{
		"generateName":    "not supported; set metadata.name",
		"finalizers":      notSupported,
		"ownerReferences": notSupported,
	},
	ignored: serverSet,
}

// Parse parses and validates the manifests in data, a stream of YAML
// documents separated by "---"; empty documents are skipped. file is used
// in messages and Sources. Objects without metadata.namespace go in
// defaultNamespace, or "default" when that is "".
//
// The returned error, if any, is an ErrorList holding every problem found,
// and then Result holds no objects, only warnings.
func Parse(file string, data []byte, defaultNamespace string) (Result, error) {
	ns, err := checkDefaultNamespace(defaultNamespace)
	if err != nil {
		return Result{}, err
	}
	d := &decoder{file: file}
	objs := d.parse(data, ns)
	d.errs = append(d.errs, duplicates(objs)...)
	return result(objs, d.warns, d.errs)
}

func checkDefaultNamespace(ns string) (string, error) {
	if ns == "" {
		return DefaultNamespace, nil
	}
	if msg := checkDNSLabel(ns); msg != "" {
		return "", fmt.Errorf("invalid default namespace: %s", msg)
	}
	return ns, nil
}

func result(objs []Object, warns []Warning, errs ErrorList) (Result, error) {
	if len(errs) > 0 {
		errs.sort()
		sortWarnings(warns)
		return Result{Warnings: warns}, errs
	}
	sortWarnings(warns)
	return Result{Objects: objs, Warnings: warns}, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse decodes every document in data, reporting problems to d.
func (d *decoder) parse(data []byte, ns string) []Object {
	var objs []Object
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := decode(dec, &doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.object = ""
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				line, _ := strconv.Atoi(m[1])
				d.errorf(syntaxErrorLine(line, m[2], data), "", "invalid YAML: %s", m[2])
			} else {
				d.errorf(0, "", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
			}
			break // the parser cannot resynchronise after a syntax error
		}
		root := resolve(&doc)
		if isNull(root) {
			continue
		}
		if expandedSize(root, map[*yaml.Node]int{}) > maxExpandedNodes {
			d.object = ""
			d.errorf(root.Line, "", "document too large once its aliases are expanded")
			continue
		}
		if o := d.document(root, ns); o != nil {
			objs = append(objs, o)
		}
	}
	return objs
}

// parserErrors are the messages of yaml.v3's parser, as opposed to its
// scanner. yaml.v3 (v3.0.1) reports their line 0-based, scanner errors'
// 1-based.
var parserErrors = []string{"did not find expected", "found undefined tag handle", "found duplicate %", "found incompatible YAML document"}

// syntaxErrorLine turns the line of a yaml.v3 error into the 1-based line
// of the problem, never past the end of data.
func syntaxErrorLine(line int, msg string, data []byte) int {
	for _, p := range parserErrors {
		if strings.HasPrefix(msg, p) {
			line++
			break
		}
	}
	last := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		last++
	}
	return max(min(line, last), 1)
}

// decode guards against panics in the YAML parser, which fuzzing has found
// in the past; a panic becomes a syntax error.
func decode(dec *yaml.Decoder, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(doc)
}

// document decodes one object; nil when it has problems.
func (d *decoder) document(root *yaml.Node, ns string) Object {
	d.object = ""
	if root.Kind != yaml.MappingNode {
		d.errorf(root.Line, "", "expected a mapping with apiVersion, kind, metadata and spec, got %s", describe(root))
		return nil
	}
	before := len(d.errs)
	kind, name, kindNode := peek(root)
	if kind != "" && name != "" {
		d.object = kind + "/" + name
	}

	switch {
	case kindNode == nil:
		d.errorf(root.Line, "kind", "required (supported: %s)", strings.Join(supportedKinds, ", "))
		return nil
	case kind == "":
		d.errorf(kindNode.Line, "kind", "expected a kind such as Deployment, got %s", describe(kindNode))
		return nil
	case slices.Contains(laterKinds, kind):
		d.errorf(kindNode.Line, "kind", "kind %s is not supported yet (supported: %s)", kind, strings.Join(supportedKinds, ", "))
		return nil
	case apiVersions[kind] == "":
		hint := ""
		if s := suggest(kind, slices.Concat(supportedKinds, laterKinds)); s != "" {
			hint = fmt.Sprintf(", did you mean %s?", s)
		}
		d.errorf(kindNode.Line, "kind", "unknown kind %s%s (supported: %s)", kind, hint, strings.Join(supportedKinds, ", "))
		return nil
	}

	meta := Meta{Kind: kind, Labels: map[string]string{}, Annotations: map[string]string{}, Source: Source{File: d.file, Line: root.Line}}
	if kind != KindNamespace {
		meta.Namespace = ns
	}
	var obj Object
	var specNode *yaml.Node
	specLine := root.Line
	top := schema{known: []string{"apiVersion", "kind", "metadata", "spec"}, ignored: map[string]string{"status": "ignored: status is reported by fleet, not declared"}}
	switch kind {
	case KindNamespace:
		top.known = top.known[:3]
		top.hidden = []string{"spec"}
	case KindConfigMap, KindSecret:
		top = configSchema(kind) // no spec: data fields, read below
	}
	haveAPIVersion, haveMetadata := false, false
	d.fields(root, "", top, func(key string, v *yaml.Node, path string) {
		switch key {
		case "apiVersion":
			haveAPIVersion = true
			want := apiVersions[kind]
			if s, ok := d.str(v, path); !ok {
				if isNull(v) {
					d.errorf(v.Line, path, "required (%s for %s)", want, kind)
				}
			} else if s != want {
				d.errorf(v.Line, path, "must be %s for %s, got %q", want, kind, s)
			} else {
				meta.APIVersion = s
			}
		case "metadata":
			haveMetadata = true
			d.metadata(v, d.keyLine, &meta)
		case "spec":
			specNode, specLine = v, d.keyLine
		}
	})
	if !haveAPIVersion {
		d.errorf(root.Line, "apiVersion", "required (%s for %s)", apiVersions[kind], kind)
	}
	if !haveMetadata {
		d.errorf(root.Line, "metadata.name", "required")
	}

	switch kind {
	case KindNamespace:
		if d.mapping(specNode, "spec", "") {
			d.fields(specNode, "spec", schema{unsupported: unsupported("finalizers")}, nil)
		}
		obj = &Namespace{Meta: meta}
	case KindDeployment:
		dep := &Deployment{Meta: meta}
		d.deploymentSpec(specNode, specLine, dep)
		obj = dep
	case KindService:
		svc := &Service{Meta: meta}
		d.serviceSpec(specNode, specLine, svc)
		obj = svc
	case KindIngress:
		ing := &Ingress{Meta: meta}
		d.ingressSpec(specNode, specLine, ing)
		obj = ing
	case KindConfigMap:
		obj = &ConfigMap{Meta: meta}
		d.configData(root, kind, obj)
	case KindSecret:
		obj = &Secret{Meta: meta}
		d.configData(root, kind, obj)
	case KindPersistentVolumeClaim:
		c := &PersistentVolumeClaim{Meta: meta}
		d.pvcSpec(specNode, specLine, c)
		obj = c
	}
	if len(d.errs) > before {
		return nil
	}
	return obj
}

// peek finds kind and metadata.name before the object is walked, so that
// every problem in it can name the object.
func peek(root *yaml.Node) (kind, name string, kindNode *yaml.Node) {
	for _, kv := range pairs(root) {
		k, v := kv[0], resolve(kv[1])
		switch k.Value {
		case "kind":
			if kindNode == nil {
				kindNode = v
				if v.Kind == yaml.ScalarNode && !isNull(v) {
					kind = v.Value
				}
			}
		case "metadata":
			if v.Kind != yaml.MappingNode {
				continue
			}
			for _, kv := range pairs(v) {
				if n := resolve(kv[1]); kv[0].Value == "name" && n.Kind == yaml.ScalarNode && !isNull(n) && name == "" {
					name = n.Value
				}
			}
		}
	}
	return kind, name, kindNode
}

// metadata reads the object's metadata into m.
// line is that of the metadata key.
func (d *decoder) metadata(n *yaml.Node, line int, m *Meta) {
	if !d.mapping(n, "metadata", " with a name") {
		if isNull(n) {
			d.errorf(line, "metadata.name", "required")
		}
		return
	}
	haveName := false
	d.fields(n, "metadata", metadataSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "name":
			s, ok := d.str(v, path)
			if !ok {
				return
			}
			haveName = true
			check := checkDNSSubdomain
			switch m.Kind {
			case KindNamespace:
				check = checkDNSLabel
			case KindService:
				check = checkDNS1035Label
			}
			if s == "" {
				d.errorf(v.Line, path, "required")
			} else if msg := check(s); msg != "" {
				d.errorf(v.Line, path, "%s", msg)
			}
			m.Name = s
		case "namespace":
			if m.Kind == KindNamespace {
				d.errorf(v.Line, path, "not allowed: a Namespace is not itself in a namespace")
				return
			}
			if s, ok := d.str(v, path); ok && s != "" {
				if msg := checkDNSLabel(s); msg != "" {
					d.errorf(v.Line, path, "%s", msg)
				}
				m.Namespace = s
			}
		case "labels":
			m.Labels = d.labels(v, path)
		case "annotations":
			m.Annotations = d.stringMap(v, path, checkLabelKey, anyValue)
			d.fleetAnnotations(v, path)
		}
	})
	if !haveName {
		d.errorf(line, "metadata.name", "required")
	}
}

// portKey is a port and protocol, for duplicate checks within a pod or
// service.
type portKey struct {
	port     int
	protocol string
}

// portRef reads a port number or a port name.
func (d *decoder) portRef(n *yaml.Node, path string) (IntOrString, bool) {
	if isNull(n) {
		return IntOrString{}, false
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		p, ok := d.integer(n, path)
		if ok && (p < 1 || p > 65535) {
			d.errorf(n.Line, path, "must be between 1 and 65535, got %d", p)
			return IntOrString{}, false
		}
		return IntOrString{Int: p}, ok
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		d.errorf(n.Line, path, "expected a port number or name, got %s", describe(n))
		return IntOrString{}, false
	}
	if digits.MatchString(n.Value) {
		d.errorf(n.Line, path, "expected a port number or name, got %q; write the number without quotes", n.Value)
		return IntOrString{}, false
	}
	if msg := checkPortName(n.Value); msg != "" {
		d.errorf(n.Line, path, "%s", msg)
		return IntOrString{}, false
	}
	return IntOrString{Str: n.Value, IsStr: true}, true
}

// port reads a port number: 1-65535.
func (d *decoder) port(n *yaml.Node, path string) (int, bool) {
	p, ok := d.integer(n, path)
	if ok && (p < 1 || p > 65535) {
		d.errorf(n.Line, path, "must be between 1 and 65535, got %d", p)
		return 0, false
	}
	return p, ok
}

// protocol reads TCP or UDP.
func (d *decoder) protocol(n *yaml.Node, path string) (string, bool) {
	if n != nil && n.Kind == yaml.ScalarNode && n.Value == "SCTP" {
		d.errorf(n.Line, path, "SCTP is not supported (yet); use TCP or UDP")
		return "", false
	}
	return d.oneOf(n, path, ProtocolTCP, ProtocolUDP)
}

// formatLabels writes labels as sorted k=v pairs, for messages.
func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// Annotations fleet reads. Others under the fleet.dev/ prefix are errors
// (a typo would otherwise be silently ignored).
const (
	// AnnotationLBPolicy picks a LoadBalancer Service's balancing:
	// round-robin (default) or least-connections.
	AnnotationLBPolicy = "fleet.dev/lb-policy"
	// AnnotationLBMode forces tcp (L4) or http (L7) proxying; without it a
	// port named http or http-*, or with appProtocol http, is L7.
	AnnotationLBMode = "fleet.dev/lb-mode"
)

var fleetAnnotations = map[string][]string{
	AnnotationLBPolicy: {"round-robin", "least-connections"},
	AnnotationLBMode:   {"tcp", "http"},
	AnnotationTLS:      {"acme", "internal"},

	AnnotationReclaimPolicy: {"Delete", "Retain"},
}

// fleetAnnotations checks the fleet.dev/ annotations in n.
func (d *decoder) fleetAnnotations(n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for _, kv := range pairs(n) {
		k, v := kv[0], resolve(kv[1])
		if !strings.HasPrefix(k.Value, "fleet.dev/") {
			continue
		}
		kpath := fmt.Sprintf("%s[%s]", path, k.Value)
		allowed, ok := fleetAnnotations[k.Value]
		if !ok {
			d.errorf(k.Line, kpath, "unknown fleet annotation (known: %s, %s, %s, %s)", AnnotationLBMode, AnnotationLBPolicy, AnnotationReclaimPolicy, AnnotationTLS)
			continue
		}
		if !slices.Contains(allowed, v.Value) {
			d.errorf(v.Line, kpath, "must be one of %s, got %q", strings.Join(allowed, ", "), v.Value)
		}
	}
}
