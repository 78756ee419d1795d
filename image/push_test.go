package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestFanout(t *testing.T) {
	t.Run("every reader gets every byte", func(t *testing.T) {
		src := bytes.Repeat([]byte("fleet"), 200_000) // spans many buffers
		readers, writers := pipes(3)
		got := make([][]byte, 3)
		var wg sync.WaitGroup
		for i, r := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], _ = io.ReadAll(r)
			}()
		}
		if err := fanout(bytes.NewReader(src), writers); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, g := range got {
			if !bytes.Equal(g, src) {
				t.Errorf("reader %d got %d bytes, want %d", i, len(g), len(src))
			}
		}
	})
	t.Run("a reader that gives up does not stop the others", func(t *testing.T) {
		src := bytes.Repeat([]byte("x"), 3<<20)
		readers, writers := pipes(2)
		readers[0].CloseWithError(errors.New("machine died"))
		var got []byte
		done := make(chan struct{})
		go func() {
			got, _ = io.ReadAll(readers[1])
			close(done)
		}()
		if err := fanout(bytes.NewReader(src), writers); err != nil {
			t.Fatal(err)
		}
		<-done
		if len(got) != len(src) {
			t.Fatalf("surviving reader got %d bytes, want %d", len(got), len(src))
		}
	})
	t.Run("a source error reaches every reader", func(t *testing.T) {
		readers, writers := pipes(2)
		boom := errors.New("save failed")
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, r := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = io.ReadAll(r)
			}()
		}
		if err := fanout(io.MultiReader(strings.NewReader("partial"), errReader{boom}), writers); !errors.Is(err, boom) {
			t.Fatalf("fanout returned %v, want %v", err, boom)
		}
		wg.Wait()
		for i, err := range errs {
			if !errors.Is(err, boom) {
				t.Errorf("reader %d saw %v, want %v", i, err, boom)
			}
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func pipes(n int) ([]*io.PipeReader, []*io.PipeWriter) {
	var rs []*io.PipeReader
	var ws []*io.PipeWriter
	for i := 0; i < n; i++ {
		r, w := io.Pipe()
		rs = append(rs, r)
		ws = append(ws, w)
	}
	return rs, ws
}

func writeArchive(t *testing.T, files map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	f.Close()
	return path
}

func TestFile_Identify(t *testing.T) {
	legacy := `[{"Config":"0123abcd.json","RepoTags":["app:v1"],"Layers":["l/layer.tar"]}]`
	oci := `[{"Config":"blobs/sha256/4567ef","RepoTags":["app:v2","app:latest"],"Layers":[]}]`
	tests := []struct {
		name     string
		manifest string
		ref      string
		wantID   string
		wantErr  string
	}{
		{name: "a legacy archive names its config file", manifest: legacy, ref: "app:v1", wantID: "sha256:0123abcd"},
		{name: "an OCI-layout archive names its config blob", manifest: oci, ref: "app:v2", wantID: "sha256:4567ef"},
		{name: "no ref takes the first image", manifest: legacy, wantID: "sha256:0123abcd"},
		{name: "a ref the archive lacks is refused", manifest: legacy, ref: "other:v1", wantErr: "does not hold other:v1"},
		{name: "an archive without manifest.json is refused", wantErr: "no manifest.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"l/layer.tar": "x"}
			if tt.manifest != "" {
				files["manifest.json"] = tt.manifest
			}
			id, _, err := File{Path: writeArchive(t, files)}.Identify(context.Background(), tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || id != tt.wantID {
				t.Fatalf("id = %q, err = %v; want %q", id, err, tt.wantID)
			}
		})
	}
}
