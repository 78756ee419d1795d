package sshexec

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fleetdev/fleet/store"
)

func TestHostKeyPolicy_knownHosts(t *testing.T) {
	t.Run("a host whose key is in known_hosts is accepted and Docker answers over the tunnel", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		srv.serveDocker(defaultDockerSocket)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		pins := newMemPins()
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, pins, Config{})

		cli, err := p.Docker("a")
		if err != nil {
			t.Fatalf("Docker: %v", err)
		}
		if _, err := cli.Ping(ctxTimeout(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if _, ok := pins.get(keyAddress(srv)); ok {
			t.Error("a key found in known_hosts was also pinned")
		}
	})

	t.Run("a different key in known_hosts is refused naming both fingerprints and the line", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		known := newHostKey(t).PublicKey()
		kh := writeKnownHosts(t, "# fleet test hosts", knownHostsLine(srv.addr(), known))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, newMemPins(), Config{})

		_, err := p.Client(ctxTimeout(t), "a")
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) {
			t.Fatalf("err = %v, want a *HostKeyMismatchError", err)
		}
		msg := err.Error()
		for _, want := range []string{
			ssh.FingerprintSHA256(srv.hostKey()),
			ssh.FingerprintSHA256(known),
			fmt.Sprintf("%s:2", kh),
			"ssh-keygen -R",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("error lacks %q:\n%s", want, msg)
			}
		}
		if mm.Got != Fingerprint(srv.hostKey()) || mm.Want != Fingerprint(known) {
			t.Errorf("Got, Want = %q, %q; want %q, %q", mm.Got, mm.Want, Fingerprint(srv.hostKey()), Fingerprint(known))
		}
		if mm.Machine != "a" {
			t.Errorf("Machine = %q, want a", mm.Machine)
		}
		if got := Reason(err); got != "host key mismatch" {
			t.Errorf("Reason = %q, want host key mismatch", got)
		}
		var op *OpError
		if !errors.As(err, &op) || op.Step != StepHostKey {
			t.Errorf("err = %v, want an OpError at step %q", err, StepHostKey)
		}
	})

	t.Run("a host missing from known_hosts falls back to the pin store", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		other := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(other.addr(), other.hostKey()))
		pins := newMemPins()
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, pins, Config{})

		if _, err := p.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("Client: %v", err)
		}
		if _, ok := pins.get(keyAddress(srv)); !ok {
			t.Errorf("no key pinned for %s", keyAddress(srv))
		}
	})

	t.Run("missing known_hosts files are skipped", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		missing := filepath.Join(t.TempDir(), "absent")
		inv := parseInventory(t, []string{missing}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, newMemPins(), Config{})
		if _, err := p.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("Client: %v", err)
		}
	})

	t.Run("a malformed known_hosts file is an error", func(t *testing.T) {
		kh := writeKnownHosts(t, "127.0.0.1 ssh-ed25519 not-base64!!")
		if _, err := NewHostKeyPolicy([]string{kh}, nil); err == nil {
			t.Error("NewHostKeyPolicy: no error")
		}
	})

	t.Run("the key type in known_hosts is the one asked for", func(t *testing.T) {
		// known_hosts holds the host's ECDSA key; the host also has an
		// ed25519 key, which the client prefers when it knows nothing.
		key := newClientKey(t)
		srv := newTestServer(t, key)
		ec := newECDSAHostKey(t)
		srv.setHostKeys(srv.hostSigner(), ec)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), ec.PublicKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{})

		if _, err := p.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("Client: %v", err)
		}
	})
}

func TestHostKeyPolicy_pins(t *testing.T) {
	t.Run("first contact pins, a new pool trusts the pin, and a changed key is refused", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		pins := newMemPins()
		inv := parseInventory(t, nil, machine{name: "a", port: srv.port(), identity: key.path})
		first := newTestPool(t, inv, pins, Config{})

		if _, err := first.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("first contact: %v", err)
		}
		hk, ok := pins.get(keyAddress(srv))
		if !ok {
			t.Fatalf("no key pinned for %s; pinned: %v", keyAddress(srv), pins.keys)
		}
		if string(hk.Key) != string(srv.hostKey().Marshal()) || hk.Machine != "a" ||
			hk.Type != ssh.KeyAlgoED25519 || hk.Fingerprint != ssh.FingerprintSHA256(srv.hostKey()) {
			t.Errorf("pinned %+v, want the server's ed25519 key for machine a", hk)
		}
		first.Close()

		second := newTestPool(t, inv, pins, Config{})
		if _, err := second.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("second pool: %v", err)
		}
		if n := srv.accepts.Load(); n != 2 {
			t.Errorf("server accepted %d connections, want 2", n)
		}
		if pins.pins != 1 {
			t.Errorf("pinned %d times, want 1", pins.pins)
		}
		second.Close()

		old := srv.hostKey()
		srv.setHostKeys(newHostKey(t))
		third := newTestPool(t, inv, pins, Config{})
		_, err := third.Client(ctxTimeout(t), "a")
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) {
			t.Fatalf("err = %v, want a *HostKeyMismatchError", err)
		}
		for _, want := range []string{
			ssh.FingerprintSHA256(old),
			ssh.FingerprintSHA256(srv.hostKey()),
			"state file",
			"fleet node forget-key a",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%s", want, err)
			}
		}
		if got := Reason(err); got != "host key mismatch" {
			t.Errorf("Reason = %q, want host key mismatch", got)
		}
		if hk, _ := pins.get(keyAddress(srv)); string(hk.Key) != string(old.Marshal()) {
			t.Error("the refused key replaced the pinned one")
		}
	})

	t.Run("a pinned key type is the one asked for", func(t *testing.T) {
		// First contact pins the host's only key, ECDSA.
		key := newClientKey(t)
		srv := newTestServer(t, key)
		ed := srv.hostSigner()
		srv.setHostKeys(newECDSAHostKey(t))
		pins := newMemPins()
		inv := parseInventory(t, nil, machine{name: "a", port: srv.port(), identity: key.path})
		first := newTestPool(t, inv, pins, Config{})
		if _, err := first.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("first contact: %v", err)
		}
		first.Close()

		// The host gains an ed25519 key, which the client would otherwise
		// prefer to the pinned ECDSA one.
		srv.setHostKeys(srv.hostSigner(), ed)
		second := newTestPool(t, inv, pins, Config{})
		if _, err := second.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("second pool: %v", err)
		}
	})

	t.Run("a host seen for the first time is asked for its ed25519 key", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		srv.setHostKeys(newECDSAHostKey(t), srv.hostSigner())
		pins := newMemPins()
		inv := parseInventory(t, nil, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, pins, Config{})
		if _, err := p.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("first contact: %v", err)
		}
		if hk, _ := pins.get(keyAddress(srv)); hk.Type != ssh.KeyAlgoED25519 {
			t.Errorf("pinned a %s key, want %s", hk.Type, ssh.KeyAlgoED25519)
		}
	})

	t.Run("a host key is refused as unknown without known_hosts or a pin store", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		inv := parseInventory(t, nil, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{})

		_, err := p.Client(ctxTimeout(t), "a")
		if !errors.Is(err, ErrUnknownHost) {
			t.Fatalf("err = %v, want ErrUnknownHost", err)
		}
		if got := Reason(err); got != "unknown host key" {
			t.Errorf("Reason = %q, want unknown host key", got)
		}
		var op *OpError
		if !errors.As(err, &op) || op.Step != StepHostKey {
			t.Errorf("err = %v, want an OpError at step %q", err, StepHostKey)
		}
		if !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.hostKey())) {
			t.Errorf("error lacks the offered fingerprint: %v", err)
		}
	})

	t.Run("a failing pin store refuses the host", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		pins := newMemPins()
		pins.err = errors.New("disk on fire")
		inv := parseInventory(t, nil, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, pins, Config{})

		_, err := p.Client(ctxTimeout(t), "a")
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("err = %v, want the pin store's error", err)
		}
		if srv.handshakes.Load() != 0 {
			t.Error("handshake completed despite the pin store failing")
		}
	})

	t.Run("a key pinned concurrently by another process is compared against", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		racer := newHostKey(t).PublicKey()
		pins := &racingPins{memPins: newMemPins(), winner: racer}
		inv := parseInventory(t, nil, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, pins, Config{})

		_, err := p.Client(ctxTimeout(t), "a")
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) || mm.Want != Fingerprint(racer) {
			t.Fatalf("err = %v, want a mismatch against the racing pin %s", err, Fingerprint(racer))
		}
	})
}

// racingPins reports no pin, then finds winner already pinned when asked to
// pin, as a concurrent first contact by another process would leave it.
type racingPins struct {
	*memPins
	winner ssh.PublicKey
}

func (r *racingPins) PinHostKey(ctx context.Context, hk store.HostKey) (store.HostKey, error) {
	hk.Key, hk.Type, hk.Fingerprint = r.winner.Marshal(), r.winner.Type(), ssh.FingerprintSHA256(r.winner)
	return r.memPins.PinHostKey(ctx, hk)
}

func TestHostKeyPolicy_store(t *testing.T) {
	key := newClientKey(t)
	srv := newTestServer(t, key)
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inv := parseInventory(t, nil, machine{name: "a", port: srv.port(), identity: key.path})
	firstSeen := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

	newPool := func() *Pool {
		policy, err := NewHostKeyPolicy(nil, st)
		if err != nil {
			t.Fatal(err)
		}
		policy.Now = func() time.Time { return firstSeen }
		p, err := NewPool(inv, Config{HostKeys: policy, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}

	p := newPool()
	if _, err := p.Client(ctxTimeout(t), "a"); err != nil {
		t.Fatalf("first contact: %v", err)
	}
	p.Close()
	tgt, _ := p.Target("a")
	hk, ok, err := st.HostKey(t.Context(), KeyAddress(tgt))
	if err != nil || !ok {
		t.Fatalf("HostKey(%s) = %v, %v; want the pinned key", KeyAddress(tgt), ok, err)
	}
	if string(hk.Key) != string(srv.hostKey().Marshal()) || !hk.FirstSeen.Equal(firstSeen) {
		t.Errorf("pinned %+v, want the server's key first seen %s", hk, firstSeen)
	}

	old := srv.hostKey()
	srv.setHostKeys(newHostKey(t))
	_, err = newPool().Client(ctxTimeout(t), "a")
	var mm *HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("err = %v, want a *HostKeyMismatchError", err)
	}
	for _, want := range []string{
		ssh.FingerprintSHA256(old), ssh.FingerprintSHA256(srv.hostKey()),
		"state file (pinned 2024-05-06T07:08:09Z)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}

	// forget-key removes the pin by KeyAddress; the next contact pins the
	// new key.
	removed, err := st.ForgetHostKey(t.Context(), KeyAddress(tgt))
	if err != nil || !removed {
		t.Fatalf("ForgetHostKey(%s) = %v, %v; want the pin removed", KeyAddress(tgt), removed, err)
	}
	if _, err := newPool().Client(ctxTimeout(t), "a"); err != nil {
		t.Fatalf("contact after forgetting the key: %v", err)
	}
	hk, _, _ = st.HostKey(t.Context(), KeyAddress(tgt))
	if string(hk.Key) != string(srv.hostKey().Marshal()) {
		t.Error("the new key was not pinned")
	}
}

func TestHostKeyMismatchError_Error(t *testing.T) {
	tests := []struct {
		name   string
		source string
		fix    string
	}{
		{"a known_hosts key points at ssh-keygen", "known_hosts /home/u/.ssh/known_hosts:3", "ssh-keygen -R"},
		{"a pinned key points at forget-key", "state file (pinned 2024-01-01T00:00:00Z)", "fleet node forget-key web1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &HostKeyMismatchError{Machine: "web1", Address: "10.0.0.1:22", Got: "ssh-ed25519 SHA256:new", Want: "ssh-ed25519 SHA256:old", Source: tt.source}
			msg := e.Error()
			for _, want := range []string{"web1", "10.0.0.1:22", "SHA256:new", "SHA256:old", tt.source, tt.fix} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q: %s", want, msg)
				}
			}
		})
	}
}
