package spec

import (
	"encoding/base64"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"

	"gopkg.in/yaml.v3"
)

// Kinds of configuration objects.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// ConfigMap is configuration kept apart from images: text (Data) and
// bytes (BinaryData) by key, consumed by pods as environment variables
// (and, later, files).
type ConfigMap struct {
	Meta
	Data       map[string]string `json:"data,omitempty"`
	BinaryData map[string][]byte `json:"binaryData,omitempty"`
}

// Secret is a ConfigMap for values that must not be seen: the state file
// keeps it encrypted, and fleet never prints its values unless asked.
type Secret struct {
	Meta
	// Type is Opaque (default) or another Kubernetes secret type, kept
	// as given.
	Type string `json:"type"`
	// Data holds the decoded values: data's base64 decoded, with
	// stringData's values over them.
	Data map[string][]byte `json:"data,omitempty"`
}

// Keys lists a ConfigMap's keys, sorted.
func (c *ConfigMap) Keys() []string {
	var out []string
	for k := range c.Data {
		out = append(out, k)
	}
	for k := range c.BinaryData {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Value is the value of key as a string, and whether it is there.
func (c *ConfigMap) Value(key string) (string, bool) {
	if v, ok := c.Data[key]; ok {
		return v, true
	}
	v, ok := c.BinaryData[key]
	return string(v), ok
}

// Keys lists a Secret's keys, sorted.
func (s *Secret) Keys() []string { return slices.Sorted(maps.Keys(s.Data)) }

// configSchema is a ConfigMap's or Secret's top level: no spec, data
// fields instead.
func configSchema(kind string) schema {
	if kind == KindSecret {
		return secretSchema
	}
	return configMapSchema
}

var (
	configMapSchema = schema{known: []string{"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"},
		ignored: map[string]string{"status": "ignored: status is reported by fleet, not declared"}}
	secretSchema = schema{known: []string{"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"},
		ignored: map[string]string{"status": "ignored: status is reported by fleet, not declared"}}
)

// configKey is what Kubernetes allows as a ConfigMap or Secret key: it
// becomes a file name.
var configKey = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

func checkConfigKey(k string) string {
	switch {
	case len(k) > 253:
		return "must be at most 253 characters"
	case !configKey.MatchString(k) || k == "." || k == "..":
		return "must consist of letters, digits, '-', '_' or '.' (it can become a file name)"
	}
	return ""
}

// configData reads the top-level data fields of a ConfigMap or Secret
// (document checks them against configSchema and reads the others).
func (d *decoder) configData(root *yaml.Node, kind string, obj Object) {
	seen := map[string]int{} // key → line, across data fields
	dup := func(k string, line int, path string) bool {
		if first, ok := seen[k]; ok {
			d.errorf(line, path, "key %q is also given at line %d", k, first)
			return true
		}
		seen[k] = line
		return false
	}
	var stringData map[string]string
	// document checked the fields against the kind's schema already.
	for _, kv := range pairs(root) {
		key, v := kv[0].Value, resolve(kv[1])
		path := key
		switch key {
		case "data", "binaryData", "stringData":
			if !d.mapping(v, path, " of keys to values") {
				return
			}
			for _, kv := range pairs(v) {
				k, val := kv[0].Value, resolve(kv[1])
				kpath := path + "[" + k + "]"
				if msg := checkConfigKey(k); msg != "" {
					d.errorf(kv[0].Line, kpath, "%s", msg)
					continue
				}
				s, ok := d.str(val, kpath)
				if !ok && !isNull(val) {
					continue
				}
				switch {
				case kind == KindConfigMap && key == "data":
					if !dup(k, kv[0].Line, kpath) {
						cm := obj.(*ConfigMap)
						if cm.Data == nil {
							cm.Data = map[string]string{}
						}
						cm.Data[k] = s
					}
				case key == "stringData":
					if stringData == nil {
						stringData = map[string]string{}
					}
					stringData[k] = s
				default: // base64: a ConfigMap's binaryData, a Secret's data
					b, err := base64.StdEncoding.DecodeString(s)
					if err != nil {
						// The value itself is not repeated: it may be secret.
						d.errorf(val.Line, kpath, "not valid base64 (%d characters); use stringData for plain text", len(s))
						continue
					}
					if kind == KindConfigMap {
						if !dup(k, kv[0].Line, kpath) {
							cm := obj.(*ConfigMap)
							if cm.BinaryData == nil {
								cm.BinaryData = map[string][]byte{}
							}
							cm.BinaryData[k] = b
						}
						continue
					}
					sec := obj.(*Secret)
					if sec.Data == nil {
						sec.Data = map[string][]byte{}
					}
					sec.Data[k] = b
				}
			}
		case "type":
			if s, ok := d.str(v, path); ok && kind == KindSecret {
				if s == "" {
					d.errorf(v.Line, path, "must not be empty; leave it out for Opaque")
				}
				obj.(*Secret).Type = s
			}
		case "immutable":
			d.boolean(v, path)
		}
	}
	if sec, ok := obj.(*Secret); ok {
		// stringData wins over data, as in Kubernetes.
		for k, v := range stringData {
			if sec.Data == nil {
				sec.Data = map[string][]byte{}
			}
			sec.Data[k] = []byte(v)
		}
		if sec.Type == "" {
			sec.Type = "Opaque"
		}
	}
}

// EnvVarSource is where an environment variable's value comes from.
type EnvVarSource struct {
	ConfigMapKeyRef *KeyRef `json:"configMapKeyRef,omitempty"`
	SecretKeyRef    *KeyRef `json:"secretKeyRef,omitempty"`
}

// KeyRef names one key of a ConfigMap or Secret in the pod's namespace.
type KeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	// Optional: a missing object or key leaves the variable out instead
	// of keeping the pod from starting.
	Optional bool `json:"optional,omitempty"`
	// Line is where the reference is in its manifest.
	Line int `json:"-"`
}

// EnvFromSource sets a variable for every key of a ConfigMap or Secret.
type EnvFromSource struct {
	Prefix       string  `json:"prefix,omitempty"`
	ConfigMapRef *ObjRef `json:"configMapRef,omitempty"`
	SecretRef    *ObjRef `json:"secretRef,omitempty"`
}

// ObjRef names a ConfigMap or Secret in the pod's namespace.
type ObjRef struct {
	Name     string `json:"name"`
	Optional bool   `json:"optional,omitempty"`
	// Line is where the reference is in its manifest.
	Line int `json:"-"`
}

// ConfigRef is one ConfigMap or Secret a pod template consumes.
type ConfigRef struct {
	Kind, Name string
	// Key is "" for the whole object (envFrom).
	Key      string
	Optional bool
	// Field and Line are where the reference is, for messages.
	Field string
	Line  int
}

// ConfigRefs lists what t consumes from ConfigMaps and Secrets.
func (t *PodTemplate) ConfigRefs() []ConfigRef {
	var out []ConfigRef
	type named struct {
		field string
		c     Container
	}
	var all []named
	for i, c := range t.Spec.InitContainers {
		all = append(all, named{fmt.Sprintf("spec.template.spec.initContainers[%d]", i), c})
	}
	for i, c := range t.Spec.Containers {
		all = append(all, named{fmt.Sprintf("spec.template.spec.containers[%d]", i), c})
	}
	for _, nc := range all {
		c := nc.c
		for ei, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			field := fmt.Sprintf("%s.env[%d].valueFrom", nc.field, ei)
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				out = append(out, ConfigRef{Kind: KindConfigMap, Name: r.Name, Key: r.Key, Optional: r.Optional, Field: field + ".configMapKeyRef", Line: r.Line})
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				out = append(out, ConfigRef{Kind: KindSecret, Name: r.Name, Key: r.Key, Optional: r.Optional, Field: field + ".secretKeyRef", Line: r.Line})
			}
		}
		for ei, e := range c.EnvFrom {
			field := fmt.Sprintf("%s.envFrom[%d]", nc.field, ei)
			if r := e.ConfigMapRef; r != nil {
				out = append(out, ConfigRef{Kind: KindConfigMap, Name: r.Name, Optional: r.Optional, Field: field + ".configMapRef", Line: r.Line})
			}
			if r := e.SecretRef; r != nil {
				out = append(out, ConfigRef{Kind: KindSecret, Name: r.Name, Optional: r.Optional, Field: field + ".secretRef", Line: r.Line})
			}
		}
	}
	for vi, v := range t.Spec.Volumes {
		field := fmt.Sprintf("spec.template.spec.volumes[%d]", vi)
		for _, src := range []struct {
			kind string
			cv   *ConfigVolume
		}{{KindConfigMap, v.ConfigMap}, {KindSecret, v.Secret}} {
			if src.cv == nil {
				continue
			}
			if len(src.cv.Items) == 0 {
				out = append(out, ConfigRef{Kind: src.kind, Name: src.cv.Name, Optional: src.cv.Optional, Field: field, Line: src.cv.Line})
			}
			for _, it := range src.cv.Items {
				out = append(out, ConfigRef{Kind: src.kind, Name: src.cv.Name, Key: it.Key, Optional: src.cv.Optional, Field: field, Line: src.cv.Line})
			}
		}
	}
	return out
}

var (
	envSourceSchema = schema{known: []string{"configMapKeyRef", "secretKeyRef"},
		unsupported: map[string]string{
			"fieldRef":         "not supported yet; fleet sets HOSTNAME to the pod's name",
			"resourceFieldRef": notSupported,
		}}
	keyRefSchema      = schema{known: []string{"name", "key", "optional"}}
	envFromSchema     = schema{known: []string{"prefix", "configMapRef", "secretRef"}}
	objRefSchema      = schema{known: []string{"name", "optional"}}
	configNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

func (d *decoder) configName(v *yaml.Node, path string) (string, bool) {
	s, ok := d.str(v, path)
	if !ok {
		return "", false
	}
	if !configNamePattern.MatchString(s) || len(s) > 253 {
		d.errorf(v.Line, path, "must be the name of a ConfigMap or Secret (lowercase letters, digits, '-' and '.'), got %q", s)
		return "", false
	}
	return s, true
}

func (d *decoder) keyRef(n *yaml.Node, path string) *KeyRef {
	if !d.mapping(n, path, " with name and key") {
		return nil
	}
	r := &KeyRef{Line: n.Line}
	d.fields(n, path, keyRefSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "name":
			r.Name, _ = d.configName(v, path)
		case "key":
			if s, ok := d.str(v, path); ok {
				if msg := checkConfigKey(s); msg != "" {
					d.errorf(v.Line, path, "%s", msg)
				}
				r.Key = s
			}
		case "optional":
			r.Optional, _ = d.boolean(v, path)
		}
	})
	if r.Name == "" {
		d.errorf(n.Line, path+".name", "required")
	}
	if r.Key == "" {
		d.errorf(n.Line, path+".key", "required")
	}
	return r
}

func (d *decoder) valueFrom(n *yaml.Node, path string) *EnvVarSource {
	if !d.mapping(n, path, " with configMapKeyRef or secretKeyRef") {
		return nil
	}
	src := &EnvVarSource{}
	count := 0
	d.fields(n, path, envSourceSchema, func(key string, v *yaml.Node, path string) {
		count++
		switch key {
		case "configMapKeyRef":
			src.ConfigMapKeyRef = d.keyRef(v, path)
		case "secretKeyRef":
			src.SecretKeyRef = d.keyRef(v, path)
		}
	})
	if count != 1 {
		d.errorf(n.Line, path, "needs exactly one of configMapKeyRef and secretKeyRef")
	}
	return src
}

func (d *decoder) envFrom(n *yaml.Node, path string) []EnvFromSource {
	var out []EnvFromSource
	for i, item := range d.list(n, path, " of configMapRef or secretRef") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, ipath, " with configMapRef or secretRef") {
			continue
		}
		var e EnvFromSource
		refs := 0
		d.fields(item, ipath, envFromSchema, func(key string, v *yaml.Node, path string) {
			switch key {
			case "prefix":
				e.Prefix, _ = d.str(v, path)
			case "configMapRef", "secretRef":
				refs++
				if !d.mapping(v, path, " with name") {
					return
				}
				r := &ObjRef{Line: v.Line}
				d.fields(v, path, objRefSchema, func(key string, v *yaml.Node, path string) {
					switch key {
					case "name":
						r.Name, _ = d.configName(v, path)
					case "optional":
						r.Optional, _ = d.boolean(v, path)
					}
				})
				if r.Name == "" {
					d.errorf(v.Line, path+".name", "required")
				}
				if key == "configMapRef" {
					e.ConfigMapRef = r
				} else {
					e.SecretRef = r
				}
			}
		})
		if refs != 1 {
			d.errorf(item.Line, ipath, "needs exactly one of configMapRef and secretRef")
			continue
		}
		out = append(out, e)
	}
	return out
}
