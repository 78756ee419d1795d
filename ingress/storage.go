package ingress

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/fleetdev/fleet/store"
)

// Storage keeps certmagic's certificates, keys and ACME accounts in the
// state file (its blobs), under "tls/", and its locks as leases, so
// that certificates survive restarts and no two fleet processes (nor two
// goroutines of one) obtain the same certificate at once.
type Storage struct {
	DB *store.Store
	// Holder names this process in locks.
	Holder string
	// LockTTL is how long a lock lasts if its holder dies. Default 2 min;
	// held locks are renewed every third of it.
	LockTTL time.Duration
	Now     func() time.Time

	mu    sync.Mutex
	locks map[string]*heldLock // by name
}

// heldLock is one Lock call's hold: its own lease holder (so two calls in
// one process exclude each other) and the renewal it keeps running.
type heldLock struct {
	holder string
	stop   context.CancelFunc
	done   chan struct{}
}

var _ certmagic.Storage = (*Storage)(nil)

const blobPrefix = "tls/"

func (s *Storage) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Store puts value at key.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	return s.DB.PutBlob(ctx, blobPrefix+key, value, s.now())
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	v, ok, err := s.DB.Blob(ctx, blobPrefix+key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("load %s: %w", key, fs.ErrNotExist)
	}
	return v, nil
}

// Delete removes key and everything under it.
func (s *Storage) Delete(ctx context.Context, key string) error {
	_, err := s.DB.DeleteBlobs(ctx, blobPrefix+key)
	return err
}

// Exists reports whether key is a value or a directory of values.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	bs, err := s.DB.Blobs(ctx, blobPrefix+key)
	return err == nil && len(bs) > 0
}

// List returns the keys directly in dir, or every key under it when
// recursive.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	bs, err := s.DB.Blobs(ctx, blobPrefix+dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, b := range bs {
		key := strings.TrimPrefix(b.Key, blobPrefix)
		rel := strings.TrimPrefix(strings.TrimPrefix(key, dir), "/")
		if rel == "" {
			continue // dir itself is a value, not a directory
		}
		if !recursive {
			first, _, _ := strings.Cut(rel, "/")
			key = path.Join(dir, first)
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, key)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("list %s: %w", dir, fs.ErrNotExist)
	}
	return out, nil
}

// Stat describes key.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	bs, err := s.DB.Blobs(ctx, blobPrefix+key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(bs) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, fs.ErrNotExist)
	}
	if bs[0].Key == blobPrefix+key {
		return certmagic.KeyInfo{Key: key, Modified: bs[0].Modified, Size: bs[0].Size, IsTerminal: true}, nil
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

func (s *Storage) lockTTL() time.Duration {
	if s.LockTTL > 0 {
		return s.LockTTL
	}
	return 2 * time.Minute
}

// Lock takes the named lock, waiting (polling every 250 ms) while
// another holder, in this process or another, has it and it has not
// expired. The lock is renewed every third of LockTTL until Unlock.
func (s *Storage) Lock(ctx context.Context, name string) error {
	holder := fmt.Sprintf("%s#%d", s.holder(), lockSeq.Add(1))
	for {
		_, err := s.DB.AcquireLease(ctx, "tls:"+name, holder, s.lockTTL(), s.now())
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrLeaseHeld) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	rctx, stop := context.WithCancel(context.Background())
	h := &heldLock{holder: holder, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(s.lockTTL() / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				s.DB.AcquireLease(rctx, "tls:"+name, holder, s.lockTTL(), s.now())
			}
		}
	}()
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]*heldLock{}
	}
	s.locks[name] = h
	s.mu.Unlock()
	return nil
}

// lockSeq tells apart the holds of one process.
var lockSeq atomic.Int64

// Unlock releases the named lock and stops its renewal.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.locks[name]
	delete(s.locks, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("unlock %s: not locked here", name)
	}
	h.stop()
	<-h.done
	return s.DB.ReleaseLease(ctx, "tls:"+name, h.holder)
}

func (s *Storage) holder() string {
	if s.Holder != "" {
		return s.Holder
	}
	h, _ := os.Hostname()
	return fmt.Sprintf("fleet pid %d on %s", os.Getpid(), h)
}
