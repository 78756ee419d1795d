package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Rollout is a Deployment's rollout record.
type Rollout struct {
	Namespace, Name string
	// State is the controller's JSON (reconciler.RolloutState).
	State []byte
	// Promote is the highest step `fleet rollout promote` released.
	Promote   int64
	UpdatedAt time.Time
}

// Rollout reads ns/name's rollout record.
func (s *Store) Rollout(ctx context.Context, namespace, name string) (Rollout, bool, error) {
	r := Rollout{Namespace: namespace, Name: name}
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT state, promote, updated_at FROM rollouts WHERE namespace = ? AND name = ?`, namespace, name).
		Scan(&r.State, &r.Promote, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read rollout %s/%s: %w", namespace, name, err)
	}
	r.UpdatedAt = time.Unix(0, at).UTC()
	return r, true, nil
}

// Rollouts reads every rollout record.
func (s *Store) Rollouts(ctx context.Context) ([]Rollout, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT namespace, name, state, promote, updated_at FROM rollouts ORDER BY namespace, name`)
	if err != nil {
		return nil, fmt.Errorf("read rollouts: %w", err)
	}
	defer rows.Close()
	var out []Rollout
	for rows.Next() {
		var r Rollout
		var at int64
		if err := rows.Scan(&r.Namespace, &r.Name, &r.State, &r.Promote, &at); err != nil {
			return nil, err
		}
		r.UpdatedAt = time.Unix(0, at).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// SaveRolloutState records the controller's state of ns/name's rollout,
// leaving its promote mark alone.
func (s *Store) SaveRolloutState(ctx context.Context, namespace, name string, state []byte, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO rollouts (namespace, name, state, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (namespace, name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
		namespace, name, state, now.UnixNano())
	if err != nil {
		return fmt.Errorf("record rollout %s/%s: %w", namespace, name, err)
	}
	return nil
}

// PromoteRollout releases ns/name's rollout up to step (it never moves
// back).
func (s *Store) PromoteRollout(ctx context.Context, namespace, name string, step int64, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO rollouts (namespace, name, promote, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (namespace, name) DO UPDATE SET promote = max(promote, excluded.promote), updated_at = excluded.updated_at`,
		namespace, name, step, now.UnixNano())
	if err != nil {
		return fmt.Errorf("promote rollout %s/%s: %w", namespace, name, err)
	}
	return nil
}
