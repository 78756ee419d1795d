package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The value no byte of the state file may contain.
const secretValue = "hunter2-correct-horse-battery-staple-7f3a"

func secretWrite(name, value string) Write {
	return Write{Kind: SecretKind, Namespace: "default", Name: name,
		Spec: []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"` + name + `"},"stringData":{"password":"` + value + `"}}`)}
}

func mustApply(t *testing.T, s *Store, w ...Write) []Applied {
	t.Helper()
	got, err := s.Apply(context.Background(), w, time.Unix(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func rawSpec(t *testing.T, s *Store, kind, ns, name string) []byte {
	t.Helper()
	var spec []byte
	if err := s.db.QueryRow(`SELECT spec FROM objects WHERE kind = ? AND namespace = ? AND name = ?`, kind, ns, name).Scan(&spec); err != nil {
		t.Fatal(err)
	}
	return spec
}

// stateFiles reads the state file and its WAL and shared-memory files,
// whichever exist.
func stateFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
	}
	return out
}

func encodedKey(t *testing.T) string {
	t.Helper()
	k, err := NewSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

func TestStore_Secret(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	w := secretWrite("db", secretValue)
	if got := mustApply(t, s, w); got[0].Outcome != Created || got[0].Generation != 1 {
		t.Fatalf("first apply: %+v", got)
	}

	t.Run("Get, List, Update and Change see the plaintext", func(t *testing.T) {
		o, ok, err := s.Get(ctx, SecretKind, "default", "db")
		if err != nil || !ok || !bytes.Equal(o.Spec, w.Spec) {
			t.Fatalf("get: %s %v %v", o.Spec, ok, err)
		}
		l, err := s.List(ctx, SecretKind, "")
		if err != nil || len(l) != 1 || !bytes.Equal(l[0].Spec, w.Spec) {
			t.Fatalf("list: %+v %v", l, err)
		}
		var seen []byte
		a, err := s.Update(ctx, SecretKind, "default", "db", time.Unix(101, 0), func(b []byte) ([]byte, error) {
			seen = b
			return b, nil
		})
		if err != nil || !bytes.Equal(seen, w.Spec) || a.Outcome != Unchanged {
			t.Fatalf("update saw %s, %+v, %v", seen, a, err)
		}
	})
	t.Run("the column holds versioned ciphertext naming the key", func(t *testing.T) {
		raw := rawSpec(t, s, SecretKind, "default", "db")
		id := SecretKeyID(mustReadKey(t, path+".key"))
		if !strings.HasPrefix(string(raw), "fleet-secret:v1:"+id+":") || bytes.Contains(raw, []byte("hunter2")) {
			t.Fatalf("stored %q", raw)
		}
	})
	t.Run("re-applying the same Secret is Unchanged and keeps the ciphertext", func(t *testing.T) {
		before := rawSpec(t, s, SecretKind, "default", "db")
		v, _ := s.DesiredVersion(ctx)
		got := mustApply(t, s, w)
		if got[0].Outcome != Unchanged || got[0].Generation != 1 {
			t.Fatalf("%+v", got)
		}
		if after := rawSpec(t, s, SecretKind, "default", "db"); !bytes.Equal(before, after) {
			t.Fatal("an unchanged Secret was re-encrypted")
		}
		if v2, _ := s.DesiredVersion(ctx); v2 != v {
			t.Fatalf("desired version moved on an unchanged apply: %s -> %s", v, v2)
		}
	})
	t.Run("a changed value bumps the generation and the desired version", func(t *testing.T) {
		v, _ := s.DesiredVersion(ctx)
		got, err := s.Apply(ctx, []Write{secretWrite("db", secretValue+"-v2")}, time.Unix(200, 0))
		if err != nil || got[0].Outcome != Configured || got[0].Generation != 2 {
			t.Fatalf("%+v %v", got, err)
		}
		if v2, _ := s.DesiredVersion(ctx); v2 == v {
			t.Fatal("desired version did not move")
		}
		o, _, _ := s.Get(ctx, SecretKind, "default", "db")
		if !bytes.Contains(o.Spec, []byte(secretValue+"-v2")) {
			t.Fatalf("read back %s", o.Spec)
		}
		mustApply(t, s, w) // back to the first value, for the tests below
	})
	t.Run("a row copied to another name does not decrypt", func(t *testing.T) {
		mustApply(t, s, secretWrite("other", "x"))
		if _, err := s.db.Exec(`UPDATE objects SET spec = ? WHERE kind = 'Secret' AND name = 'other'`, rawSpec(t, s, SecretKind, "default", "db")); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Get(ctx, SecretKind, "default", "other")
		if err == nil || !strings.Contains(err.Error(), "copied from another object") || errors.Is(err, ErrSecretKey) {
			t.Fatalf("got %v", err)
		}
		if ok, err := s.Delete(ctx, SecretKind, "default", "other"); !ok || err != nil {
			t.Fatalf("delete: %v %v", ok, err)
		}
	})
	t.Run("a Secret with a TemplateHash is refused", func(t *testing.T) {
		bad := w
		bad.TemplateHash = "h"
		if _, err := s.Apply(ctx, []Write{bad}, time.Unix(300, 0)); err == nil {
			t.Fatal("want an error")
		}
	})
}

func mustReadKey(t *testing.T, path string) []byte {
	t.Helper()
	k, err := ReadSecretKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStore_SecretNeverPlaintextOnDisk(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	for i := range 50 { // enough to spill over pages
		mustApply(t, s, secretWrite("db"+strings.Repeat("x", i), secretValue))
	}
	if _, err := s.Update(ctx, SecretKind, "default", "db", time.Unix(101, 0), func(b []byte) ([]byte, error) {
		return bytes.ReplaceAll(b, []byte(secretValue), []byte(secretValue+"2")), nil
	}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		files := stateFiles(t, path)
		if len(files) == 0 {
			t.Fatal("no state files")
		}
		for p, b := range files {
			if bytes.Contains(b, []byte(secretValue)) || bytes.Contains(b, []byte("hunter2")) {
				t.Errorf("%s: %s contains the secret value", when, filepath.Base(p))
			}
		}
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("expected a WAL file while open: %v", err)
	}
	check("while open")
	if _, err := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	check("after a checkpoint")
	s.Close()
	check("after close")
	key, _ := os.ReadFile(path + ".key")
	if bytes.Contains(key, []byte("hunter2")) {
		t.Fatal("key file contains the value")
	}
}

func TestStore_SecretOtherKindsUnchanged(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	for _, kind := range []string{"Deployment", "ConfigMap", "Service", "secret"} {
		spec := []byte(`{"data":{"password":"` + secretValue + `"}}`)
		mustApply(t, s, Write{Kind: kind, Namespace: "default", Name: "x", Spec: spec})
		if raw := rawSpec(t, s, kind, "default", "x"); !bytes.Equal(raw, spec) {
			t.Fatalf("%s stored as %q", kind, raw)
		}
		if o, _, err := s.Get(ctx, kind, "default", "x"); err != nil || !bytes.Equal(o.Spec, spec) {
			t.Fatalf("%s read as %q, %v", kind, o.Spec, err)
		}
	}
	if _, err := os.Lstat(path + ".key"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a key file exists without any Secret: %v", err)
	}
}

func TestStore_SecretKeyFile(t *testing.T) {
	ctx := context.Background()
	t.Run("is created 0600 by the first Secret written, not before", func(t *testing.T) {
		s, path := openTemp(t)
		mustApply(t, s, Write{Kind: "Deployment", Namespace: "default", Name: "web", Spec: []byte(`{}`)})
		if _, err := s.List(ctx, SecretKind, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Get(ctx, SecretKind, "default", "db"); err != nil {
			t.Fatal(err)
		}
		if st, err := s.SecretKeyStatus(ctx); err != nil || st.KeyID != "" {
			t.Fatalf("status %+v %v", st, err)
		}
		if _, err := os.Lstat(path + ".key"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("key file before any Secret: %v", err)
		}
		mustApply(t, s, secretWrite("db", "v"))
		fi, err := os.Stat(path + ".key")
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %04o", fi.Mode().Perm())
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Fatalf("temporary file left: %s", e.Name())
			}
		}
	})
	t.Run("one open to group or others is refused, naming chmod 600", func(t *testing.T) {
		s, path := openTemp(t)
		mustApply(t, s, secretWrite("db", "v"))
		if err := os.Chmod(path+".key", 0o640); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		_, _, err = s2.Get(ctx, SecretKind, "default", "db")
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "chmod 600 "+path+".key") {
			t.Fatalf("read: %v", err)
		}
		if _, err := s2.Apply(ctx, []Write{secretWrite("db2", "v")}, time.Unix(1, 0)); !errors.Is(err, ErrSecretKey) {
			t.Fatalf("write: %v", err)
		}
	})
	t.Run("a symbolic link is refused", func(t *testing.T) {
		s, path := openTemp(t)
		mustApply(t, s, secretWrite("db", "v"))
		if err := os.Rename(path+".key", path+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(path+".real", path+".key"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2, _ := Open(ctx, path)
		defer s2.Close()
		if _, _, err := s2.Get(ctx, SecretKind, "default", "db"); !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a lost key file is not silently replaced while Secrets exist", func(t *testing.T) {
		s, path := openTemp(t)
		mustApply(t, s, secretWrite("db", "v"))
		os.Remove(path + ".key")
		_, err := s.Apply(ctx, []Write{secretWrite("db2", "v")}, time.Unix(1, 0))
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "no key") {
			t.Fatalf("got %v", err)
		}
		if _, err := os.Lstat(path + ".key"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("a new key file was created")
		}
		s.Close()
		s2, _ := Open(ctx, path)
		defer s2.Close()
		_, _, err = s2.Get(ctx, SecretKind, "default", "db")
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "there is no key: set FLEET_SECRET_KEY") || !strings.Contains(err.Error(), path+".key") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestStore_SecretWrongKey(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	mustApply(t, s, secretWrite("db", "v"))
	s.Close()
	good := SecretKeyID(mustReadKey(t, path+".key"))

	t.Run("a different key file is named with both ids", func(t *testing.T) {
		saved, _ := os.ReadFile(path + ".key")
		defer os.WriteFile(path+".key", saved, 0o600)
		os.Remove(path + ".key")
		other, _ := NewSecretKey()
		if err := CreateSecretKeyFile(path+".key", other); err != nil {
			t.Fatal(err)
		}
		s2, _ := Open(ctx, path)
		defer s2.Close()
		_, _, err := s2.Get(ctx, SecretKind, "default", "db")
		want := "secret default/db in the state file was encrypted with key " + good + ", but the key in use is " + SecretKeyID(other) + " (from " + path + ".key)"
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v\nwant %s", err, want)
		}
		_, err = s2.Apply(ctx, []Write{secretWrite("db2", "v")}, time.Unix(1, 0))
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "encrypted with key "+good) {
			t.Fatalf("write: %v", err)
		}
	})
	t.Run("FLEET_SECRET_KEY overrides the key file", func(t *testing.T) {
		t.Setenv(SecretKeyEnv, encodedKey(t))
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		_, _, err = s2.Get(ctx, SecretKind, "default", "db")
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "(from FLEET_SECRET_KEY): set FLEET_SECRET_KEY to the key with id "+good) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("FLEET_SECRET_KEY holding the key file's key reads it", func(t *testing.T) {
		t.Setenv(SecretKeyEnv, base64.StdEncoding.EncodeToString(mustReadKey(t, path+".key")))
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if _, ok, err := s2.Get(ctx, SecretKind, "default", "db"); !ok || err != nil {
			t.Fatalf("%v %v", ok, err)
		}
	})
}

func TestStore_SecretKeyEnv(t *testing.T) {
	for _, tt := range []struct{ name, value string }{
		{"not base64", "not a key!"},
		{"too short", base64.StdEncoding.EncodeToString(make([]byte, 16))},
		{"unpadded", strings.TrimRight(encodedKey(t), "=")},
		{"all zero", base64.StdEncoding.EncodeToString(make([]byte, 32))},
	} {
		t.Run(tt.name+" is refused by Open without repeating it", func(t *testing.T) {
			t.Setenv(SecretKeyEnv, tt.value)
			_, err := Open(context.Background(), filepath.Join(t.TempDir(), "fleet.db"))
			if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "FLEET_SECRET_KEY: not a secret key") || strings.Contains(err.Error(), tt.value) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("a valid key is used and no key file is created", func(t *testing.T) {
		t.Setenv(SecretKeyEnv, encodedKey(t))
		s, path := openTemp(t)
		mustApply(t, s, secretWrite("db", secretValue))
		if o, _, err := s.Get(context.Background(), SecretKind, "default", "db"); err != nil || !bytes.Contains(o.Spec, []byte(secretValue)) {
			t.Fatalf("%s %v", o.Spec, err)
		}
		if _, err := os.Lstat(path + ".key"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("a key file was created although FLEET_SECRET_KEY is set")
		}
	})
}

func TestStore_RotateSecretKey(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	names := []string{"a", "b", "c"}
	for _, n := range names {
		mustApply(t, s, secretWrite(n, secretValue+n))
	}
	mustApply(t, s, Write{Kind: "Deployment", Namespace: "default", Name: "web", Spec: []byte(`{}`)})
	oldKey := mustReadKey(t, path+".key")
	v, _ := s.DesiredVersion(ctx)
	// A process (fleet serve) that has the old key loaded when another
	// rotates.
	running, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	if _, _, err := running.Get(ctx, SecretKind, "default", "a"); err != nil {
		t.Fatal(err)
	}

	rot, err := s.RotateSecretKey(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	newKey := mustReadKey(t, path+".key")
	if rot.OldID != SecretKeyID(oldKey) || rot.NewID != SecretKeyID(newKey) || rot.Secrets != 3 || rot.KeyFile != path+".key" || rot.Resumed {
		t.Fatalf("%+v", rot)
	}
	t.Run("every Secret is re-encrypted and reads back", func(t *testing.T) {
		for _, n := range names {
			if raw := rawSpec(t, s, SecretKind, "default", n); !strings.HasPrefix(string(raw), "fleet-secret:v1:"+rot.NewID+":") {
				t.Fatalf("%s: %q", n, raw)
			}
			o, _, err := s.Get(ctx, SecretKind, "default", n)
			if err != nil || !bytes.Contains(o.Spec, []byte(secretValue+n)) || o.Generation != 1 {
				t.Fatalf("%s: %+v %v", n, o, err)
			}
		}
		if v2, _ := s.DesiredVersion(ctx); v2 != v {
			t.Fatalf("rotation changed the desired version: %s -> %s", v, v2)
		}
	})
	t.Run("the key file is 0600 and no old or temporary file is left", func(t *testing.T) {
		if fi, _ := os.Stat(path + ".key"); fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %04o", fi.Mode().Perm())
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".old") || strings.Contains(e.Name(), ".tmp-") {
				t.Fatalf("left behind: %s", e.Name())
			}
		}
	})
	t.Run("a process running since before sees the new key", func(t *testing.T) {
		if _, _, err := running.Get(ctx, SecretKind, "default", "a"); err != nil {
			t.Fatal(err)
		}
		mustApply(t, running, secretWrite("d", "x"))
		if raw := rawSpec(t, s, SecretKind, "default", "d"); !strings.HasPrefix(string(raw), "fleet-secret:v1:"+rot.NewID+":") {
			t.Fatalf("written with the old key: %q", raw)
		}
	})
	t.Run("the old key no longer works", func(t *testing.T) {
		t.Setenv(SecretKeyEnv, base64.StdEncoding.EncodeToString(oldKey))
		s2, _ := Open(ctx, path)
		defer s2.Close()
		_, _, err := s2.Get(ctx, SecretKind, "default", "a")
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "encrypted with key "+rot.NewID) {
			t.Fatalf("read: %v", err)
		}
		_, err = s2.Apply(ctx, []Write{secretWrite("e", "x")}, time.Unix(1, 0))
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "the key was rotated?") {
			t.Fatalf("write: %v", err)
		}
	})
	t.Run("status counts Secrets by key", func(t *testing.T) {
		st, err := s.SecretKeyStatus(ctx)
		if err != nil || st.KeyID != rot.NewID || st.RecordedID != rot.NewID || st.ByKey[rot.NewID] != 4 || len(st.ByKey) != 1 || len(st.Unreadable) != 0 || st.Source != path+".key" {
			t.Fatalf("%+v %v", st, err)
		}
	})
}

func TestStore_RotateSecretKeyEnv(t *testing.T) {
	ctx := context.Background()
	old := encodedKey(t)
	t.Setenv(SecretKeyEnv, old)
	s, path := openTemp(t)
	mustApply(t, s, secretWrite("db", secretValue))

	if _, err := s.RotateSecretKey(ctx, nil); !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "must be given") {
		t.Fatalf("without a new key: %v", err)
	}
	oldRaw, _ := ParseSecretKey(old)
	if _, err := s.RotateSecretKey(ctx, oldRaw); err == nil || !strings.Contains(err.Error(), "the new key is the key in use") {
		t.Fatalf("with the same key: %v", err)
	}
	newKey, _ := NewSecretKey()
	rot, err := s.RotateSecretKey(ctx, newKey)
	if err != nil || rot.NewID != SecretKeyID(newKey) || rot.Secrets != 1 || rot.KeyFile != "" {
		t.Fatalf("%+v %v", rot, err)
	}
	if _, err := os.Lstat(path + ".key"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a key file was written")
	}
	// This process goes on with the new key.
	if _, _, err := s.Get(ctx, SecretKind, "default", "db"); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, secretWrite("db2", "x"))
	t.Setenv(SecretKeyEnv, base64.StdEncoding.EncodeToString(newKey))
	s2, _ := Open(ctx, path)
	defer s2.Close()
	if o, _, err := s2.Get(ctx, SecretKind, "default", "db"); err != nil || !bytes.Contains(o.Spec, []byte(secretValue)) {
		t.Fatalf("%v", err)
	}
}

// A rotation killed after the new key file was renamed into place but
// before its transaction committed leaves: key file = new key, .old = the
// key the rows are still sealed with.
func TestStore_RotateSecretKeyInterrupted(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	mustApply(t, s, secretWrite("a", secretValue), secretWrite("b", secretValue))
	s.Close()
	oldKey := mustReadKey(t, path+".key")
	if err := os.Rename(path+".key", path+".key.old"); err != nil {
		t.Fatal(err)
	}
	mid, _ := NewSecretKey()
	if err := CreateSecretKeyFile(path+".key", mid); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Run("reads fall back on the old key", func(t *testing.T) {
		if o, _, err := s.Get(ctx, SecretKind, "default", "a"); err != nil || !bytes.Contains(o.Spec, []byte(secretValue)) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("writes are refused until the rotation is finished", func(t *testing.T) {
		_, err := s.Apply(ctx, []Write{secretWrite("c", "x")}, time.Unix(1, 0))
		if !errors.Is(err, ErrSecretKey) || !strings.Contains(err.Error(), "rotate-key") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("status shows the old key file", func(t *testing.T) {
		st, err := s.SecretKeyStatus(ctx)
		if err != nil || st.OldKeyFile != path+".key.old" || st.OldKeyID != SecretKeyID(oldKey) || st.ByKey[SecretKeyID(oldKey)] != 2 || len(st.Unreadable) != 0 {
			t.Fatalf("%+v %v", st, err)
		}
	})
	t.Run("rotating again finishes it first", func(t *testing.T) {
		rot, err := s.RotateSecretKey(ctx, nil)
		if err != nil || !rot.Resumed || rot.OldID != SecretKeyID(mid) || rot.Secrets != 2 {
			t.Fatalf("%+v %v", rot, err)
		}
		if _, err := os.Lstat(path + ".key.old"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(".old left")
		}
		for _, n := range []string{"a", "b"} {
			if _, _, err := s.Get(ctx, SecretKind, "default", n); err != nil {
				t.Fatal(err)
			}
		}
		mustApply(t, s, secretWrite("c", "x"))
	})
}

func TestStore_SecretStatusUnreadable(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	mustApply(t, s, secretWrite("db", "v"))
	if _, err := s.db.Exec(`INSERT INTO objects (kind, namespace, name, generation, spec, created_at, updated_at) VALUES ('Secret', 'default', 'plain', 1, '{}', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	st, err := s.SecretKeyStatus(ctx)
	if err != nil || st.ByKey[""] != 1 || len(st.Unreadable) != 1 || st.Unreadable[0] != "default/plain" {
		t.Fatalf("%+v %v", st, err)
	}
	if _, _, err := s.Get(ctx, SecretKind, "default", "plain"); err == nil || !strings.Contains(err.Error(), "is not encrypted") {
		t.Fatalf("got %v", err)
	}
	// Rotation encrypts it.
	if _, err := s.RotateSecretKey(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if o, _, err := s.Get(ctx, SecretKind, "default", "plain"); err != nil || string(o.Spec) != "{}" {
		t.Fatalf("%s %v", o.Spec, err)
	}
}

// A process killed inside a rotation, after the new key was installed and
// before the transaction committed.
func TestStore_RotateSecretKeyKilled(t *testing.T) {
	ctx := context.Background()
	if path := os.Getenv("FLEET_STORE_ROTATE_CHILD"); path != "" {
		s, err := Open(ctx, path)
		if err != nil {
			os.Exit(3)
		}
		nk, _ := NewSecretKey()
		k, _ := newSecretKey(nk, s.keys.file)
		tx, _ := s.db.Begin()
		cur, err := s.keys.current(false)
		if err != nil {
			os.Exit(4)
		}
		if _, err := s.reseal(ctx, tx, k, true); err != nil {
			os.Exit(5)
		}
		if err := recordSecretKey(ctx, tx, k.id); err != nil {
			os.Exit(6)
		}
		if err := installKey(s.keys.file, s.keys.oldFile(), cur, nk); err != nil {
			os.Exit(7)
		}
		os.Exit(0) // dies with the transaction open, as on SIGKILL
	}
	s, path := openTemp(t)
	mustApply(t, s, secretWrite("a", secretValue), secretWrite("b", secretValue))
	before := SecretKeyID(mustReadKey(t, path+".key"))
	s.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStore_RotateSecretKeyKilled$")
	cmd.Env = append(os.Environ(), "FLEET_STORE_ROTATE_CHILD="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	if got := SecretKeyID(mustReadKey(t, path+".key.old")); got != before {
		t.Fatalf(".old holds %s, want %s", got, before)
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if raw := rawSpec(t, s, SecretKind, "default", "a"); !strings.HasPrefix(string(raw), "fleet-secret:v1:"+before+":") {
		t.Fatalf("uncommitted rotation survived: %q", raw)
	}
	if o, _, err := s.Get(ctx, SecretKind, "default", "a"); err != nil || !bytes.Contains(o.Spec, []byte(secretValue)) {
		t.Fatalf("read after the crash: %v", err)
	}
	rot, err := s.RotateSecretKey(ctx, nil)
	if err != nil || !rot.Resumed || rot.Secrets != 2 {
		t.Fatalf("%+v %v", rot, err)
	}
	if _, _, err := s.Get(ctx, SecretKind, "default", "b"); err != nil {
		t.Fatal(err)
	}
}

func TestStore_UninstallKey(t *testing.T) {
	s, path := openTemp(t)
	mustApply(t, s, secretWrite("a", secretValue))
	cur, err := s.keys.current(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a key file not yet replaced is left alone", func(t *testing.T) {
		if err := s.uninstallKey(cur, errors.New("boom")); err == nil || err.Error() != "boom" {
			t.Fatalf("got %v", err)
		}
		if SecretKeyID(mustReadKey(t, path+".key")) != cur.id {
			t.Fatal("key file changed")
		}
	})
	t.Run("a replaced key file gets the previous key back", func(t *testing.T) {
		next, _ := NewSecretKey()
		if err := installKey(s.keys.file, s.keys.oldFile(), cur, next); err != nil {
			t.Fatal(err)
		}
		if SecretKeyID(mustReadKey(t, path+".key")) != SecretKeyID(next) {
			t.Fatal("new key not installed")
		}
		if err := s.uninstallKey(cur, errors.New("boom")); err == nil || err.Error() != "boom" {
			t.Fatalf("got %v", err)
		}
		if SecretKeyID(mustReadKey(t, path+".key")) != cur.id {
			t.Fatal("previous key not put back")
		}
		if _, err := os.Lstat(path + ".key.old"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(".old left")
		}
		if _, _, err := s.Get(context.Background(), SecretKind, "default", "a"); err != nil {
			t.Fatal(err)
		}
	})
}
