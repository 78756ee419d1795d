package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// KeyRotation is what RotateSecretKey did.
type KeyRotation struct {
	OldID   string // the key replaced; "" when there was none
	NewID   string
	Secrets int // Secrets re-encrypted: all of them
	// Resumed is true when a rotation interrupted earlier was finished
	// first.
	Resumed bool
	// KeyFile is the file now holding the new key; "" when the key comes
	// from FLEET_SECRET_KEY, which the caller must now change.
	KeyFile string
}

// RotateSecretKey re-encrypts every Secret with newKey in one transaction
// and records it as the key in use. newKey nil means a new random key,
// which only a key file can receive: with FLEET_SECRET_KEY the caller
// gives the new key, and this process uses it from then on.
//
// With a key file, the new key is installed before the transaction
// commits (written aside 0600, synced, renamed over the key file) and the
// previous key kept as <key file>.old until it has; reads try the .old key
// meanwhile. Killed between rename and commit, the state file still holds
// the previous key's ciphertext, readable through .old; writes of Secrets
// are refused until RotateSecretKey runs again, which first finishes the
// interrupted rotation.
func (s *Store) RotateSecretKey(ctx context.Context, newKey []byte) (KeyRotation, error) {
	var rot KeyRotation
	fromEnv := s.keys.envKey() != nil
	if newKey == nil {
		if fromEnv {
			return rot, keyErrorf("rotate secret key: the key comes from %s, so the new key must be given", SecretKeyEnv)
		}
		var err error
		if newKey, err = NewSecretKey(); err != nil {
			return rot, err
		}
	}
	source := SecretKeyEnv
	if !fromEnv {
		source = s.keys.file
		rot.KeyFile = s.keys.file
	}
	nk, err := newSecretKey(newKey, source)
	if err != nil {
		return rot, err
	}
	rot.NewID = nk.id
	if !fromEnv {
		if rot.Resumed, err = s.finishRotation(ctx); err != nil {
			return rot, err
		}
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return rot, fmt.Errorf("rotate secret key: %w", err)
	}
	cur, err := s.keys.current(false)
	if err == nil && cur != nil {
		rot.OldID = cur.id
		if cur.id == nk.id {
			err = keyErrorf("rotate secret key: the new key is the key in use (%s)", cur.id)
		}
	}
	if err == nil {
		rot.Secrets, err = s.reseal(ctx, tx, nk, true)
	}
	if err == nil {
		err = recordSecretKey(ctx, tx, nk.id)
	}
	installing := false
	if err == nil && !fromEnv {
		// Even a failed install may have renamed the new key into place
		// (a failed directory sync): undone below either way.
		installing = true
		err = installKey(s.keys.file, s.keys.oldFile(), cur, newKey)
	}
	if err == nil {
		err = tx.Commit()
	} else {
		tx.Rollback()
	}
	if err != nil {
		err = fmt.Errorf("rotate secret key: %w; the Secrets were not re-encrypted", err)
		if installing {
			err = s.uninstallKey(cur, err)
		}
		return rot, err
	}
	s.keys.remember(nk)
	if fromEnv {
		s.keys.mu.Lock()
		s.keys.env = nk
		s.keys.mu.Unlock()
		return rot, nil
	}
	if err := removeOldKey(s.keys.oldFile()); err != nil {
		return rot, fmt.Errorf("rotated to key %s, but %w: remove it by hand", nk.id, err)
	}
	return rot, nil
}

// installKey writes key over the key file, first keeping the key in use
// (cur, nil when there is none) as the old file.
func installKey(file, old string, cur *secretKey, key []byte) error {
	if cur != nil {
		if _, err := os.Lstat(old); err == nil {
			return fmt.Errorf("%s exists: a key rotation is in progress", old)
		}
		if err := replaceKeyFile(old, cur.raw); err != nil {
			return err
		}
	}
	return replaceKeyFile(file, key)
}

// uninstallKey puts the previous key (cur, nil when there was none) back
// after a rotation that did not commit; err is why. The old file is
// written before the new key, so without it the key file was not
// replaced. Reads work meanwhile either way: they fall back on the old
// file.
func (s *Store) uninstallKey(cur *secretKey, err error) error {
	file, old := s.keys.file, s.keys.oldFile()
	if cur == nil {
		if rerr := os.Remove(file); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("%w; remove the unused new key file %s: %v", err, file, rerr)
		}
		return err
	}
	if _, serr := os.Lstat(old); errors.Is(serr, fs.ErrNotExist) {
		return err
	}
	if rerr := os.Rename(old, file); rerr != nil {
		return fmt.Errorf("%w; put back the previous key: %v: rename %s to %s by hand", err, rerr, old, file)
	}
	if serr := syncDir(filepath.Dir(file)); serr != nil {
		return fmt.Errorf("%w; %v", err, serr)
	}
	return err
}

func removeOldKey(old string) error {
	if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the previous key file %s: %w", old, err)
	}
	return syncDir(filepath.Dir(old))
}

// finishRotation completes a rotation that left the old key file behind:
// Secrets still sealed with any other key than the key file's are
// re-encrypted with it, then the old file is removed. It reports whether
// there was one to finish.
func (s *Store) finishRotation(ctx context.Context) (bool, error) {
	old := s.keys.oldFile()
	if _, err := os.Lstat(old); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	cur, err := s.keys.current(false)
	if err != nil {
		return false, err
	}
	if cur == nil {
		return false, keyErrorf("%s is left from an interrupted key rotation, but %s is missing: rename %s to %s, then rotate again", old, s.keys.file, old, s.keys.file)
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.reseal(ctx, tx, cur, false); err != nil {
			return err
		}
		return recordSecretKey(ctx, tx, cur.id)
	})
	if err != nil {
		return false, fmt.Errorf("finish the interrupted key rotation: %w", err)
	}
	if err := removeOldKey(old); err != nil {
		return false, err
	}
	return true, nil
}

// reseal re-encrypts Secrets with k inside tx: every one with all, else
// only those not already sealed with k. Plaintext Secrets (written before
// encryption) are encrypted. Generations and update times are left alone:
// re-keying does not change desired state.
func (s *Store) reseal(ctx context.Context, tx *sql.Tx, k *secretKey, all bool) (int, error) {
	type row struct {
		namespace, name string
		spec            []byte
	}
	rows, err := tx.QueryContext(ctx, `SELECT namespace, name, spec FROM objects WHERE kind = ? ORDER BY namespace, name`, SecretKind)
	if err != nil {
		return 0, fmt.Errorf("read secrets: %w", err)
	}
	var todo []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.namespace, &r.name, &r.spec); err != nil {
			rows.Close()
			return 0, err
		}
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range todo {
		id, _, perr := parseSealed(r.spec)
		if !all && perr == nil && id == k.id {
			continue
		}
		plain := r.spec
		if !errors.Is(perr, errNotEncrypted) {
			if plain, err = s.openSecret(r.namespace, r.name, r.spec); err != nil {
				return 0, err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE objects SET spec = ? WHERE kind = ? AND namespace = ? AND name = ?`,
			k.seal(r.namespace, r.name, plain), SecretKind, r.namespace, r.name); err != nil {
			return 0, fmt.Errorf("store secret %s/%s: %w", r.namespace, r.name, err)
		}
		n++
	}
	return n, nil
}

// SecretKeyStatus describes the key Secrets are sealed with and how the
// stored Secrets are keyed. It never holds key material.
type SecretKeyStatus struct {
	// Source is FLEET_SECRET_KEY or the key file's path.
	Source string
	// KeyID is the id of the key in use; "" when there is none yet (the
	// key file is created when the first Secret is written).
	KeyID string
	// KeyErr is why the key cannot be used, when it cannot.
	KeyErr error
	// RecordedID is the key the state file's Secrets were last written
	// with; "" before the first.
	RecordedID string
	// OldKeyFile is the previous key left by an interrupted rotation, and
	// OldKeyID its id; "" when there is none.
	OldKeyFile, OldKeyID string
	// IgnoredKeyFile is the key file, when it exists but FLEET_SECRET_KEY
	// overrides it.
	IgnoredKeyFile string
	// ByKey counts stored Secrets by the id of the key that sealed them;
	// "" counts Secrets stored unencrypted, "malformed" ones whose
	// encryption header is damaged.
	ByKey map[string]int
	// Unreadable lists (as namespace/name) the Secrets no available key
	// decrypts.
	Unreadable []string
}

// SecretKeyStatus reports on the key and the stored Secrets, decrypting
// each to prove it can. It creates no key file.
func (s *Store) SecretKeyStatus(ctx context.Context) (SecretKeyStatus, error) {
	st := SecretKeyStatus{Source: s.keys.file, ByKey: map[string]int{}}
	if s.keys.envKey() != nil {
		st.Source = SecretKeyEnv
		if _, err := os.Lstat(s.keys.file); err == nil {
			st.IgnoredKeyFile = s.keys.file
		}
	} else if _, err := os.Lstat(s.keys.oldFile()); err == nil {
		st.OldKeyFile = s.keys.oldFile()
		if old, err := loadKeyFile(st.OldKeyFile); err == nil {
			st.OldKeyID = old.id
		}
	}
	if k, err := s.keys.current(false); err != nil {
		st.KeyErr = err
	} else if k != nil {
		st.KeyID = k.id
	}
	var err error
	if st.RecordedID, _, err = secretKeyRecord(ctx, s.db); err != nil {
		return st, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT namespace, name, spec FROM objects WHERE kind = ? ORDER BY namespace, name`, SecretKind)
	if err != nil {
		return st, fmt.Errorf("read secrets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ns, name string
		var spec []byte
		if err := rows.Scan(&ns, &name, &spec); err != nil {
			return st, err
		}
		id, _, perr := parseSealed(spec)
		if perr != nil && !errors.Is(perr, errNotEncrypted) {
			id = "malformed"
		}
		st.ByKey[id]++
		if _, err := s.openSecret(ns, name, spec); err != nil {
			st.Unreadable = append(st.Unreadable, ns+"/"+name)
		}
	}
	sort.Strings(st.Unreadable)
	return st, rows.Err()
}
