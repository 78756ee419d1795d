package store

import (
	"context"
	"fmt"
	"time"
)

// MachinePods is what was last listed on one machine. Pods is JSON the
// reconciler writes and reads; the store does not look inside.
type MachinePods struct {
	Machine    string
	Pods       []byte
	ObservedAt time.Time
}

// SaveMachinePods replaces what is recorded for m.Machine.
func (s *Store) SaveMachinePods(ctx context.Context, m MachinePods) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO machine_pods (machine, pods, observed_at) VALUES (?, ?, ?)
		 ON CONFLICT(machine) DO UPDATE SET pods = excluded.pods, observed_at = excluded.observed_at`,
		m.Machine, m.Pods, m.ObservedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("save pods of %s: %w", m.Machine, err)
	}
	return nil
}

// AllMachinePods returns what is recorded for every machine.
func (s *Store) AllMachinePods(ctx context.Context) ([]MachinePods, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT machine, pods, observed_at FROM machine_pods ORDER BY machine`)
	if err != nil {
		return nil, fmt.Errorf("read machine pods: %w", err)
	}
	defer rows.Close()
	var out []MachinePods
	for rows.Next() {
		var m MachinePods
		var at int64
		if err := rows.Scan(&m.Machine, &m.Pods, &at); err != nil {
			return nil, fmt.Errorf("read machine pods: %w", err)
		}
		m.ObservedAt = time.Unix(0, at).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}
