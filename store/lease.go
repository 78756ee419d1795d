package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Lease is who holds a named lease and until when.
type Lease struct {
	Name       string
	Holder     string
	AcquiredAt time.Time
	ExpiresAt  time.Time
}

// ErrLeaseHeld is returned when another holder has an unexpired lease.
var ErrLeaseHeld = errors.New("store: lease held")

// AcquireLease takes or renews lease name for holder until now+ttl. It
// fails with ErrLeaseHeld (and the current lease) while another holder's
// lease has not expired, so a crashed holder blocks others only for ttl.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (Lease, error) {
	var cur Lease
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var h string
		var acq, exp int64
		acquired := now
		err := tx.QueryRowContext(ctx, `SELECT holder, acquired_at, expires_at FROM leases WHERE name = ?`, name).Scan(&h, &acq, &exp)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case h == holder:
			acquired = time.Unix(0, acq) // a renewal keeps the acquisition time
		case exp > now.UnixNano():
			cur = Lease{Name: name, Holder: h, AcquiredAt: time.Unix(0, acq).UTC(), ExpiresAt: time.Unix(0, exp).UTC()}
			return ErrLeaseHeld
		}
		expires := now.Add(ttl)
		_, err = tx.ExecContext(ctx, `INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at`,
			name, holder, acquired.UnixNano(), expires.UnixNano())
		cur = Lease{Name: name, Holder: holder, AcquiredAt: acquired.UTC(), ExpiresAt: expires.UTC()}
		return err
	})
	if err != nil && !errors.Is(err, ErrLeaseHeld) {
		return Lease{}, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return cur, err
}

// ReleaseLease gives up lease name if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}
