package sshexec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fleetdev/fleet/store"
)

// PinStore keeps host keys pinned on first contact. *store.Store satisfies it.
type PinStore interface {
	HostKey(ctx context.Context, address string) (store.HostKey, bool, error)
	PinHostKey(ctx context.Context, hk store.HostKey) (store.HostKey, error)
}

var _ PinStore = (*store.Store)(nil)

// ErrUnknownHost is returned when a host's key is in no known_hosts file and
// there is no state file to pin it in.
var ErrUnknownHost = errors.New("sshexec: unknown host key")

// HostKeyMismatchError is a host offering a key other than the one fleet
// knows for it. It is never retried: it may be an attack.
type HostKeyMismatchError struct {
	Machine string
	Address string
	Got     string // fingerprint offered
	Want    string // fingerprint known
	Source  string // where the known key came from: known_hosts file:line or the state file
}

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch for %s (%s): the host offered %s but %s has %s; "+
		"someone may be intercepting the connection, or the host was reinstalled. "+
		"If the change is expected, remove the old key (%s) and retry",
		e.Machine, e.Address, e.Got, e.Source, e.Want, e.fix())
}

func (e *HostKeyMismatchError) fix() string {
	if strings.HasPrefix(e.Source, "state file") {
		return "fleet node forget-key " + e.Machine
	}
	return "ssh-keygen -R with the host's address in that file"
}

// HostKeyPolicy decides which host keys are accepted: a key listed in a
// known_hosts file, else a key pinned in the state file, else (with a pin
// store) the key offered on first contact, which is then pinned. A key that
// differs from a known or pinned one is refused.
type HostKeyPolicy struct {
	// KnownHosts are known_hosts files; missing files are skipped.
	KnownHosts []string
	// Pins is where first-contact keys are pinned; nil refuses unknown hosts.
	Pins PinStore
	// Now stamps new pins; defaults to time.Now.
	Now func() time.Time

	known ssh.HostKeyCallback
}

// NewHostKeyPolicy loads the known_hosts files once.
func NewHostKeyPolicy(knownHosts []string, pins PinStore) (*HostKeyPolicy, error) {
	p := &HostKeyPolicy{KnownHosts: knownHosts, Pins: pins, Now: time.Now}
	var existing []string
	for _, f := range knownHosts {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	if len(existing) > 0 {
		cb, err := knownhosts.New(existing...)
		if err != nil {
			return nil, fmt.Errorf("load known_hosts: %w", err)
		}
		p.known = cb
	}
	return p, nil
}

// Fingerprint is the SHA256 fingerprint OpenSSH prints for key.
func Fingerprint(key ssh.PublicKey) string {
	return key.Type() + " " + ssh.FingerprintSHA256(key)
}

// algorithms lists the host key algorithms to offer for address, so the
// server presents the key type fleet already knows (as OpenSSH does);
// nil means no preference.
func (p *HostKeyPolicy) algorithms(ctx context.Context, address string) []string {
	var types []string
	if p.known != nil {
		// A probe with a key no host has makes knownhosts list what it knows.
		var ke *knownhosts.KeyError
		if err := p.known(address, &net.TCPAddr{}, probeKey{}); errors.As(err, &ke) {
			for _, k := range ke.Want {
				types = append(types, k.Key.Type())
			}
		}
	}
	if len(types) == 0 && p.Pins != nil {
		if hk, ok, err := p.Pins.HostKey(ctx, knownhosts.Normalize(address)); err == nil && ok {
			types = append(types, hk.Type)
		}
	}
	if len(types) == 0 {
		// Nothing known: ask for ed25519 first, as OpenSSH does, so the key
		// pinned is the one `ssh-keygen -lf` users compare against.
		return preferredHostKeyAlgorithms
	}
	var algos []string
	seen := map[string]bool{}
	for _, t := range types {
		for _, a := range algorithmsForKeyType(t) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

var preferredHostKeyAlgorithms = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// KeyAddress is the address a machine's host key is known and pinned
// under: host alone for port 22, [host]:port otherwise, as in known_hosts.
func KeyAddress(t *Target) string { return knownhosts.Normalize(t.Address()) }

func algorithmsForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// callback returns the ssh.HostKeyCallback for one machine.
func (p *HostKeyPolicy) callback(ctx context.Context, machine string) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		address := knownhosts.Normalize(hostname)
		if p.known != nil {
			err := p.known(hostname, remote, key)
			if err == nil {
				return nil
			}
			var ke *knownhosts.KeyError
			if !errors.As(err, &ke) {
				return fmt.Errorf("check known_hosts for %s: %w", machine, err)
			}
			if len(ke.Want) > 0 {
				w := ke.Want[0]
				return &HostKeyMismatchError{
					Machine: machine, Address: address, Got: Fingerprint(key),
					Want: Fingerprint(w.Key), Source: fmt.Sprintf("known_hosts %s:%d", w.Filename, w.Line),
				}
			}
		}
		if p.Pins == nil {
			return fmt.Errorf("%w for %s (%s offers %s): add it to a known_hosts file", ErrUnknownHost, machine, address, Fingerprint(key))
		}
		pinned, ok, err := p.Pins.HostKey(ctx, address)
		if err != nil {
			return err
		}
		if !ok {
			now := time.Now
			if p.Now != nil {
				now = p.Now
			}
			pinned, err = p.Pins.PinHostKey(ctx, store.HostKey{
				Address: address, Machine: machine, Type: key.Type(), Key: key.Marshal(),
				Fingerprint: ssh.FingerprintSHA256(key), FirstSeen: now().UTC(),
			})
			if err != nil {
				return err
			}
		}
		if string(pinned.Key) != string(key.Marshal()) {
			return &HostKeyMismatchError{
				Machine: machine, Address: address, Got: Fingerprint(key),
				Want:   pinned.Type + " " + pinned.Fingerprint,
				Source: fmt.Sprintf("state file (pinned %s)", pinned.FirstSeen.Format(time.RFC3339)),
			}
		}
		return nil
	}
}

// probeKey is a public key no host has, used to ask knownhosts which keys
// it holds for an address.
type probeKey struct{}

func (probeKey) Type() string                        { return "fleet-probe" }
func (probeKey) Marshal() []byte                     { return []byte("fleet-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }
