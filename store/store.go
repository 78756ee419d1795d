// Package store keeps fleet's desired state in one SQLite file. Schema
// changes are embedded, numbered migrations applied in order on Open.
// Secrets are encrypted in it with a key kept outside it (secret.go), so
// a backup is the state file plus, kept apart, that key.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3" // also registers the "sqlite3" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrNewerSchema is returned by Open when the file was written by a newer
// fleet than this binary.
var ErrNewerSchema = errors.New("store: state file has a newer schema than this fleet binary")

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
	keys *keyring
}

// Open opens the state file at path, creating it (and its directory) on
// first use, and brings its schema up to date.
//
// Secrets are encrypted with the key in FLEET_SECRET_KEY when it is set
// (Open fails if it is not a valid key), else with the key in the file
// path+".key", created (0600) when the first Secret is written; see
// docs/secrets.md.
func Open(ctx context.Context, path string) (*Store, error) {
	keys, err := newKeyring(path)
	if err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create state directory %s: %w", dir, err)
		}
	}
	// busy_timeout makes a second writer wait instead of failing at once;
	// WAL lets readers (fleet get) run beside the controller's writes.
	dsn := "file:" + path + "?_busy_timeout=10000&_journal_mode=WAL&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	s := &Store{db: db, path: path, keys: keys}
	// A new file's first connections switch it to WAL, which needs the
	// file to itself and does not wait on busy_timeout: processes opening
	// it at the same moment (serve and apply) retry briefly.
	err = s.migrate(ctx)
	for deadline := time.Now().Add(10 * time.Second); isBusy(err) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		err = s.migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("restrict state file %s: %w", path, err)
	}
	return s, nil
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close releases the database.
func (s *Store) Close() error { return s.db.Close() }

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and _", e.Name())
		}
		body, err := fs.ReadFile(migrations, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies every migration newer than the file's user_version, each
// in its own write transaction together with the version bump, so a crash
// leaves the file at a whole version. The version is read inside the
// transaction: two processes opening a new file at once (serve and apply)
// take turns instead of both creating the same tables.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for {
		tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one writer at a time
		if err != nil {
			return err
		}
		var current int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
			tx.Rollback()
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > len(ms) {
			tx.Rollback()
			return fmt.Errorf("%w (file at version %d, binary knows %d): upgrade fleet", ErrNewerSchema, current, len(ms))
		}
		if current == len(ms) {
			return tx.Rollback()
		}
		m := ms[current]
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			tx.Rollback()
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
		}
	}
}

func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// SchemaVersion reports the schema version of the open file.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}
