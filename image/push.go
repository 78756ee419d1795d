// Package image copies images to machines without a registry: the image is
// saved once from the local engine (or read from a file) and streamed over
// each machine's SSH tunnel into its Docker engine, to every machine that
// lacks it at once, with no temporary files.
package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// Target is one machine to push to.
type Target struct {
	Name   string
	Docker *client.Client
}

// Outcomes of a push to one machine.
const (
	Present = "present" // the machine had the image already; nothing sent
	Tagged  = "tagged"  // it had the same image under another name; tagged, nothing sent
	Loaded  = "loaded"  // the image was streamed and loaded
	Failed  = "failed"
)

// Result is what happened on one machine.
type Result struct {
	Machine  string
	Outcome  string
	Bytes    int64
	Duration time.Duration
	Err      error
}

// Source is where the image comes from.
type Source interface {
	// Identify returns the image's ID (sha256:…) and its repository tags.
	Identify(ctx context.Context, ref string) (id string, tags []string, err error)
	// Open streams the image as a `docker save` archive.
	Open(ctx context.Context, ref string) (io.ReadCloser, error)
}

// LocalEngine is the local Docker engine as a source.
type LocalEngine struct{ Client *client.Client }

// Identify implements Source.
func (l LocalEngine) Identify(ctx context.Context, ref string) (string, []string, error) {
	insp, err := l.Client.ImageInspect(ctx, ref)
	if errdefs.IsNotFound(err) {
		return "", nil, fmt.Errorf("image %s is not in the local Docker engine: build or load it first (docker images), or use --from-file", ref)
	}
	if err != nil {
		return "", nil, fmt.Errorf("inspect local image %s: %w", ref, err)
	}
	return insp.ID, insp.RepoTags, nil
}

// Open implements Source.
func (l LocalEngine) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	rc, err := l.Client.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, fmt.Errorf("save local image %s: %w", ref, err)
	}
	return rc, nil
}

// File is a `docker save` archive on disk as a source.
type File struct{ Path string }

// Identify implements Source by reading the archive's manifest.json.
func (f File) Identify(ctx context.Context, ref string) (string, []string, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return "", nil, fmt.Errorf("open image archive: %w", err)
	}
	defer fh.Close()
	tr := tar.NewReader(fh)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return "", nil, fmt.Errorf("image archive %s has no manifest.json: is it from `docker save`?", f.Path)
		}
		if err != nil {
			return "", nil, fmt.Errorf("read image archive %s: %w", f.Path, err)
		}
		if path.Clean(hdr.Name) != "manifest.json" {
			continue
		}
		var manifest []struct {
			Config   string
			RepoTags []string
		}
		if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
			return "", nil, fmt.Errorf("image archive %s: manifest.json: %w", f.Path, err)
		}
		if len(manifest) == 0 {
			return "", nil, fmt.Errorf("image archive %s holds no image", f.Path)
		}
		pick := manifest[0]
		if ref != "" {
			found := false
			for _, m := range manifest {
				if containsTag(m.RepoTags, ref) {
					pick, found = m, true
					break
				}
			}
			if !found {
				return "", nil, fmt.Errorf("image archive %s does not hold %s (it holds %s)", f.Path, ref, strings.Join(manifest[0].RepoTags, ", "))
			}
		}
		// Config is "<hex>.json" (legacy layout) or "blobs/sha256/<hex>" (OCI).
		hex := strings.TrimSuffix(path.Base(pick.Config), ".json")
		return "sha256:" + hex, pick.RepoTags, nil
	}
}

// Open implements Source.
func (f File) Open(ctx context.Context, ref string) (io.ReadCloser, error) {
	return os.Open(f.Path)
}

func containsTag(tags []string, ref string) bool {
	for _, t := range tags {
		if t == ref || t == ref+":latest" {
			return true
		}
	}
	return false
}

// Push makes ref present on every target: machines that have it are left
// alone, machines that have the same image ID under another name get a tag,
// and the rest receive one shared stream of the image at the same time.
// It fails only if the image cannot be identified; per-machine failures
// are in the results.
func Push(ctx context.Context, src Source, ref string, targets []Target) ([]Result, error) {
	id, tags, err := src.Identify(ctx, ref)
	if err != nil {
		return nil, err
	}
	if ref == "" {
		if len(tags) == 0 {
			return nil, errors.New("push image: the archive's image has no tag: name one")
		}
		ref = tags[0]
	}
	results := make([]Result, len(targets))
	var need []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := Result{Machine: t.Name}
			outcome, err := check(ctx, t.Docker, ref, id)
			r.Duration = time.Since(start)
			switch {
			case err != nil:
				r.Outcome, r.Err = Failed, fmt.Errorf("%s: check image: %w", t.Name, err)
			case outcome == "":
				mu.Lock()
				need = append(need, i)
				mu.Unlock()
			default:
				r.Outcome = outcome
			}
			results[i] = r
		}()
	}
	wg.Wait()
	if len(need) == 0 {
		return results, nil
	}
	rc, err := src.Open(ctx, ref)
	if err != nil {
		for _, i := range need {
			results[i] = Result{Machine: targets[i].Name, Outcome: Failed, Err: err}
		}
		return results, nil
	}
	defer rc.Close()
	loaders := make([]*loader, len(need))
	writers := make([]*io.PipeWriter, len(need))
	for k, i := range need {
		pr, pw := io.Pipe()
		writers[k] = pw
		loaders[k] = &loader{target: targets[i], r: pr, start: time.Now()}
	}
	var lwg sync.WaitGroup
	for _, l := range loaders {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			l.run(ctx, ref, id)
		}()
	}
	copyErr := fanout(compressed(rc), writers)
	lwg.Wait()
	for k, i := range need {
		l := loaders[k]
		r := Result{Machine: targets[i].Name, Outcome: Loaded, Bytes: l.bytes, Duration: time.Since(l.start)}
		if l.err != nil {
			r.Outcome, r.Err = Failed, fmt.Errorf("%s: load image: %w", targets[i].Name, l.err)
		} else if copyErr != nil {
			r.Outcome, r.Err = Failed, fmt.Errorf("%s: read image: %w", targets[i].Name, copyErr)
		}
		results[i] = r
	}
	return results, nil
}

// check says whether machine c already has image id as ref ("present"), has
// id under another name and could be tagged ("tagged"), or needs it ("").
func check(ctx context.Context, c *client.Client, ref, id string) (string, error) {
	insp, err := c.ImageInspect(ctx, ref)
	if err == nil && insp.ID == id {
		return Present, nil
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return "", err
	}
	if _, err := c.ImageInspect(ctx, id); err == nil {
		if err := c.ImageTag(ctx, id, ref); err != nil {
			return "", fmt.Errorf("tag %s as %s: %w", id, ref, err)
		}
		return Tagged, nil
	} else if !errdefs.IsNotFound(err) {
		return "", err
	}
	return "", nil
}

type loader struct {
	target Target
	r      *io.PipeReader
	start  time.Time
	bytes  int64
	err    error
}

func (l *loader) run(ctx context.Context, ref, id string) {
	cr := &countingReader{r: l.r}
	// The load's body is a stream that cannot be replayed, so it must not
	// ride an idle keep-alive connection the engine may already have
	// closed: Go's transport retries only replayable requests.
	l.target.Docker.HTTPClient().CloseIdleConnections()
	resp, err := l.target.Docker.ImageLoad(ctx, cr, client.ImageLoadWithQuiet(true))
	if err == nil {
		err = ReadProgress(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		// The engine may stop reading before the archive's end; drain so
		// the shared stream never waits on this machine.
		io.Copy(io.Discard, cr)
	}
	l.bytes = cr.n
	if err == nil {
		var insp dimage.InspectResponse
		insp, err = l.target.Docker.ImageInspect(ctx, ref)
		if err == nil && insp.ID != id {
			err = fmt.Errorf("after load %s is %s, want %s", ref, insp.ID, id)
		}
	}
	l.err = err
	l.r.CloseWithError(errDropped(err))
}

func errDropped(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("machine dropped from stream: %w", err)
}

// fanout copies src to every writer, each fed by its own queue so a
// machine that is slow for a moment does not stall the others (a machine
// more than fanoutQueue chunks behind does make the source wait, which
// bounds memory). A writer whose reader has gone away (its machine failed)
// is dropped instead of stopping the others.
func fanout(src io.Reader, ws []*io.PipeWriter) error {
	queues := make([]chan []byte, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		q := make(chan []byte, fanoutQueue)
		queues[i] = q
		wg.Add(1)
		go func() {
			defer wg.Done()
			dead := false
			for chunk := range q {
				if !dead {
					if _, err := w.Write(chunk); err != nil {
						dead = true
					}
				}
			}
		}()
	}
	var err error
	for {
		// A fresh buffer per chunk: every queue holds it until written.
		buf := make([]byte, fanoutChunk)
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			for _, q := range queues {
				q <- buf[:n]
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	for _, w := range ws {
		w.CloseWithError(err)
	}
	return err
}

const (
	fanoutChunk = 256 << 10
	fanoutQueue = 4 // chunks: 1 MiB a machine may fall behind
)

// compressed gzips the archive once for every machine: docker load takes
// gzip, layers in a save are uncompressed tars, and the bytes that do not
// cross SSH are the cheapest (each host's sshd pays per byte; on a shared
// link so does everyone).
func compressed(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		_, err := io.Copy(zw, r)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	return pr
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ReadProgress drains a Docker JSON progress stream (image load, import,
// pull), returning the first error it reports.
func ReadProgress(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}
