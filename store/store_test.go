package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "fleet.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStore_Open(t *testing.T) {
	t.Run("a new file is created at the latest schema", func(t *testing.T) {
		s, _ := openTemp(t)
		v, err := s.SchemaVersion(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := loadMigrations()
		if v != len(ms) {
			t.Fatalf("schema version %d, want %d", v, len(ms))
		}
	})
	t.Run("reopening keeps data and does not re-run migrations", func(t *testing.T) {
		s, path := openTemp(t)
		ctx := context.Background()
		if _, err := s.PinHostKey(ctx, HostKey{Address: "h:22", Machine: "h", Type: "t", Key: []byte{1}, Fingerprint: "f", FirstSeen: time.Unix(1, 0)}); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if _, ok, err := s2.HostKey(ctx, "h:22"); err != nil || !ok {
			t.Fatalf("pinned key lost after reopen: ok=%v err=%v", ok, err)
		}
	})
	t.Run("a file from a newer fleet is refused", func(t *testing.T) {
		s, path := openTemp(t)
		if _, err := s.db.Exec("PRAGMA user_version = 999"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := Open(context.Background(), path)
		if !errors.Is(err, ErrNewerSchema) {
			t.Fatalf("got %v, want ErrNewerSchema", err)
		}
	})
}

func TestStore_PinHostKey(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	first := HostKey{Address: "10.0.0.1:22", Machine: "a", Type: "ssh-ed25519", Key: []byte("one"), Fingerprint: "SHA256:one", FirstSeen: time.Unix(100, 0)}
	got, err := s.PinHostKey(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Key) != "one" || !got.FirstSeen.Equal(first.FirstSeen) {
		t.Fatalf("pinned %+v", got)
	}
	t.Run("a second key for the same address does not replace the first", func(t *testing.T) {
		second := first
		second.Key, second.Fingerprint = []byte("two"), "SHA256:two"
		got, err := s.PinHostKey(ctx, second)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Key) != "one" {
			t.Fatalf("second pin replaced the first: %q", got.Key)
		}
	})
	t.Run("forgetting a key lets the next contact pin afresh", func(t *testing.T) {
		ok, err := s.ForgetHostKey(ctx, first.Address)
		if err != nil || !ok {
			t.Fatalf("forget: ok=%v err=%v", ok, err)
		}
		if _, ok, _ := s.HostKey(ctx, first.Address); ok {
			t.Fatal("key still pinned after forget")
		}
	})
}

func TestStore_NodeFacts(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if _, ok, err := s.NodeFacts(ctx, "a"); ok || err != nil {
		t.Fatalf("facts for an unseen node: ok=%v err=%v", ok, err)
	}
	f := NodeFacts{Name: "a", Address: "10.0.0.1", EngineID: "E1", DockerVersion: "20.10", NCPU: 2, MemTotal: 1 << 30, ObservedAt: time.Unix(5, 0).UTC()}
	if err := s.SaveNodeFacts(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.NCPU, f.ObservedAt = 4, time.Unix(9, 0).UTC()
	if err := s.SaveNodeFacts(ctx, f); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.NodeFacts(ctx, "a")
	if err != nil || !ok || got != f {
		t.Fatalf("got %+v ok=%v err=%v, want the second save %+v", got, ok, err, f)
	}
}

func TestStore_OpenConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			s, err := Open(context.Background(), path)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent first open: %v", err)
		}
	}
}

func TestStore_MachinePods(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Unix(1000, 5).UTC()
	for _, m := range []MachinePods{{"m2", []byte(`[1]`), at}, {"m1", []byte(`[]`), at}, {"m2", []byte(`[2]`), at.Add(time.Second)}} {
		if err := s.SaveMachinePods(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.AllMachinePods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Machine != "m1" || string(got[1].Pods) != `[2]` || !got[1].ObservedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("got %+v; want m1 and m2's latest", got)
	}
}
