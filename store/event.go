package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Event is something that happened, for `fleet get events` and for reading
// an incident's timeline afterwards.
type Event struct {
	ID        int64
	At        time.Time
	Type      string // Normal or Warning
	Reason    string // CamelCase, e.g. Scheduled, Started, Killing, NodeNotReady
	Namespace string
	Kind      string
	Name      string
	Machine   string
	Message   string
}

// AddEvents records events in one transaction.
func (s *Store) AddEvents(ctx context.Context, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, e := range evs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO events (at, type, reason, namespace, kind, name, machine, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				e.At.UnixNano(), e.Type, e.Reason, e.Namespace, e.Kind, e.Name, e.Machine, e.Message); err != nil {
				return fmt.Errorf("record event: %w", err)
			}
		}
		return nil
	})
}

// Events lists events, oldest first, in namespace ("" for all), the last
// limit of them (0 for all).
func (s *Store) Events(ctx context.Context, namespace string, limit int) ([]Event, error) {
	q := `SELECT id, at, type, reason, namespace, kind, name, machine, message FROM events`
	var args []any
	if namespace != "" {
		// Machine events belong to no namespace and show in every one.
		q += ` WHERE namespace = ? OR namespace = ''`
		args = append(args, namespace)
	}
	q += ` ORDER BY id DESC`
	if limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Type, &e.Reason, &e.Namespace, &e.Kind, &e.Name, &e.Machine, &e.Message); err != nil {
			return nil, err
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, rows.Err()
}
