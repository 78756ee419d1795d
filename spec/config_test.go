package spec

import (
	"errors"
	"strings"
	"testing"
)

func TestParse_ConfigMapAndSecret(t *testing.T) {
	const manifest = `apiVersion: v1
kind: ConfigMap
metadata: {name: app}
data: {MODE: dev}
binaryData: {logo.png: iVBORw==}
---
apiVersion: v1
kind: Secret
metadata: {name: db}
data: {user: YWRtaW4=, password: b2xk}
stringData: {password: new}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
      - name: web
        image: web:1
        envFrom: [{prefix: APP_, configMapRef: {name: app}}, {secretRef: {name: db, optional: true}}]
        env:
        - {name: MODE, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}
        - {name: PW, valueFrom: {secretKeyRef: {name: db, key: password}}}
`
	res, err := Parse("app.yaml", []byte(manifest), "")
	if err != nil {
		t.Fatal(err)
	}
	cm := res.Objects[0].(*ConfigMap)
	if v, _ := cm.Value("MODE"); v != "dev" || string(cm.BinaryData["logo.png"]) != "\x89PNG" {
		t.Errorf("ConfigMap = %+v", cm)
	}
	sec := res.Objects[1].(*Secret)
	if sec.Type != "Opaque" || string(sec.Data["user"]) != "admin" || string(sec.Data["password"]) != "new" {
		t.Errorf("Secret = type %q data %q (stringData wins over data)", sec.Type, sec.Data)
	}
	d := res.Objects[2].(*Deployment)
	refs := d.Template.ConfigRefs()
	want := []ConfigRef{
		{Kind: KindConfigMap, Name: "app", Key: "MODE", Field: "spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef", Line: 24},
		{Kind: KindSecret, Name: "db", Key: "password", Field: "spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef", Line: 25},
		{Kind: KindConfigMap, Name: "app", Field: "spec.template.spec.containers[0].envFrom[0].configMapRef", Line: 22},
		{Kind: KindSecret, Name: "db", Optional: true, Field: "spec.template.spec.containers[0].envFrom[1].secretRef", Line: 22},
	}
	if len(refs) != len(want) {
		t.Fatalf("refs = %+v", refs)
	}
	for i := range want {
		if refs[i] != want[i] {
			t.Errorf("ref %d = %+v, want %+v", i, refs[i], want[i])
		}
	}
}

func TestParse_ConfigMapTopLevel(t *testing.T) {
	res, err := Parse("cm.yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {x: &v hello, y: *v}\nstatus: {}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Objects[0].(*ConfigMap).Value("y"); v != "hello" {
		t.Errorf("an aliased value = %q, want hello", v)
	}
	if len(res.Warnings) != 1 {
		t.Errorf("warnings = %v, want status ignored once", res.Warnings)
	}
	_, err = Parse("cm.yaml", []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nbogus: 1\n"), "")
	var errs ErrorList
	if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs[0].Error(), "bogus: unknown field") {
		t.Errorf("an unknown top-level field: %v, want one error", err)
	}
}
