package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// HostKey is a host's SSH key as pinned on first contact.
type HostKey struct {
	Address     string // host:port as dialled
	Machine     string // inventory name at the time of pinning
	Type        string // e.g. ssh-ed25519
	Key         []byte // wire format (ssh.PublicKey.Marshal)
	Fingerprint string // SHA256:… form
	FirstSeen   time.Time
}

// HostKey returns the key pinned for address, and whether one is.
func (s *Store) HostKey(ctx context.Context, address string) (HostKey, bool, error) {
	var hk HostKey
	var first int64
	err := s.db.QueryRowContext(ctx,
		`SELECT address, machine, key_type, key, fingerprint, first_seen FROM host_keys WHERE address = ?`,
		address).Scan(&hk.Address, &hk.Machine, &hk.Type, &hk.Key, &hk.Fingerprint, &first)
	if errors.Is(err, sql.ErrNoRows) {
		return HostKey{}, false, nil
	}
	if err != nil {
		return HostKey{}, false, fmt.Errorf("read pinned host key for %s: %w", address, err)
	}
	hk.FirstSeen = time.Unix(0, first).UTC()
	return hk, true, nil
}

// PinHostKey records hk unless a key is already pinned for its address, and
// returns the key that is pinned afterwards: a concurrent first contact by
// another process wins, and the caller must compare against what it gets.
func (s *Store) PinHostKey(ctx context.Context, hk HostKey) (HostKey, error) {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO host_keys (address, machine, key_type, key, fingerprint, first_seen)
		 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(address) DO NOTHING`,
		hk.Address, hk.Machine, hk.Type, hk.Key, hk.Fingerprint, hk.FirstSeen.UnixNano())
	if err != nil {
		return HostKey{}, fmt.Errorf("pin host key for %s: %w", hk.Address, err)
	}
	pinned, ok, err := s.HostKey(ctx, hk.Address)
	if err != nil {
		return HostKey{}, err
	}
	if !ok {
		return HostKey{}, fmt.Errorf("pin host key for %s: not found after insert", hk.Address)
	}
	return pinned, nil
}

// ForgetHostKey removes the key pinned for address, so the next contact
// pins afresh. It is how a user accepts a host's deliberately changed key.
func (s *Store) ForgetHostKey(ctx context.Context, address string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM host_keys WHERE address = ?`, address)
	if err != nil {
		return false, fmt.Errorf("forget host key for %s: %w", address, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}
