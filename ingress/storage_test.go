package ingress

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/fleetdev/fleet/store"
)

func newStorage(t *testing.T, holder string) (*Storage, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Storage{DB: st, Holder: holder}, st
}

func TestStorage(t *testing.T) {
	ctx := context.Background()
	s, st := newStorage(t, "a")
	for _, k := range []string{"certificates/ca/a.test/a.test.crt", "certificates/ca/a.test/a.test.key", "certificates/ca/b.test/b.test.crt", "acme/account.json"} {
		if err := s.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("load returns what was stored, and fs.ErrNotExist for nothing", func(t *testing.T) {
		if v, err := s.Load(ctx, "acme/account.json"); err != nil || string(v) != "acme/account.json" {
			t.Fatalf("%q %v", v, err)
		}
		if _, err := s.Load(ctx, "acme/nope"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("list is one level unless recursive", func(t *testing.T) {
		got, err := s.List(ctx, "certificates/ca", false)
		if err != nil || !reflect.DeepEqual(got, []string{"certificates/ca/a.test", "certificates/ca/b.test"}) {
			t.Fatalf("%v %v", got, err)
		}
		got, _ = s.List(ctx, "certificates", true)
		if len(got) != 3 {
			t.Fatalf("recursive: %v", got)
		}
	})
	t.Run("a directory exists and is not terminal", func(t *testing.T) {
		info, err := s.Stat(ctx, "certificates/ca/a.test")
		if !s.Exists(ctx, "certificates/ca/a.test") || err != nil || info.IsTerminal {
			t.Fatalf("%+v %v", info, err)
		}
		info, err = s.Stat(ctx, "acme/account.json")
		if err != nil || !info.IsTerminal || info.Size != int64(len("acme/account.json")) {
			t.Fatalf("%+v %v", info, err)
		}
	})
	t.Run("delete takes a directory with it", func(t *testing.T) {
		if err := s.Delete(ctx, "certificates/ca/a.test"); err != nil || s.Exists(ctx, "certificates/ca/a.test") || !s.Exists(ctx, "certificates/ca/b.test") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("two holds in one process exclude each other", func(t *testing.T) {
		if err := s.Lock(ctx, "issue_cert_b.test"); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
		defer cancel()
		same := &Storage{DB: st, Holder: "a"}
		if err := same.Lock(short, "issue_cert_b.test"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second lock by the same holder: %v, want it to wait", err)
		}
		if err := s.Unlock(ctx, "issue_cert_b.test"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a lock waits for its holder", func(t *testing.T) {
		other := &Storage{DB: st, Holder: "b"}
		if err := s.Lock(ctx, "issue_cert_a.test"); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
		defer cancel()
		if err := other.Lock(short, "issue_cert_a.test"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second lock: %v, want it to wait", err)
		}
		if err := s.Unlock(ctx, "issue_cert_a.test"); err != nil {
			t.Fatal(err)
		}
		if err := other.Lock(ctx, "issue_cert_a.test"); err != nil {
			t.Fatal(err)
		}
	})
}
