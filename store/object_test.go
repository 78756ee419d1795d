package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestStore_Apply(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	t0 := time.Unix(100, 0)
	w := Write{Kind: "Deployment", Namespace: "default", Name: "web", Spec: []byte(`{"replicas":3,"image":"v1"}`), TemplateHash: "h1", ChangeCause: "apply"}
	got, err := s.Apply(ctx, []Write{w}, t0)
	if err != nil || got[0].Outcome != Created || got[0].Generation != 1 || got[0].Revision != 1 {
		t.Fatalf("first apply: %+v, %v", got, err)
	}
	t.Run("the same spec again changes nothing", func(t *testing.T) {
		got, err := s.Apply(ctx, []Write{w}, t0.Add(time.Second))
		if err != nil || got[0].Outcome != Unchanged || got[0].Generation != 1 || got[0].Revision != 1 {
			t.Fatalf("%+v, %v", got, err)
		}
	})
	t.Run("a replica change bumps the generation but not the revision", func(t *testing.T) {
		w2 := w
		w2.Spec = []byte(`{"replicas":5,"image":"v1"}`)
		got, err := s.Apply(ctx, []Write{w2}, t0.Add(2*time.Second))
		if err != nil || got[0].Outcome != Configured || got[0].Generation != 2 || got[0].Revision != 1 {
			t.Fatalf("%+v, %v", got, err)
		}
	})
	t.Run("a template change records a new revision; going back moves the old one up", func(t *testing.T) {
		v2 := w
		v2.Spec, v2.TemplateHash = []byte(`{"replicas":5,"image":"v2"}`), "h2"
		if got, err := s.Apply(ctx, []Write{v2}, t0.Add(3*time.Second)); err != nil || got[0].Revision != 2 {
			t.Fatalf("%+v, %v", got, err)
		}
		back := w
		back.Spec = []byte(`{"replicas":5,"image":"v1"}`)
		if got, err := s.Apply(ctx, []Write{back}, t0.Add(4*time.Second)); err != nil || got[0].Revision != 3 {
			t.Fatalf("%+v, %v", got, err)
		}
		revs, err := s.Revisions(ctx, "Deployment", "default", "web")
		if err != nil || len(revs) != 2 || revs[0].Revision != 2 || revs[1].Revision != 3 || revs[1].TemplateHash != "h1" {
			t.Fatalf("revisions %+v, %v", revs, err)
		}
	})
	t.Run("a failing write in a batch stores none of it", func(t *testing.T) {
		good := Write{Kind: "Namespace", Namespace: "", Name: "prod", Spec: []byte(`{}`)}
		bad := Write{Kind: "Deployment", Namespace: "default", Name: "x", Spec: nil} // NOT NULL violation
		if _, err := s.Apply(ctx, []Write{good, bad}, t0); err == nil {
			t.Fatal("want an error")
		}
		if _, ok, _ := s.Get(ctx, "Namespace", "", "prod"); ok {
			t.Fatal("half of a failed batch was stored")
		}
	})
	t.Run("update and delete", func(t *testing.T) {
		a, err := s.Update(ctx, "Deployment", "default", "web", t0, func(b []byte) ([]byte, error) { return []byte(`{"replicas":50,"image":"v1"}`), nil })
		if err != nil || a.Outcome != Configured {
			t.Fatalf("%+v, %v", a, err)
		}
		if _, err := s.Update(ctx, "Deployment", "default", "nope", t0, func(b []byte) ([]byte, error) { return b, nil }); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update of a missing object: %v", err)
		}
		if ok, err := s.Delete(ctx, "Deployment", "default", "web"); !ok || err != nil {
			t.Fatalf("delete: %v %v", ok, err)
		}
		if revs, _ := s.Revisions(ctx, "Deployment", "default", "web"); len(revs) != 0 {
			t.Fatalf("revisions survived delete: %+v", revs)
		}
	})
}

func TestStore_AcquireLease(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	t0 := time.Unix(1000, 0)
	if _, err := s.AcquireLease(ctx, "reconcile", "serve-1", 10*time.Second, t0); err != nil {
		t.Fatal(err)
	}
	t.Run("another holder is refused while the lease runs", func(t *testing.T) {
		cur, err := s.AcquireLease(ctx, "reconcile", "cron-1", 10*time.Second, t0.Add(5*time.Second))
		if !errors.Is(err, ErrLeaseHeld) || cur.Holder != "serve-1" {
			t.Fatalf("%+v, %v", cur, err)
		}
	})
	t.Run("the holder renews", func(t *testing.T) {
		cur, err := s.AcquireLease(ctx, "reconcile", "serve-1", 10*time.Second, t0.Add(8*time.Second))
		if err != nil || !cur.AcquiredAt.Equal(t0) || !cur.ExpiresAt.Equal(t0.Add(18*time.Second)) {
			t.Fatalf("%+v, %v", cur, err)
		}
	})
	t.Run("an expired lease goes to the next taker", func(t *testing.T) {
		cur, err := s.AcquireLease(ctx, "reconcile", "cron-1", 10*time.Second, t0.Add(30*time.Second))
		if err != nil || cur.Holder != "cron-1" {
			t.Fatalf("%+v, %v", cur, err)
		}
	})
	t.Run("release lets another in at once", func(t *testing.T) {
		if err := s.ReleaseLease(ctx, "reconcile", "cron-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcquireLease(ctx, "reconcile", "serve-1", 10*time.Second, t0.Add(31*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStore_Events(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	for i, ns := range []string{"a", "b", "a"} {
		if err := s.AddEvents(ctx, Event{At: time.Unix(int64(i), 0), Type: "Normal", Reason: "Started", Namespace: ns, Kind: "Pod", Name: "p", Message: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := s.Events(ctx, "", 0)
	inA, _ := s.Events(ctx, "a", 0)
	last, _ := s.Events(ctx, "", 1)
	if len(all) != 3 || len(inA) != 2 || len(last) != 1 || last[0].At.Unix() != 2 || all[0].At.Unix() != 0 {
		t.Fatalf("all %d, in a %d, last %+v", len(all), len(inA), last)
	}
}

// A process killed between two writes of one Apply leaves neither: the
// batch is one transaction, and WAL recovery discards the uncommitted part.
func TestStore_CrashBetweenWrites(t *testing.T) {
	if os.Getenv("FLEET_STORE_CRASH_CHILD") != "" {
		s, err := Open(context.Background(), os.Getenv("FLEET_STORE_CRASH_CHILD"))
		if err != nil {
			os.Exit(3)
		}
		tx, _ := s.db.Begin()
		tx.Exec(`INSERT INTO objects (kind, namespace, name, generation, spec, created_at, updated_at) VALUES ('Deployment','default','one',1,'{}',0,0)`)
		tx.Exec(`INSERT INTO objects (kind, namespace, name, generation, spec, created_at, updated_at) VALUES ('Deployment','default','two',1,'{}',0,0)`)
		os.Exit(0) // dies with the transaction open, as on SIGKILL
	}
	_, path := openTemp(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestStore_CrashBetweenWrites$")
	cmd.Env = append(os.Environ(), "FLEET_STORE_CRASH_CHILD="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	objs, err := s.List(context.Background(), "Deployment", "")
	if err != nil || len(objs) != 0 {
		t.Fatalf("after a crash mid-transaction: %d objects, %v", len(objs), err)
	}
}

func TestSameSpec(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{`{"kind":"Secret","data":{"k":"djE="}}`, `{"kind":"Secret","data":{"k":"djE="}}`, true},
		{`{"kind":"Secret","data":{"k":"djE="},"source":{"file":"a.yaml","line":1}}`, `{"kind":"Secret","data":{"k":"djE="},"source":{"file":"b/a.yaml","line":3}}`, true},
		{`{"kind":"Secret","data":{"k":"djE="},"source":{"file":"a.yaml"}}`, `{"kind":"Secret","data":{"k":"djI="},"source":{"file":"a.yaml"}}`, false},
		{`{"kind":"Secret","labels":{"a":"b"}}`, `{"kind":"Secret"}`, false},
		{`{"kind":"Secret","source":{"line":1}}`, `{"kind":"Secret","source":{"line":1},"type":"Opaque"}`, false},
	} {
		if got := SameSpec([]byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("SameSpec(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
