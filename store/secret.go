package store

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/chacha20poly1305"
)

// SecretKind is the kind of object whose spec the store keeps encrypted:
// callers write and read plaintext JSON, the state file holds only
// ciphertext.
const SecretKind = "Secret"

// SecretKeyEnv names the environment variable that, when set, holds the
// key Secrets are encrypted with (standard base64 of 32 bytes); the key
// file beside the state file is then not used.
const SecretKeyEnv = "FLEET_SECRET_KEY"

// SecretKeySize is the length of a secret key in bytes.
const SecretKeySize = chacha20poly1305.KeySize

// ErrSecretKey is wrapped by every error that comes from the key rather
// than the data: no key, the wrong key, an unsafe key file.
var ErrSecretKey = errors.New("store: secret key unavailable")

// A Secret's spec column is secretPrefix, the key's id, ":", and the
// base64 of nonce||ciphertext. The version names the whole scheme
// (XChaCha20-Poly1305, this AAD): a new scheme gets a new version.
const (
	secretMagic   = "fleet-secret:"
	secretVersion = "v1"
	secretPrefix  = secretMagic + secretVersion + ":"
	keyIDLen      = 8
)

// keyError marks err as one of ErrSecretKey's.
type keyError struct{ err error }

func (e *keyError) Error() string        { return e.err.Error() }
func (e *keyError) Unwrap() error        { return e.err }
func (e *keyError) Is(target error) bool { return target == ErrSecretKey }

func keyErrorf(format string, args ...any) error {
	return &keyError{fmt.Errorf(format, args...)}
}

// SecretKeyID is a key's id: the first 8 hex digits of its SHA-256. It is
// safe to print and is stored in front of every value the key encrypted,
// so a wrong key is named rather than failing as corrupt data.
func SecretKeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:])[:keyIDLen]
}

// NewSecretKey returns a new random key.
func NewSecretKey() ([]byte, error) {
	key := make([]byte, SecretKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate secret key: %w", err)
	}
	return key, nil
}

// ParseSecretKey decodes a key as FLEET_SECRET_KEY and key files hold it:
// standard base64 (with padding) of exactly 32 bytes, surrounding white
// space ignored. Errors never repeat the text, which may be a key.
func ParseSecretKey(text string) ([]byte, error) {
	key, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, errors.New("not a secret key: want standard base64 of 32 random bytes (make one with: head -c 32 /dev/urandom | base64)")
	}
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("not a secret key: it decodes to %d bytes, want %d (make one with: head -c 32 /dev/urandom | base64)", len(key), SecretKeySize)
	}
	if bytes.Equal(key, make([]byte, SecretKeySize)) {
		return nil, errors.New("not a secret key: it is all zero bytes, not random")
	}
	return key, nil
}

// ReadSecretKeyFile reads a key file, refusing one that group or others
// may access, a symbolic link, or one that does not hold a key.
func ReadSecretKeyFile(path string) ([]byte, error) {
	k, err := loadKeyFile(path)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(k.raw), nil
}

// CreateSecretKeyFile writes key to a new file at path with mode 0600,
// failing with an error matching fs.ErrExist if path exists. The file
// appears whole or not at all: it is written aside, synced, and linked
// into place.
func CreateSecretKeyFile(path string, key []byte) error {
	tmp, err := writeKeyTemp(path, key)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create key file %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("create key file %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// writeKeyTemp writes key, as a key file holds it, to a new uniquely named
// file beside path with mode 0600, synced, and returns its name.
func writeKeyTemp(path string, key []byte) (string, error) {
	var suffix [4]byte
	rand.Read(suffix[:])
	tmp := fmt.Sprintf("%s.tmp-%x", path, suffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write key file %s: %w", path, err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write key file %s: %w", path, err)
	}
	return tmp, nil
}

// replaceKeyFile puts key at path, replacing what is there in one rename.
func replaceKeyFile(path string, key []byte) error {
	tmp, err := writeKeyTemp(path, key)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install key file %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// secretKey is one usable key.
type secretKey struct {
	id     string
	raw    []byte
	aead   cipher.AEAD
	source string // SecretKeyEnv, or the key file's path
}

func newSecretKey(raw []byte, source string) (*secretKey, error) {
	aead, err := chacha20poly1305.NewX(raw)
	if err != nil {
		return nil, fmt.Errorf("secret key from %s: %w", source, err)
	}
	return &secretKey{id: SecretKeyID(raw), raw: bytes.Clone(raw), aead: aead, source: source}, nil
}

// loadKeyFile reads the key file at path. An error matching
// fs.ErrNotExist means there is none.
func loadKeyFile(path string) (*secretKey, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, keyErrorf("key file %s is a symbolic link: keep the key in a regular file there, or in %s", path, SecretKeyEnv)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, keyErrorf("read key file: %w", err)
	}
	defer f.Close()
	// Checked on the open file, so what is checked is what is read.
	fi, err := f.Stat()
	if err != nil {
		return nil, keyErrorf("read key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, keyErrorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, keyErrorf("key file %s is open to group or others (mode %04o): chmod 600 %s", path, perm, path)
	}
	text, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, keyErrorf("read key file: %w", err)
	}
	raw, err := ParseSecretKey(string(text))
	if err != nil {
		return nil, keyErrorf("key file %s: %w", path, err)
	}
	return newSecretKey(raw, path)
}

// keyring finds the keys Secrets are sealed and opened with. Writes load
// the key afresh inside their transaction, so a rotation by another
// process is seen at once; reads look keys up by id and reload the key
// files only for an id they do not know.
type keyring struct {
	file string // the key file: the state file's path + ".key", made absolute

	mu    sync.Mutex
	env   *secretKey            // from FLEET_SECRET_KEY; nil when unset
	known map[string]*secretKey // every key this process has loaded, by id
}

func newKeyring(statePath string) (*keyring, error) {
	file := statePath + ".key"
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	r := &keyring{file: file, known: map[string]*secretKey{}}
	if v := os.Getenv(SecretKeyEnv); v != "" {
		raw, err := ParseSecretKey(v)
		if err != nil {
			return nil, keyErrorf("%s: %w", SecretKeyEnv, err)
		}
		k, err := newSecretKey(raw, SecretKeyEnv)
		if err != nil {
			return nil, err
		}
		r.env = k
		r.known[k.id] = k
	}
	return r, nil
}

// oldFile is where rotation keeps the previous key until its transaction
// has committed.
func (r *keyring) oldFile() string { return r.file + ".old" }

func (r *keyring) envKey() *secretKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.env
}

func (r *keyring) remember(k *secretKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known[k.id] = k
}

// current returns the key to seal with, or nil when there is none. With
// create, a missing key file is created with a new key.
func (r *keyring) current(create bool) (*secretKey, error) {
	if k := r.envKey(); k != nil {
		return k, nil
	}
	k, err := loadKeyFile(r.file)
	if errors.Is(err, fs.ErrNotExist) && create {
		var raw []byte
		if raw, err = NewSecretKey(); err != nil {
			return nil, err
		}
		err = CreateSecretKeyFile(r.file, raw)
		switch {
		case errors.Is(err, fs.ErrExist): // another process was first
			k, err = loadKeyFile(r.file)
		case err == nil:
			k, err = newSecretKey(raw, r.file)
		default:
			return nil, keyErrorf("create key: %w", err)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r.remember(k)
	return k, nil
}

// byID returns the key with id, or nil when neither FLEET_SECRET_KEY nor
// the key files (current and, after an interrupted rotation, old) hold it.
func (r *keyring) byID(id string) (*secretKey, error) {
	r.mu.Lock()
	k, env := r.known[id], r.env
	r.mu.Unlock()
	if k != nil || env != nil {
		return k, nil
	}
	for _, path := range []string{r.file, r.oldFile()} {
		k, err := loadKeyFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r.remember(k)
		if k.id == id {
			return k, nil
		}
	}
	return nil, nil
}

// missing explains that the Secret ns/name is sealed with key id, which no
// available key has, and what to do.
func (r *keyring) missing(namespace, name, id string) error {
	what := fmt.Sprintf("secret %s/%s in the state file was encrypted with key %s", namespace, name, id)
	cur, err := r.current(false)
	switch {
	case err != nil:
		return keyErrorf("%s, and the key file cannot be used: %w", what, err)
	case cur == nil:
		return keyErrorf("%s, but there is no key: set %s to that key, or restore the key file %s from the backup taken with this state file", what, SecretKeyEnv, r.file)
	case cur.source == SecretKeyEnv:
		return keyErrorf("%s, but the key in use is %s (from %s): set %s to the key with id %s, or unset it to use the key file %s", what, cur.id, SecretKeyEnv, SecretKeyEnv, id, r.file)
	default:
		return keyErrorf("%s, but the key in use is %s (from %s): restore the key file backed up with this state file, or set %s to the key with id %s", what, cur.id, cur.source, SecretKeyEnv, id)
	}
}

// secretAAD binds a sealed value to its object: a row copied to another
// name (or kind) does not decrypt. Fields are length-prefixed, so no
// two (kind, namespace, name) give the same bytes.
func secretAAD(kind, namespace, name string) []byte {
	b := []byte(secretMagic + secretVersion)
	for _, f := range []string{kind, namespace, name} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// seal encrypts plain for the Secret namespace/name with a fresh random
// nonce.
func (k *secretKey) seal(namespace, name string, plain []byte) []byte {
	ns := k.aead.NonceSize()
	nonce := make([]byte, ns, ns+len(plain)+k.aead.Overhead())
	rand.Read(nonce)
	sealed := k.aead.Seal(nonce, nonce, plain, secretAAD(SecretKind, namespace, name))
	return []byte(secretPrefix + k.id + ":" + base64.StdEncoding.EncodeToString(sealed))
}

// errNotEncrypted is parseSealed's error for a Secret stored as plaintext.
var errNotEncrypted = errors.New("is not encrypted")

// parseSealed splits a Secret's spec column into key id and
// nonce||ciphertext.
func parseSealed(spec []byte) (id string, sealed []byte, err error) {
	rest, ok := strings.CutPrefix(string(spec), secretMagic)
	if !ok {
		return "", nil, errNotEncrypted
	}
	version, rest, _ := strings.Cut(rest, ":")
	if version != secretVersion {
		return "", nil, fmt.Errorf("is encrypted in format %q, which this fleet does not know: upgrade fleet", version)
	}
	id, b64, ok := strings.Cut(rest, ":")
	if _, err := hex.DecodeString(id); !ok || len(id) != keyIDLen || err != nil {
		return "", nil, errors.New("has a malformed encryption header")
	}
	sealed, err = base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(sealed) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return "", nil, errors.New("has malformed ciphertext")
	}
	return id, sealed, nil
}

// openSecret decrypts the spec column of the Secret namespace/name.
func (s *Store) openSecret(namespace, name string, spec []byte) ([]byte, error) {
	id, sealed, err := parseSealed(spec)
	if errors.Is(err, errNotEncrypted) {
		return nil, fmt.Errorf("secret %s/%s in the state file is not encrypted: run `fleet secrets rotate-key` to encrypt it", namespace, name)
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s in the state file %w", namespace, name, err)
	}
	k, err := s.keys.byID(id)
	if err != nil {
		return nil, fmt.Errorf("read secret %s/%s: %w", namespace, name, err)
	}
	if k == nil {
		return nil, s.keys.missing(namespace, name, id)
	}
	ns := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], secretAAD(SecretKind, namespace, name))
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s in the state file does not decrypt with its key %s: the row was altered, or copied from another object", namespace, name, id)
	}
	return plain, nil
}

// sealingKey returns the key to write Secrets with inside tx, creating the
// key file when the state file holds no Secret yet. It refuses a key
// other than the one the stored Secrets were written with, so a process
// started before a rotation cannot mix keys.
func (s *Store) sealingKey(ctx context.Context, tx *sql.Tx) (*secretKey, error) {
	recorded, n, err := secretKeyRecord(ctx, tx)
	if err != nil {
		return nil, err
	}
	k, err := s.keys.current(n == 0)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, keyErrorf("%d Secrets in the state file are encrypted with key %s, but there is no key: set %s to that key, or restore the key file %s from the backup taken with this state file",
			n, recorded, SecretKeyEnv, s.keys.file)
	}
	if recorded == k.id {
		return k, nil
	}
	if n > 0 && recorded != "" {
		return nil, s.staleKey(recorded, k)
	}
	return k, recordSecretKey(ctx, tx, k.id)
}

// staleKey explains why Secrets written with k would not match the ones
// stored (written with key recorded).
func (s *Store) staleKey(recorded string, k *secretKey) error {
	if k.source == SecretKeyEnv {
		return keyErrorf("the state file's Secrets are encrypted with key %s, but %s holds key %s: set %s to the key with id %s (the key was rotated?)",
			recorded, SecretKeyEnv, k.id, SecretKeyEnv, recorded)
	}
	if old, err := loadKeyFile(s.keys.oldFile()); err == nil && old.id == recorded {
		return keyErrorf("a key rotation was interrupted (%s is left): run `fleet secrets rotate-key` to finish it before writing Secrets", s.keys.oldFile())
	}
	return keyErrorf("the state file's Secrets are encrypted with key %s, but the key file %s holds key %s: restore the key file backed up with this state file, or set %s to the key with id %s",
		recorded, k.source, k.id, SecretKeyEnv, recorded)
}

// secretKeyRecord reads the id of the key the stored Secrets were written
// with ("" before the first) and how many Secrets are stored.
func secretKeyRecord(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (string, int, error) {
	var recorded string
	err := q.QueryRowContext(ctx, `SELECT key_id FROM secret_key`).Scan(&recorded)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", 0, fmt.Errorf("read secret key id: %w", err)
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM objects WHERE kind = ?`, SecretKind).Scan(&n); err != nil {
		return "", 0, fmt.Errorf("count secrets: %w", err)
	}
	return recorded, n, nil
}

func recordSecretKey(ctx context.Context, tx *sql.Tx, id string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO secret_key (singleton, key_id) VALUES (1, ?)
		ON CONFLICT(singleton) DO UPDATE SET key_id = excluded.key_id`, id)
	if err != nil {
		return fmt.Errorf("record secret key id: %w", err)
	}
	return nil
}
