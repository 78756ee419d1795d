package store

import (
	"context"
	"testing"
	"time"
)

func TestStore_Blobs(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	now := time.Unix(100, 0)
	for _, k := range []string{"certs/a.test/a.crt", "certs/a.test/a.key", "certs/ab.test/ab.crt", "acme/account.json"} {
		if err := s.PutBlob(ctx, k, []byte("v:"+k), now); err != nil {
			t.Fatal(err)
		}
	}
	if v, ok, err := s.Blob(ctx, "certs/a.test/a.key"); err != nil || !ok || string(v) != "v:certs/a.test/a.key" {
		t.Fatalf("Blob = %q %v %v", v, ok, err)
	}
	t.Run("a prefix lists whole path elements only", func(t *testing.T) {
		got, err := s.Blobs(ctx, "certs/a.test")
		if err != nil || len(got) != 2 || got[0].Key != "certs/a.test/a.crt" || got[0].Size != int64(len("v:certs/a.test/a.crt")) {
			t.Fatalf("Blobs = %+v %v", got, err)
		}
	})
	t.Run("delete removes a key and what is under it", func(t *testing.T) {
		n, err := s.DeleteBlobs(ctx, "certs/a.test")
		if err != nil || n != 2 {
			t.Fatalf("deleted %d, %v", n, err)
		}
		if all, _ := s.Blobs(ctx, ""); len(all) != 2 {
			t.Fatalf("left %+v", all)
		}
		if _, ok, _ := s.Blob(ctx, "certs/a.test/a.crt"); ok {
			t.Fatal("still there")
		}
	})
}
