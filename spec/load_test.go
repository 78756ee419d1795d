package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func namespace(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n"
}

func TestLoad_directoriesFilesAndStdin(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"b.yaml":            namespace("b"),
		"a/z.yml":           namespace("az"),
		"a/deeper/c.yaml":   namespace("adc") + "---\n" + namespace("adc2"),
		"README.md":         "not: [yaml",
		"notes.txt":         "kind: Nonsense",
		".git/config.yaml":  "kind: Nonsense",
		"other/extra.json":  "{}",
		"other/extra.yaml":  namespace("other"),
		"single/named.conf": namespace("single"),
	})
	stdin := strings.NewReader("---\n" + namespace("piped"))
	r, err := Load([]string{
		filepath.Join(dir, "a"),
		"-",
		filepath.Join(dir, "b.yaml"),
		filepath.Join(dir, "other"),
		filepath.Join(dir, "single", "named.conf"), // a file named outright is read whatever its name
	}, stdin, "")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []string
	for _, o := range r.Objects {
		m := o.Metadata()
		rel, _ := filepath.Rel(dir, m.Source.File)
		if m.Source.File == StdinName {
			rel = StdinName
		}
		got = append(got, m.Name+"@"+rel+":"+itoa(m.Source.Line))
	}
	want := []string{
		"adc@a/deeper/c.yaml:1", "adc2@a/deeper/c.yaml:6", "az@a/z.yml:1",
		"piped@<stdin>:2",
		"b@b.yaml:1",
		"other@other/extra.yaml:1",
		"single@single/named.conf:1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoad_duplicatesAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"1-app.yaml":   tutorialDeployment,
		"2-again.yaml": namespace("shop") + "---\n" + tutorialDeployment,
		// The same name in another namespace or of another kind is fine.
		"3-other.yaml": strings.Replace(tutorialDeployment, "  labels:\n    app: nginx\n", "  namespace: shop\n", 1) +
			"---\napiVersion: v1\nkind: Service\nmetadata: {name: nginx-deployment}\nspec: {ports: [{port: 80}]}\n",
	})
	r, err := Load([]string{dir}, nil, "")
	if len(r.Objects) != 0 {
		t.Errorf("got %d objects with an error", len(r.Objects))
	}
	want := filepath.Join(dir, "2-again.yaml") + ":6: Deployment/nginx-deployment: duplicate Deployment default/nginx-deployment (first defined at " +
		filepath.Join(dir, "1-app.yaml") + ":1)"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestLoad_everyErrorFromEveryFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.yaml":         deployment + "  replicas: -3\n",
		"b/c.yaml":       "apiVersion: v1\nkind: StatefulSet\nmetadata: {name: s}\n",
		"empty/notes.md": "",
	})
	_, err := Load([]string{
		filepath.Join(dir, "b"),
		filepath.Join(dir, "a.yaml"),
		filepath.Join(dir, "missing.yaml"),
		filepath.Join(dir, "empty"),
		"-",
	}, strings.NewReader("kind: [\n"), "")
	var errs ErrorList
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v, want an ErrorList", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, strings.ReplaceAll(e.Error(), dir+string(filepath.Separator), ""))
	}
	// Sorted by file name: the temp dir's absolute paths sort before "<".
	want := []string{
		"a.yaml:11: Deployment/web: spec.replicas: must be at least 0, got -3",
		"b/c.yaml:2: StatefulSet/s: kind: kind StatefulSet is not supported yet (supported: Namespace, Deployment, Service, Ingress, ConfigMap, Secret, PersistentVolumeClaim)",
		"empty: no *.yaml or *.yml files in this directory",
		"missing.yaml: stat: no such file or directory",
		"<stdin>:1: invalid YAML: did not find expected node content",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParse_syntaxErrorLines(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"a: 1\nb: [x, y\n", "f.yaml:2: invalid YAML: did not find expected ',' or ']'"},
		{"a: 1\nb: c: d\n", "f.yaml:2: invalid YAML: mapping values are not allowed in this context"},
		{"a: 1\n- b\n", "f.yaml:2: invalid YAML: did not find expected key"},
		{"a:\n  b: 1\n c: 2\n", "f.yaml:3: invalid YAML: did not find expected key"},
		{"a: 1\n\tb: 2\n", "f.yaml:2: invalid YAML: found a tab character that violates indentation"},
		{"a: 1\nb: 2\nc: 3\nd: 'x\n", "f.yaml:4: invalid YAML: found unexpected end of stream"},
		{"a: 1\nb: *nope\n", "f.yaml: invalid YAML: unknown anchor 'nope' referenced"},
	} {
		_, err := Parse("f.yaml", []byte(tt.yaml), "")
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) = %v, want %s", tt.yaml, err, tt.want)
		}
	}
}

func TestDeployment_PodSpecHash(t *testing.T) {
	parse := func(manifest string) *Deployment {
		t.Helper()
		return only[*Deployment](t, mustParse(t, manifest))
	}
	const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  template:
    metadata:
      labels: {app: web, tier: front, zone: a}
      annotations: {a: "1", b: "2", c: "3"}
    spec:
      nodeSelector: {disk: ssd, arch: amd64}
      containers:
      - name: web
        image: nginx:1.27
        env: [{name: A, value: "1"}]
`
	base := parse(manifest).PodSpecHash()
	if len(base) != 10 || strings.Trim(base, "0123456789abcdef") != "" {
		t.Fatalf("PodSpecHash = %q, want 10 hex characters", base)
	}
	if again := parse(manifest).PodSpecHash(); again != base {
		t.Errorf("second parse hashes to %s, first to %s", again, base)
	}
	// The same maps written in another order.
	reordered := strings.NewReplacer(
		"{app: web, tier: front, zone: a}", "{zone: a, app: web, tier: front}",
		`{a: "1", b: "2", c: "3"}`, `{c: "3", a: "1", b: "2"}`,
		"{disk: ssd, arch: amd64}", "{arch: amd64, disk: ssd}",
	).Replace(manifest)
	if reordered == manifest {
		t.Fatal("replacer changed nothing")
	}
	if h := parse(reordered).PodSpecHash(); h != base {
		t.Errorf("map order changed the hash: %s, want %s", h, base)
	}
	// Maps built in different insertion orders, hashed many times.
	d := parse(manifest)
	for range 20 {
		labels := map[string]string{}
		for _, k := range []string{"zone", "tier", "app"} {
			labels[k] = d.Template.Labels[k]
		}
		d.Template.Labels = labels
		if h := d.PodSpecHash(); h != base {
			t.Fatalf("rebuilt labels hash to %s, want %s", h, base)
		}
	}
	for _, tt := range []struct {
		name, from, to string
		changes        bool
	}{
		{"a new image", "nginx:1.27", "nginx:1.28", true},
		{"a new env value", `value: "1"`, `value: "2"`, true},
		{"a new label", "zone: a}", "zone: b}", true},
		{"more replicas", "replicas: 3", "replicas: 50", false},
		{"a strategy", "  replicas: 3\n", "  replicas: 3\n  strategy: {type: Recreate}\n", false},
		{"an explicit default", "image: nginx:1.27\n", "image: nginx:1.27\n        imagePullPolicy: IfNotPresent\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			changed := strings.Replace(manifest, tt.from, tt.to, 1)
			if changed == manifest {
				t.Fatal("replacement changed nothing")
			}
			if h := parse(changed).PodSpecHash(); (h != base) != tt.changes {
				t.Errorf("hash %s, base %s; want changed=%v", h, base, tt.changes)
			}
		})
	}
}
