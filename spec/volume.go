package spec

import (
	"fmt"
	pathpkg "path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// KindPersistentVolumeClaim is a claim on storage that outlives pods.
const KindPersistentVolumeClaim = "PersistentVolumeClaim"

// AnnotationReclaimPolicy on a PersistentVolumeClaim says what deleting
// it does to its data: Delete (default) removes the volume, Retain keeps
// it on its machine.
const AnnotationReclaimPolicy = "fleet.dev/reclaim-policy"

// PersistentVolumeClaim asks for storage: a Docker volume on one machine,
// chosen the first time a pod uses it, where that pod then always runs.
type PersistentVolumeClaim struct {
	Meta
	AccessModes []string `json:"accessModes"`
	// Storage is resources.requests.storage in bytes: recorded and shown,
	// not enforced (Docker's local volumes have no size).
	Storage          int64  `json:"storage"`
	StorageClassName string `json:"storageClassName,omitempty"`
}

// ReclaimPolicy is Delete or Retain.
func (c *PersistentVolumeClaim) ReclaimPolicy() string {
	if p := c.Annotations[AnnotationReclaimPolicy]; p != "" {
		return p
	}
	return "Delete"
}

// Volume is one volume of a pod: exactly one source is set.
type Volume struct {
	Name                  string          `json:"name"`
	EmptyDir              *EmptyDirVolume `json:"emptyDir,omitempty"`
	HostPath              *HostPathVolume `json:"hostPath,omitempty"`
	PersistentVolumeClaim *ClaimVolume    `json:"persistentVolumeClaim,omitempty"`
	ConfigMap             *ConfigVolume   `json:"configMap,omitempty"`
	Secret                *ConfigVolume   `json:"secret,omitempty"`
}

// ConfigVolume puts a ConfigMap's or Secret's keys in files: every key
// (named as the key), or only Items.
type ConfigVolume struct {
	// Name is the ConfigMap's (configMap.name) or Secret's
	// (secret.secretName).
	Name     string      `json:"name"`
	Items    []KeyToPath `json:"items,omitempty"`
	Optional bool        `json:"optional,omitempty"`
	// DefaultMode is the files' mode; default 0644, as in Kubernetes.
	DefaultMode int `json:"defaultMode"`
	// Line is where the volume is in its manifest.
	Line int `json:"-"`
}

// KeyToPath puts one key in a file of the volume.
type KeyToPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	// Mode, when set, is this file's mode instead of DefaultMode.
	Mode *int `json:"mode,omitempty"`
}

// EmptyDirVolume lives and dies with its pod; Medium "Memory" keeps it in
// memory (tmpfs).
type EmptyDirVolume struct {
	Medium    string `json:"medium,omitempty"`
	SizeLimit int64  `json:"sizeLimit,omitempty"`
}

// HostPathVolume is a path of the machine, bind-mounted.
type HostPathVolume struct {
	Path string `json:"path"`
	// Type is "" (no check; a missing path becomes a directory),
	// DirectoryOrCreate, Directory, FileOrCreate, File, Socket,
	// CharDevice or BlockDevice: checked on the machine before the
	// container is created.
	Type string `json:"type,omitempty"`
}

// ClaimVolume mounts a PersistentVolumeClaim of the pod's namespace.
type ClaimVolume struct {
	ClaimName string `json:"claimName"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// VolumeMount mounts a pod volume into a container.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	// Line is where the mount is in its manifest.
	Line int `json:"-"`
}

// Claims lists the PersistentVolumeClaims a pod spec mounts.
func (ps *PodSpec) Claims() []string {
	var out []string
	for _, v := range ps.Volumes {
		if v.PersistentVolumeClaim != nil && !slices.Contains(out, v.PersistentVolumeClaim.ClaimName) {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

var (
	volumeSchema = schema{known: []string{"name", "emptyDir", "hostPath", "persistentVolumeClaim", "configMap", "secret"},
		unsupported: unsupported("projected", "downwardAPI", "nfs", "csi", "ephemeral", "iscsi",
			"cephfs", "rbd", "glusterfs", "awsElasticBlockStore", "gcePersistentDisk", "azureDisk", "azureFile", "image", "fc")}
	emptyDirSchema     = schema{known: []string{"medium", "sizeLimit"}}
	hostPathSchema     = schema{known: []string{"path", "type"}}
	claimVolumeSchema  = schema{known: []string{"claimName", "readOnly"}}
	configVolumeSchema = schema{known: []string{"name", "items", "defaultMode", "optional"}}
	secretVolumeSchema = schema{known: []string{"secretName", "items", "defaultMode", "optional"}}
	keyToPathSchema    = schema{known: []string{"key", "path", "mode"}}
	volumeMountSchema  = schema{known: []string{"name", "mountPath", "readOnly"},
		unsupported: unsupported("subPath", "subPathExpr", "mountPropagation", "recursiveReadOnly")}
	pvcSpecSchema = schema{known: []string{"accessModes", "resources", "storageClassName", "volumeMode"},
		unsupported: unsupported("selector", "volumeName", "dataSource", "dataSourceRef", "volumeAttributesClassName")}
	pvcResourcesSchema = schema{known: []string{"requests", "limits"}}
	hostPathTypes      = []string{"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}
)

func (d *decoder) volumes(n *yaml.Node, path string) []Volume {
	var out []Volume
	names := map[string]int{}
	for i, item := range d.list(n, path, " of volumes") {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if !d.mapping(item, ipath, " with name and a source") {
			continue
		}
		var v Volume
		sources := 0
		d.fields(item, ipath, volumeSchema, func(key string, n *yaml.Node, path string) {
			switch key {
			case "name":
				if s, ok := d.str(n, path); ok {
					if msg := checkDNSLabel(s); msg != "" {
						d.errorf(n.Line, path, "%s", msg)
					}
					if first, dup := names[s]; dup {
						d.errorf(n.Line, path, "volume %q is also defined at line %d", s, first)
					}
					names[s] = n.Line
					v.Name = s
				}
			case "emptyDir":
				sources++
				v.EmptyDir = &EmptyDirVolume{}
				if isNull(n) || !d.mapping(n, path, " with medium and sizeLimit") {
					return
				}
				d.fields(n, path, emptyDirSchema, func(key string, n *yaml.Node, path string) {
					switch key {
					case "medium":
						v.EmptyDir.Medium, _ = d.oneOf(n, path, "", "Memory")
					case "sizeLimit":
						if b, ok := d.size(n, path, "64Mi"); ok {
							v.EmptyDir.SizeLimit = b
						}
					}
				})
			case "hostPath":
				sources++
				v.HostPath = &HostPathVolume{}
				if !d.mapping(n, path, " with path") {
					return
				}
				d.fields(n, path, hostPathSchema, func(key string, n *yaml.Node, p string) {
					switch key {
					case "path":
						if s, ok := d.str(n, p); ok {
							if !pathpkg.IsAbs(s) {
								d.errorf(n.Line, p, "must be an absolute path, got %q", s)
							}
							v.HostPath.Path = s
						}
					case "type":
						v.HostPath.Type, _ = d.oneOf(n, p, hostPathTypes...)
					}
				})
				if v.HostPath.Path == "" {
					d.errorf(n.Line, path+".path", "required")
				}
			case "configMap", "secret":
				sources++
				cv := d.configVolume(n, path, key)
				if key == "configMap" {
					v.ConfigMap = cv
				} else {
					v.Secret = cv
				}
			case "persistentVolumeClaim":
				sources++
				v.PersistentVolumeClaim = &ClaimVolume{}
				if !d.mapping(n, path, " with claimName") {
					return
				}
				d.fields(n, path, claimVolumeSchema, func(key string, n *yaml.Node, path string) {
					switch key {
					case "claimName":
						v.PersistentVolumeClaim.ClaimName, _ = d.configName(n, path)
					case "readOnly":
						v.PersistentVolumeClaim.ReadOnly, _ = d.boolean(n, path)
					}
				})
				if v.PersistentVolumeClaim.ClaimName == "" {
					d.errorf(n.Line, path+".claimName", "required")
				}
			}
		})
		if v.Name == "" {
			d.errorf(item.Line, ipath+".name", "required")
		}
		if sources != 1 {
			d.errorf(item.Line, ipath, "needs exactly one of emptyDir, hostPath, persistentVolumeClaim, configMap and secret")
		}
		out = append(out, v)
	}
	return out
}

func (d *decoder) volumeMounts(n *yaml.Node, p string) []VolumeMount {
	var out []VolumeMount
	paths := map[string]bool{}
	for i, item := range d.list(n, p, " of volume mounts") {
		ipath := fmt.Sprintf("%s[%d]", p, i)
		if !d.mapping(item, ipath, " with name and mountPath") {
			continue
		}
		m := VolumeMount{Line: item.Line}
		d.fields(item, ipath, volumeMountSchema, func(key string, n *yaml.Node, fp string) {
			switch key {
			case "name":
				m.Name, _ = d.str(n, fp)
			case "mountPath":
				if s, ok := d.str(n, fp); ok {
					if !pathpkg.IsAbs(s) {
						d.errorf(n.Line, fp, "must be an absolute path, got %q", s)
					}
					if clean := pathpkg.Clean(s); paths[clean] {
						d.errorf(n.Line, fp, "%s is mounted twice in this container", s)
					} else {
						paths[clean] = true
					}
					m.MountPath = s
				}
			case "readOnly":
				m.ReadOnly, _ = d.boolean(n, fp)
			}
		})
		if m.Name == "" {
			d.errorf(item.Line, ipath+".name", "required")
		}
		if m.MountPath == "" {
			d.errorf(item.Line, ipath+".mountPath", "required")
		}
		out = append(out, m)
	}
	return out
}

// pvcSpec reads a PersistentVolumeClaim's spec.
func (d *decoder) pvcSpec(n *yaml.Node, line int, c *PersistentVolumeClaim) {
	if !d.mapping(n, "spec", " with accessModes and resources") {
		if isNull(n) {
			d.errorf(line, "spec.resources.requests.storage", "required")
		}
		return
	}
	haveStorage := false
	d.fields(n, "spec", pvcSpecSchema, func(key string, v *yaml.Node, path string) {
		switch key {
		case "accessModes":
			for i, item := range d.list(v, path, " of access modes") {
				ipath := fmt.Sprintf("%s[%d]", path, i)
				if m, ok := d.str(item, ipath); ok {
					if m != "ReadWriteOnce" && m != "ReadWriteOncePod" {
						d.errorf(item.Line, ipath, "fleet's volumes live on one machine: ReadWriteOnce (or ReadWriteOncePod), got %q", m)
						continue
					}
					c.AccessModes = append(c.AccessModes, m)
				}
			}
		case "resources":
			if !d.mapping(v, path, " with requests.storage") {
				return
			}
			d.fields(v, path, pvcResourcesSchema, func(key string, v *yaml.Node, path string) {
				if key != "requests" || !d.mapping(v, path, " with storage") {
					return
				}
				d.fields(v, path, schema{known: []string{"storage"}}, func(_ string, v *yaml.Node, path string) {
					if b, ok := d.size(v, path, "1Gi"); ok {
						c.Storage, haveStorage = b, true
					}
				})
			})
		case "storageClassName":
			c.StorageClassName, _ = d.str(v, path)
		case "volumeMode":
			d.oneOf(v, path, "Filesystem")
		}
	})
	if !haveStorage {
		d.errorf(n.Line, "spec.resources.requests.storage", "required, such as 1Gi")
	}
	if len(c.AccessModes) == 0 {
		c.AccessModes = []string{"ReadWriteOnce"}
	}
}

// checkMounts reports mounts of volumes the pod does not define.
func (d *decoder) checkMounts(ps *PodSpec, path string) {
	for _, group := range []struct {
		field string
		cs    []Container
	}{{"initContainers", ps.InitContainers}, {"containers", ps.Containers}} {
		for ci, c := range group.cs {
			for mi, m := range c.VolumeMounts {
				if m.Name == "" || slices.ContainsFunc(ps.Volumes, func(v Volume) bool { return v.Name == m.Name }) {
					continue
				}
				d.errorf(m.Line, fmt.Sprintf("%s.%s[%d].volumeMounts[%d].name", path, group.field, ci, mi), "no volume named %q in spec.volumes", m.Name)
			}
		}
	}
}

// configVolume reads a configMap or secret volume source.
func (d *decoder) configVolume(n *yaml.Node, path, kind string) *ConfigVolume {
	cv := &ConfigVolume{DefaultMode: 0o644, Line: n.Line}
	if !d.mapping(n, path, " with a name") {
		return cv
	}
	sc, nameKey := configVolumeSchema, "name"
	if kind == "secret" {
		sc, nameKey = secretVolumeSchema, "secretName"
	}
	mode := func(v *yaml.Node, path string) (int, bool) {
		m, ok := d.atLeast(v, path, 0)
		if ok && m > 0o777 {
			d.errorf(v.Line, path, "must be a file mode of at most 0777 (511), got %d", m)
			return 0, false
		}
		return m, ok
	}
	d.fields(n, path, sc, func(key string, v *yaml.Node, path string) {
		switch key {
		case nameKey:
			cv.Name, _ = d.configName(v, path)
		case "optional":
			cv.Optional, _ = d.boolean(v, path)
		case "defaultMode":
			if m, ok := mode(v, path); ok {
				cv.DefaultMode = m
			}
		case "items":
			for i, item := range d.list(v, path, " of key and path") {
				ipath := fmt.Sprintf("%s[%d]", path, i)
				if !d.mapping(item, ipath, " with key and path") {
					continue
				}
				var kp KeyToPath
				d.fields(item, ipath, keyToPathSchema, func(key string, v *yaml.Node, path string) {
					switch key {
					case "key":
						kp.Key, _ = d.str(v, path)
					case "path":
						if s, ok := d.str(v, path); ok {
							clean := pathpkg.Clean(s)
							if pathpkg.IsAbs(s) || clean == ".." || strings.HasPrefix(clean, "../") {
								d.errorf(v.Line, path, "must be a relative path inside the volume, got %q", s)
							}
							kp.Path = s
						}
					case "mode":
						if m, ok := mode(v, path); ok {
							kp.Mode = &m
						}
					}
				})
				if kp.Key == "" || kp.Path == "" {
					d.errorf(item.Line, ipath, "needs key and path")
					continue
				}
				cv.Items = append(cv.Items, kp)
			}
		}
	})
	if cv.Name == "" {
		d.errorf(n.Line, path+"."+nameKey, "required")
	}
	return cv
}

// size reads a positive size such as 64Mi, in bytes.
func (d *decoder) size(n *yaml.Node, path, example string) (int64, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() <= 0 {
		d.errorf(n.Line, path, "expected a size such as %s, got %q", example, s)
		return 0, false
	}
	return q.Value(), true
}
