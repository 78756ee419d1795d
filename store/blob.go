package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// BlobInfo describes one stored blob.
type BlobInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// PutBlob stores value under key, replacing what was there.
func (s *Store) PutBlob(ctx context.Context, key string, value []byte, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO blobs (key, value, modified) VALUES (?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value, modified = excluded.modified`, key, value, now.UnixNano())
	if err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// Blob returns the value under key; ok is false when there is none.
func (s *Store) Blob(ctx context.Context, key string) (value []byte, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT value FROM blobs WHERE key = ?`, key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load %s: %w", key, err)
	}
	return value, true, nil
}

// DeleteBlobs removes key and every key under key + "/"; it reports how
// many it removed.
func (s *Store) DeleteBlobs(ctx context.Context, key string) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM blobs WHERE key = ? OR substr(key, 1, ?) = ?`, key, len(key)+1, key+"/")
	if err != nil {
		return 0, fmt.Errorf("delete %s: %w", key, err)
	}
	return res.RowsAffected()
}

// Blobs lists the blobs whose key is prefix or under prefix + "/" (every
// blob for prefix ""), in key order.
func (s *Store) Blobs(ctx context.Context, prefix string) ([]BlobInfo, error) {
	q, args := `SELECT key, length(value), modified FROM blobs`, []any{}
	if prefix = strings.TrimSuffix(prefix, "/"); prefix != "" {
		q += ` WHERE key = ? OR substr(key, 1, ?) = ?`
		args = append(args, prefix, len(prefix)+1, prefix+"/")
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY key`, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	defer rows.Close()
	var out []BlobInfo
	for rows.Next() {
		var b BlobInfo
		var at int64
		if err := rows.Scan(&b.Key, &b.Size, &at); err != nil {
			return nil, err
		}
		b.Modified = time.Unix(0, at).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}
