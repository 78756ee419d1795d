package reconciler

import (
	"errors"
	"strings"
	"testing"

	"github.com/fleetdev/fleet/spec"
)

func TestConfigs_EnvAndHash(t *testing.T) {
	c := &configs{
		maps:       map[string]*spec.ConfigMap{"default/app": {Data: map[string]string{"MODE": "dev", "GREETING": "hello"}}},
		secrets:    map[string]*spec.Secret{"default/db": {Data: map[string][]byte{"password": []byte("pw1")}}},
		secretGens: map[string]string{"default/db": "100.1"},
	}
	ct := spec.Container{Name: "web",
		EnvFrom: []spec.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &spec.ObjRef{Name: "app"}}},
		Env: []spec.EnvVar{
			{Name: "CFG_MODE", Value: "overridden"},
			{Name: "PW", ValueFrom: &spec.EnvVarSource{SecretKeyRef: &spec.KeyRef{Name: "db", Key: "password"}}},
			{Name: "OPT", ValueFrom: &spec.EnvVarSource{ConfigMapKeyRef: &spec.KeyRef{Name: "nope", Key: "x", Optional: true}}},
		}}
	env, err := c.env("default", ct)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(env, " "), "CFG_GREETING=hello CFG_MODE=overridden PW=pw1"; got != want {
		t.Errorf("env = %s, want %s", got, want)
	}
	if _, err := c.env("prod", ct); err == nil || !strings.Contains(err.Error(), "ConfigMap prod/app does not exist") {
		t.Errorf("in another namespace: %v", err)
	}
	ct.Env[1].ValueFrom.SecretKeyRef.Key = "user"
	if _, err := c.env("default", ct); err == nil || !strings.Contains(err.Error(), `Secret default/db has no key "user"`) {
		t.Errorf("missing key: %v", err)
	}
	ct.Env[1].ValueFrom.SecretKeyRef.Key = "password"

	tpl := &spec.PodTemplate{Spec: spec.PodSpec{Containers: []spec.Container{ct}}}
	h1 := c.hash("default", tpl, "0123456789")
	if h1 == "0123456789" || len(h1) != 10 {
		t.Fatalf("hash with consumed config = %q", h1)
	}
	c.secrets["default/db"].Data["password"] = []byte("pw2")
	c.secretGens["default/db"] = "100.2" // the store bumps it with the value
	h2 := c.hash("default", tpl, "0123456789")
	if h2 == h1 {
		t.Error("a changed secret left the pod hash unchanged")
	}
	c.secretGens["default/db"] = "200.1" // deleted and created again
	if h := c.hash("default", tpl, "0123456789"); h == h1 || h == h2 {
		t.Error("a Secret deleted and created again left the pod hash unchanged")
	}
	c.maps["default/app"].Data["GREETING"] = "bonjour"
	if h3 := c.hash("default", tpl, "0123456789"); h3 == h1 {
		t.Error("a changed ConfigMap value left the pod hash unchanged")
	}
	c.maps["default/unused"] = &spec.ConfigMap{Data: map[string]string{"a": "b"}}
	h3 := c.hash("default", tpl, "0123456789")
	c.maps["default/unused"].Data["a"] = "c"
	if h4 := c.hash("default", tpl, "0123456789"); h4 != h3 {
		t.Error("a ConfigMap the pod does not consume changed its hash")
	}
	if h := c.hash("default", &spec.PodTemplate{}, "0123456789"); h != "0123456789" {
		t.Errorf("no references: hash %q changed", h)
	}
}

func TestConfigs_SecretsUnreadable(t *testing.T) {
	c := &configs{maps: map[string]*spec.ConfigMap{"default/app": {Data: map[string]string{"MODE": "dev"}}},
		secrets: map[string]*spec.Secret{}, secretGens: map[string]string{}, secretsErr: errors.New("no key")}
	plain := spec.Container{Name: "web", Env: []spec.EnvVar{{Name: "MODE", ValueFrom: &spec.EnvVarSource{ConfigMapKeyRef: &spec.KeyRef{Name: "app", Key: "MODE"}}}}}
	if env, err := c.env("default", plain); err != nil || len(env) != 1 {
		t.Errorf("a container that needs no Secret: env %v, err %v", env, err)
	}
	secret := spec.Container{Name: "db", EnvFrom: []spec.EnvFromSource{{SecretRef: &spec.ObjRef{Name: "db"}}}}
	if _, err := c.env("default", secret); err == nil || !strings.Contains(err.Error(), "the Secrets cannot be read: no key") {
		t.Errorf("a container that needs a Secret: %v", err)
	}
	if !consumesSecret(&spec.PodTemplate{Spec: spec.PodSpec{Containers: []spec.Container{secret}}}) {
		t.Error("consumesSecret missed an envFrom secretRef")
	}
}
