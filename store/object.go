package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Object is one desired object as stored.
type Object struct {
	Kind       string
	Namespace  string
	Name       string
	Generation int64
	Spec       []byte // the object as JSON
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Write is one object to record by Apply.
type Write struct {
	Kind, Namespace, Name string
	Spec                  []byte
	// TemplateHash, when set, identifies the object's pod template: a
	// hash not seen as the latest revision records a new revision.
	TemplateHash string
	// Template is what the revision keeps (the object as JSON at the time).
	ChangeCause string
}

// Outcomes of writing one object.
const (
	Created    = "created"
	Configured = "configured"
	Unchanged  = "unchanged"
)

// Applied is what Apply did to one object.
type Applied struct {
	Kind, Namespace, Name string
	Outcome               string
	Generation            int64
	Revision              int64 // latest revision after the write; 0 without TemplateHash
}

// Apply records every write in one transaction: all or none.
func (s *Store) Apply(ctx context.Context, writes []Write, now time.Time) ([]Applied, error) {
	var out []Applied
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		for _, w := range writes {
			a, err := s.applyOne(ctx, tx, w, now)
			if err != nil {
				return fmt.Errorf("store %s/%s/%s: %w", w.Kind, w.Namespace, w.Name, err)
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// applyOne writes w inside tx. A Secret is compared with the stored one
// as plaintext, so re-applying it is Unchanged (and keeps its ciphertext)
// although every encryption of it differs.
func (s *Store) applyOne(ctx context.Context, tx *sql.Tx, w Write, now time.Time) (Applied, error) {
	a := Applied{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name}
	secret := w.Kind == SecretKind
	if secret && w.TemplateHash != "" {
		// Revisions keep specs in plaintext; Secrets have no pod template.
		return a, errors.New("a Secret has no revisions: TemplateHash must be empty")
	}
	var gen int64
	var spec []byte
	err := tx.QueryRowContext(ctx, `SELECT generation, spec FROM objects WHERE kind = ? AND namespace = ? AND name = ?`,
		w.Kind, w.Namespace, w.Name).Scan(&gen, &spec)
	if err == nil && secret {
		spec, err = s.openSecret(w.Namespace, w.Name, spec)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		a.Outcome, a.Generation = Created, 1
		var stored []byte
		if stored, err = s.sealIfSecret(ctx, tx, w); err != nil {
			return a, err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO objects (kind, namespace, name, generation, spec, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?)`,
			w.Kind, w.Namespace, w.Name, stored, now.UnixNano(), now.UnixNano())
	case err != nil:
		return a, err
	case SameSpec(spec, w.Spec):
		a.Outcome, a.Generation = Unchanged, gen
	default:
		a.Outcome, a.Generation = Configured, gen+1
		var stored []byte
		if stored, err = s.sealIfSecret(ctx, tx, w); err != nil {
			return a, err
		}
		_, err = tx.ExecContext(ctx, `UPDATE objects SET generation = ?, spec = ?, updated_at = ? WHERE kind = ? AND namespace = ? AND name = ?`,
			gen+1, stored, now.UnixNano(), w.Kind, w.Namespace, w.Name)
	}
	if err != nil {
		return a, err
	}
	if w.TemplateHash != "" {
		rev, err := recordRevision(ctx, tx, w, now)
		if err != nil {
			return a, err
		}
		a.Revision = rev
	}
	return a, nil
}

// SameSpec reports whether two stored specs say the same: equal but for
// their top-level "source", where the object was read from (a manifest
// moved to another file, or a line added above it, changes nothing; the
// record keeps where it was first read).
func SameSpec(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ma, mb map[string]json.RawMessage
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil {
		return false
	}
	delete(ma, "source")
	delete(mb, "source")
	if len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if w, ok := mb[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// sealIfSecret is w's spec as the objects table stores it: encrypted for
// a Secret, as given otherwise. A nil spec stays nil, for the NOT NULL
// constraint to refuse.
func (s *Store) sealIfSecret(ctx context.Context, tx *sql.Tx, w Write) ([]byte, error) {
	if w.Kind != SecretKind || w.Spec == nil {
		return w.Spec, nil
	}
	k, err := s.sealingKey(ctx, tx)
	if err != nil {
		return nil, err
	}
	return k.seal(w.Namespace, w.Name, w.Spec), nil
}

// recordRevision makes w's template the latest revision unless it already
// is, and returns the latest revision number.
func recordRevision(ctx context.Context, tx *sql.Tx, w Write, now time.Time) (int64, error) {
	var latest int64
	var latestHash string
	err := tx.QueryRowContext(ctx, `SELECT revision, template_hash FROM revisions WHERE kind = ? AND namespace = ? AND name = ? ORDER BY revision DESC LIMIT 1`,
		w.Kind, w.Namespace, w.Name).Scan(&latest, &latestHash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if latestHash == w.TemplateHash {
		return latest, nil
	}
	// An earlier revision with the same template moves to the top.
	if _, err := tx.ExecContext(ctx, `DELETE FROM revisions WHERE kind = ? AND namespace = ? AND name = ? AND template_hash = ?`,
		w.Kind, w.Namespace, w.Name, w.TemplateHash); err != nil {
		return 0, err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO revisions (kind, namespace, name, revision, template_hash, spec, change_cause, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		w.Kind, w.Namespace, w.Name, latest+1, w.TemplateHash, w.Spec, w.ChangeCause, now.UnixNano())
	return latest + 1, err
}

// Get returns one object.
func (s *Store) Get(ctx context.Context, kind, namespace, name string) (Object, bool, error) {
	objs, err := s.query(ctx, `WHERE kind = ? AND namespace = ? AND name = ?`, kind, namespace, name)
	if err != nil || len(objs) == 0 {
		return Object{}, false, err
	}
	return objs[0], true, nil
}

// List returns the objects of kind in namespace ("" for all namespaces),
// ordered by namespace and name.
func (s *Store) List(ctx context.Context, kind, namespace string) ([]Object, error) {
	if namespace == "" {
		return s.query(ctx, `WHERE kind = ? ORDER BY namespace, name`, kind)
	}
	return s.query(ctx, `WHERE kind = ? AND namespace = ? ORDER BY name`, kind, namespace)
}

func (s *Store) query(ctx context.Context, where string, args ...any) ([]Object, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kind, namespace, name, generation, spec, created_at, updated_at FROM objects `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read objects: %w", err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		var o Object
		var c, u int64
		if err := rows.Scan(&o.Kind, &o.Namespace, &o.Name, &o.Generation, &o.Spec, &c, &u); err != nil {
			return nil, err
		}
		if o.Kind == SecretKind {
			var err error
			if o.Spec, err = s.openSecret(o.Namespace, o.Name, o.Spec); err != nil {
				return nil, err
			}
		}
		o.CreatedAt, o.UpdatedAt = time.Unix(0, c).UTC(), time.Unix(0, u).UTC()
		out = append(out, o)
	}
	return out, rows.Err()
}

// Update rewrites one object's spec with fn inside a transaction (for
// scale and the like), bumping its generation when the spec changes.
func (s *Store) Update(ctx context.Context, kind, namespace, name string, now time.Time, fn func(spec []byte) ([]byte, error)) (Applied, error) {
	return s.Change(ctx, kind, namespace, name, now, func(spec []byte) (Write, error) {
		next, err := fn(spec)
		return Write{Kind: kind, Namespace: namespace, Name: name, Spec: next}, err
	})
}

// Change is Update for a change that may record a revision (an automatic
// rollback): fn returns the whole Write, for the same object.
func (s *Store) Change(ctx context.Context, kind, namespace, name string, now time.Time, fn func(spec []byte) (Write, error)) (Applied, error) {
	var a Applied
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var spec []byte
		err := tx.QueryRowContext(ctx, `SELECT spec FROM objects WHERE kind = ? AND namespace = ? AND name = ?`, kind, namespace, name).Scan(&spec)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s %s/%s", ErrNotFound, kind, namespace, name)
		}
		if err != nil {
			return err
		}
		if kind == SecretKind {
			if spec, err = s.openSecret(namespace, name, spec); err != nil {
				return err
			}
		}
		w, err := fn(spec)
		if err != nil {
			return err
		}
		w.Kind, w.Namespace, w.Name = kind, namespace, name
		a, err = s.applyOne(ctx, tx, w, now)
		return err
	})
	return a, err
}

// ErrNotFound is returned for an object that is not stored.
var ErrNotFound = errors.New("store: not found")

// Delete removes one object and its revisions.
func (s *Store) Delete(ctx context.Context, kind, namespace, name string) (bool, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?`, kind, namespace, name)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		if _, err = tx.ExecContext(ctx, `DELETE FROM revisions WHERE kind = ? AND namespace = ? AND name = ?`, kind, namespace, name); err != nil {
			return err
		}
		if kind == "Deployment" {
			_, err = tx.ExecContext(ctx, `DELETE FROM rollouts WHERE namespace = ? AND name = ?`, namespace, name)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete %s %s/%s: %w", kind, namespace, name, err)
	}
	return n > 0, nil
}

// Revision is one recorded pod template of a workload.
type Revision struct {
	Revision     int64
	TemplateHash string
	Spec         []byte
	ChangeCause  string
	CreatedAt    time.Time
}

// Revisions lists a workload's revisions, oldest first.
func (s *Store) Revisions(ctx context.Context, kind, namespace, name string) ([]Revision, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT revision, template_hash, spec, change_cause, created_at FROM revisions
		WHERE kind = ? AND namespace = ? AND name = ? ORDER BY revision`, kind, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("read revisions: %w", err)
	}
	defer rows.Close()
	var out []Revision
	for rows.Next() {
		var r Revision
		var at int64
		if err := rows.Scan(&r.Revision, &r.TemplateHash, &r.Spec, &r.ChangeCause, &at); err != nil {
			return nil, err
		}
		r.CreatedAt = time.Unix(0, at).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// tx runs fn in a write transaction (BEGIN IMMEDIATE, so writers queue
// instead of failing), committing if fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// DesiredVersion changes whenever any object is created, changed or
// deleted, or a rollout promoted: a cheap way for a long-running controller to notice applies
// made by other processes without reading every object.
func (s *Store) DesiredVersion(ctx context.Context) (string, error) {
	var n, gens, updated, promotes int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(generation), 0), coalesce(max(updated_at), 0),
		(SELECT coalesce(sum(promote), 0) FROM rollouts) FROM objects`).Scan(&n, &gens, &updated, &promotes)
	if err != nil {
		return "", fmt.Errorf("read desired version: %w", err)
	}
	return fmt.Sprintf("%d.%d.%d.%d", n, gens, updated, promotes), nil
}
