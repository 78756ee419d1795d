package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// NodeFacts is what a machine's Docker engine last said about itself.
type NodeFacts struct {
	Name          string
	Address       string
	EngineID      string
	DockerVersion string
	NCPU          int
	MemTotal      int64
	ObservedAt    time.Time
}

// NodeFacts returns the facts last recorded for machine name.
func (s *Store) NodeFacts(ctx context.Context, name string) (NodeFacts, bool, error) {
	var f NodeFacts
	var at int64
	err := s.db.QueryRowContext(ctx,
		`SELECT name, address, engine_id, docker_version, ncpu, mem_total, observed_at FROM node_facts WHERE name = ?`,
		name).Scan(&f.Name, &f.Address, &f.EngineID, &f.DockerVersion, &f.NCPU, &f.MemTotal, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return NodeFacts{}, false, nil
	}
	if err != nil {
		return NodeFacts{}, false, fmt.Errorf("read node facts for %s: %w", name, err)
	}
	f.ObservedAt = time.Unix(0, at).UTC()
	return f, true, nil
}

// SaveNodeFacts records f, replacing what was known about f.Name.
func (s *Store) SaveNodeFacts(ctx context.Context, f NodeFacts) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO node_facts (name, address, engine_id, docker_version, ncpu, mem_total, observed_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?)
		 ON CONFLICT(name) DO UPDATE SET address = excluded.address, engine_id = excluded.engine_id,
		   docker_version = excluded.docker_version, ncpu = excluded.ncpu, mem_total = excluded.mem_total,
		   observed_at = excluded.observed_at`,
		f.Name, f.Address, f.EngineID, f.DockerVersion, f.NCPU, f.MemTotal, f.ObservedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("save node facts for %s: %w", f.Name, err)
	}
	return nil
}
