package sshexec

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fleetdev/fleet/inventory"
)

func TestNewPool(t *testing.T) {
	t.Run("a pool without a host key policy is refused", func(t *testing.T) {
		inv := parseInventory(t, nil, machine{name: "a", port: 2222, identity: "/nonexistent"})
		if _, err := NewPool(inv, Config{}); err == nil {
			t.Fatal("NewPool without HostKeys: no error")
		}
	})
	t.Run("a machine that cannot be resolved fails the pool", func(t *testing.T) {
		inv := &inventory.Inventory{Machines: []inventory.Machine{
			{Name: "a", Address: "a.local", ProxyJump: "b"},
			{Name: "b", Address: "b.local", ProxyJump: "a"},
		}}
		policy, err := NewHostKeyPolicy(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewPool(inv, Config{HostKeys: policy}); err == nil || !strings.Contains(err.Error(), "loops") {
			t.Fatalf("NewPool with a proxyJump loop: err = %v, want a loop error", err)
		}
	})
}

func TestPool_Target(t *testing.T) {
	inv := parseInventory(t, nil,
		machine{name: "a", port: 2201, identity: "/keys/a"},
		machine{name: "b", port: 2202, identity: "/keys/b", proxyJump: "a"})
	p := newTestPool(t, inv, nil, Config{})

	tgt, ok := p.Target("b")
	if !ok {
		t.Fatal("Target(b): not found")
	}
	if got, want := tgt.Address(), "127.0.0.1:2202"; got != want {
		t.Errorf("Address = %q, want %q", got, want)
	}
	if tgt.Jump == nil || tgt.Jump.Name != "a" || tgt.Jump.Address() != "127.0.0.1:2201" {
		t.Errorf("Jump = %+v, want machine a at 127.0.0.1:2201", tgt.Jump)
	}
	if _, ok := p.Target("nope"); ok {
		t.Error("Target(nope): found, want not found")
	}
}

func TestPool_Client(t *testing.T) {
	t.Run("a host in known_hosts is connected and the connection reused", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{})

		c1, err := p.Client(ctxTimeout(t), "a")
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		if got := string(c1.User()); got != "fleet" {
			t.Errorf("user = %q, want fleet", got)
		}
		c2, err := p.Client(ctxTimeout(t), "a")
		if err != nil {
			t.Fatalf("second Client: %v", err)
		}
		if c1 != c2 {
			t.Error("second Client returned a new connection, want the pooled one")
		}
		if n := srv.accepts.Load(); n != 1 {
			t.Errorf("server accepted %d connections, want 1", n)
		}
	})

	t.Run("a machine not in the inventory is an error naming it", func(t *testing.T) {
		inv := parseInventory(t, nil, machine{name: "a", port: 2222, identity: "/nonexistent"})
		p := newTestPool(t, inv, nil, Config{})
		_, err := p.Client(ctxTimeout(t), "ghost")
		if err == nil || !strings.Contains(err.Error(), `"ghost"`) {
			t.Fatalf("err = %v, want one naming ghost", err)
		}
	})

	t.Run("a wrong client key is refused as auth refused", func(t *testing.T) {
		srv := newTestServer(t, newClientKey(t))
		other := newClientKey(t)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: other.path})
		p := newTestPool(t, inv, nil, Config{})

		_, err := p.Client(ctxTimeout(t), "a")
		var op *OpError
		if !errors.As(err, &op) || op.Step != StepAuth {
			t.Fatalf("err = %v, want an OpError at step %q", err, StepAuth)
		}
		if got := Reason(err); got != "auth refused" {
			t.Errorf("Reason = %q, want auth refused", got)
		}
		if !strings.Contains(err.Error(), `user "fleet"`) {
			t.Errorf("error %q does not name the user", err)
		}
	})

	t.Run("an unreadable identity file is an auth error before any handshake", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path + ".missing"})
		p := newTestPool(t, inv, nil, Config{})

		_, err := p.Client(ctxTimeout(t), "a")
		var op *OpError
		if !errors.As(err, &op) || op.Step != StepAuth || !strings.Contains(err.Error(), "read identity file") {
			t.Fatalf("err = %v, want an OpError at step %q about the identity file", err, StepAuth)
		}
		if n := srv.handshakes.Load(); n != 0 {
			t.Errorf("server completed %d handshakes, want 0", n)
		}
	})

	t.Run("a closed port is unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		inv := parseInventory(t, nil, machine{name: "a", port: port, identity: newClientKey(t).path})
		p := newTestPool(t, inv, nil, Config{})

		_, err = p.Client(ctxTimeout(t), "a")
		var op *OpError
		if !errors.As(err, &op) || op.Step != StepConnect {
			t.Fatalf("err = %v, want an OpError at step %q", err, StepConnect)
		}
		if got := Reason(err); got != "unreachable" {
			t.Errorf("Reason = %q, want unreachable", got)
		}
		if op.Machine != "a" || op.Address != inv.Machines[0].SSHAddress() {
			t.Errorf("OpError names %s (%s), want a (%s)", op.Machine, op.Address, inv.Machines[0].SSHAddress())
		}
	})

	t.Run("a host that never speaks SSH times out within DialTimeout", func(t *testing.T) {
		silent := newSilentListener(t)
		inv := parseInventory(t, nil, machine{name: "a", port: silent.port(), identity: newClientKey(t).path})
		p := newTestPool(t, inv, nil, Config{DialTimeout: 300 * time.Millisecond})

		start := time.Now()
		_, err := p.Client(t.Context(), "a")
		elapsed := time.Since(start)
		if err == nil {
			t.Fatal("Client to a silent host: no error")
		}
		if got := Reason(err); got != "unreachable (timed out)" {
			t.Errorf("Reason = %q, want unreachable (timed out); err = %v", got, err)
		}
		var op *OpError
		if !errors.As(err, &op) || op.Step != StepHandshake || !op.Timeout() {
			t.Errorf("err = %v, want a timed-out OpError at step %q", err, StepHandshake)
		}
		if elapsed > 5*time.Second {
			t.Errorf("Client took %s with a 300ms DialTimeout", elapsed)
		}
		if n := silent.accepts(); n != 1 {
			t.Errorf("listener accepted %d connections, want 1", n)
		}
	})

	t.Run("cancelling ctx aborts a handshake with a silent host", func(t *testing.T) {
		silent := newSilentListener(t)
		inv := parseInventory(t, nil, machine{name: "a", port: silent.port(), identity: newClientKey(t).path})
		p := newTestPool(t, inv, nil, Config{DialTimeout: time.Minute})

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := p.Client(ctx, "a")
			done <- err
		}()
		waitFor(t, "the dial to reach the listener", func() bool { return silent.accepts() == 1 })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want one matching context.Canceled", err)
			}
			// The listener may count the accept before the dialler returns,
			// so the cancel can land in either step.
			var op *OpError
			if !errors.As(err, &op) || (op.Step != StepHandshake && op.Step != StepConnect) {
				t.Errorf("err = %v, want an OpError at step %q or %q", err, StepConnect, StepHandshake)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Client did not return after ctx was cancelled")
		}
	})

	t.Run("a ctx deadline shorter than DialTimeout bounds the handshake", func(t *testing.T) {
		silent := newSilentListener(t)
		inv := parseInventory(t, nil, machine{name: "a", port: silent.port(), identity: newClientKey(t).path})
		p := newTestPool(t, inv, nil, Config{DialTimeout: time.Minute})

		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := p.Client(ctx, "a")
		if got := Reason(err); got != "unreachable (timed out)" {
			t.Errorf("Reason = %q, want unreachable (timed out); err = %v", got, err)
		}
	})

	t.Run("a closed pool does not dial", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{})
		c, err := p.Client(ctxTimeout(t), "a")
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		c.Wait() // returns once Close has taken the connection down
		if _, err := p.Client(ctxTimeout(t), "a"); err == nil {
			t.Error("Client after Close: no error")
		}
		if n := srv.accepts.Load(); n != 1 {
			t.Errorf("server accepted %d connections, want 1", n)
		}
		if err := p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestPool_Client_keepalive(t *testing.T) {
	t.Run("a connection the server drops is redialled on the next call", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{KeepaliveInterval: 50 * time.Millisecond})

		old, err := p.Client(ctxTimeout(t), "a")
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		srv.dropConnections()

		var fresh *ssh.Client
		waitFor(t, "the pool to replace the dropped connection", func() bool {
			c, err := p.Client(ctxTimeout(t), "a")
			if err != nil {
				// The server is up: any failure here is a real one.
				t.Fatalf("Client after drop: %v", err)
			}
			fresh = c
			return c != old
		})
		if n := srv.accepts.Load(); n != 2 {
			t.Errorf("server accepted %d connections, want 2", n)
		}
		if _, _, err := fresh.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			t.Errorf("new connection does not work: %v", err)
		}
	})

	t.Run("keepalives are sent on an idle connection", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{KeepaliveInterval: 20 * time.Millisecond})

		if _, err := p.Client(ctxTimeout(t), "a"); err != nil {
			t.Fatalf("Client: %v", err)
		}
		waitFor(t, "three keepalives", func() bool { return srv.keepalives.Load() >= 3 })
	})

	t.Run("a connection whose keepalives go unanswered is closed and redialled", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{
			KeepaliveInterval: 20 * time.Millisecond,
			KeepaliveTimeout:  200 * time.Millisecond,
		})

		old, err := p.Client(ctxTimeout(t), "a")
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		closed := make(chan struct{})
		go func() {
			old.Wait() // returns once the pool has closed the connection
			close(closed)
		}()
		srv.dropKeepalives.Store(true)
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the pool did not close a connection whose keepalives went unanswered")
		}
		srv.dropKeepalives.Store(false)
		waitFor(t, "a new connection", func() bool {
			c, err := p.Client(ctxTimeout(t), "a")
			if err != nil {
				t.Fatalf("Client after keepalive failure: %v", err)
			}
			return c != old
		})
		// More than 2 would mean a slow machine tripped the keepalive
		// timeout again; that is not what this test is about.
		if n := srv.accepts.Load(); n < 2 {
			t.Errorf("server accepted %d connections, want a second one", n)
		}
	})
}

func TestPool_Client_backoff(t *testing.T) {
	// A listener that hangs up at once makes every dial fail fast, and
	// counts the dials.
	t.Run("a call whose deadline ends before the backoff returns the last error without dialling", func(t *testing.T) {
		hangup := newHangupListener(t)
		inv := parseInventory(t, nil, machine{name: "a", port: hangup.port(), identity: newClientKey(t).path})
		p := newTestPool(t, inv, newMemPins(), Config{Backoff: Backoff{Initial: time.Hour, Max: time.Hour}})

		_, first := p.Client(ctxTimeout(t), "a")
		if first == nil {
			t.Fatal("first Client: no error")
		}
		if n := hangup.accepts(); n != 1 {
			t.Fatalf("listener accepted %d connections, want 1", n)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := p.Client(ctx, "a")
		if err == nil {
			t.Fatal("second Client: no error")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second Client waited for the backoff: %v", err)
		}
		if !strings.Contains(err.Error(), first.Error()) || !strings.Contains(err.Error(), "next attempt in") {
			t.Errorf("err = %q, want the last error %q and when the next attempt is", err, first)
		}
		var op *OpError
		if !errors.As(err, &op) {
			t.Errorf("err = %v, want it to wrap the OpError", err)
		}
		if n := hangup.accepts(); n != 1 {
			t.Errorf("listener accepted %d connections, want still 1", n)
		}
	})

	t.Run("a call without a deadline waits out the backoff and dials again", func(t *testing.T) {
		hangup := newHangupListener(t)
		inv := parseInventory(t, nil, machine{name: "a", port: hangup.port(), identity: newClientKey(t).path})
		p := newTestPool(t, inv, newMemPins(), Config{Backoff: Backoff{Initial: 10 * time.Millisecond}})

		for range 3 {
			if _, err := p.Client(t.Context(), "a"); err == nil {
				t.Fatal("Client: no error")
			}
		}
		if n := hangup.accepts(); n != 3 {
			t.Errorf("listener accepted %d connections, want 3", n)
		}
	})

	t.Run("cancelling ctx during the backoff returns the ctx error", func(t *testing.T) {
		hangup := newHangupListener(t)
		inv := parseInventory(t, nil, machine{name: "a", port: hangup.port(), identity: newClientKey(t).path})
		p := newTestPool(t, inv, newMemPins(), Config{Backoff: Backoff{Initial: time.Hour, Max: time.Hour}})
		if _, err := p.Client(t.Context(), "a"); err == nil {
			t.Fatal("first Client: no error")
		}

		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := p.Client(ctx, "a"); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if n := hangup.accepts(); n != 1 {
			t.Errorf("listener accepted %d connections, want 1", n)
		}
	})

	t.Run("a success after failures resets the backoff", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{
			Backoff:           Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
			KeepaliveInterval: time.Hour,
		})
		// An impostor key makes the first dial fail.
		orig := srv.hostSigner()
		srv.setHostKeys(newHostKey(t))
		if _, err := p.Client(ctxTimeout(t), "a"); Reason(err) != "host key mismatch" {
			t.Fatalf("first Client: err = %v, want a host key mismatch", err)
		}
		srv.setHostKeys(orig)
		if _, err := p.Client(t.Context(), "a"); err != nil {
			t.Fatalf("Client once the key is right: %v", err)
		}
		srv.dropConnections()
		// After a drop the next call redials at once: a deadline shorter
		// than any backoff must not be refused.
		waitFor(t, "a redial after the drop", func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_, err := p.Client(ctx, "a")
			if err != nil && strings.Contains(err.Error(), "next attempt in") {
				t.Fatalf("Client after a success was held back by backoff: %v", err)
			}
			return srv.accepts.Load() >= 3
		})
	})
}

func TestPool_Docker(t *testing.T) {
	t.Run("ping and info go through the SSH tunnel to the Docker socket", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		docker := srv.serveDocker(defaultDockerSocket)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{})

		cli, err := p.Docker("a")
		if err != nil {
			t.Fatalf("Docker: %v", err)
		}
		ping, err := cli.Ping(ctxTimeout(t))
		if err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if ping.APIVersion != "1.47" || ping.OSType != "linux" {
			t.Errorf("ping = %+v, want API 1.47 on linux", ping)
		}
		info, err := cli.Info(ctxTimeout(t))
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		if info.ServerVersion != "28.5.2" || info.NCPU != 4 {
			t.Errorf("info = %s/%d CPUs, want 28.5.2/4", info.ServerVersion, info.NCPU)
		}
		if docker.pings.Load() == 0 || docker.infos.Load() != 1 {
			t.Errorf("daemon saw %d pings and %d info calls", docker.pings.Load(), docker.infos.Load())
		}
		if n := srv.accepts.Load(); n != 1 {
			t.Errorf("server accepted %d SSH connections, want 1 shared by every request", n)
		}
		again, err := p.Docker("a")
		if err != nil || again != cli {
			t.Errorf("second Docker = %p, %v; want the same client %p", again, err, cli)
		}
	})

	t.Run("a configured socket path is the one asked for", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		srv.serveDocker("/run/user/1000/docker.sock")
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{DockerSocket: "/run/user/1000/docker.sock"})

		cli, err := p.Docker("a")
		if err != nil {
			t.Fatalf("Docker: %v", err)
		}
		if _, err := cli.Ping(ctxTimeout(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})

	t.Run("a missing Docker socket is docker not running", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{})

		cli, err := p.Docker("a")
		if err != nil {
			t.Fatalf("Docker: %v", err)
		}
		_, err = cli.Ping(ctxTimeout(t))
		if got := Reason(err); got != "docker not running" {
			t.Errorf("Reason = %q, want docker not running; err = %v", got, err)
		}
		if err == nil || !strings.Contains(err.Error(), defaultDockerSocket) {
			t.Errorf("err = %v, want it to name %s", err, defaultDockerSocket)
		}
	})

	t.Run("a host key mismatch surfaces through the Docker client", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		srv.serveDocker(defaultDockerSocket)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), newHostKey(t).PublicKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{})

		cli, err := p.Docker("a")
		if err != nil {
			t.Fatalf("Docker: %v", err)
		}
		_, err = cli.Ping(ctxTimeout(t))
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) || Reason(err) != "host key mismatch" {
			t.Errorf("err = %v (reason %q), want a HostKeyMismatchError", err, Reason(err))
		}
	})

	t.Run("a machine not in the inventory is an error", func(t *testing.T) {
		inv := parseInventory(t, nil, machine{name: "a", port: 2222, identity: "/nonexistent"})
		p := newTestPool(t, inv, nil, Config{})
		if _, err := p.Docker("ghost"); err == nil {
			t.Error("Docker(ghost): no error")
		}
	})

	t.Run("the client keeps working after the connection is redialled", func(t *testing.T) {
		key := newClientKey(t)
		srv := newTestServer(t, key)
		srv.serveDocker(defaultDockerSocket)
		kh := writeKnownHosts(t, knownHostsLine(srv.addr(), srv.hostKey()))
		inv := parseInventory(t, []string{kh}, machine{name: "a", port: srv.port(), identity: key.path})
		p := newTestPool(t, inv, nil, Config{KeepaliveInterval: 20 * time.Millisecond})

		cli, err := p.Docker("a")
		if err != nil {
			t.Fatalf("Docker: %v", err)
		}
		if _, err := cli.Ping(ctxTimeout(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		srv.dropConnections()
		waitFor(t, "a ping over a new connection", func() bool {
			_, err := cli.Ping(ctxTimeout(t))
			return err == nil && srv.accepts.Load() == 2
		})
	})
}

func TestPool_Client_proxyJump(t *testing.T) {
	t.Run("a machine behind a jump host is reached through it", func(t *testing.T) {
		key := newClientKey(t)
		jump := newTestServer(t, key)
		jump.allowTCPForward.Store(true)
		inner := newTestServer(t, key)
		docker := inner.serveDocker(defaultDockerSocket)
		kh := writeKnownHosts(t,
			knownHostsLine(jump.addr(), jump.hostKey()),
			knownHostsLine(inner.addr(), inner.hostKey()))
		inv := parseInventory(t, []string{kh},
			machine{name: "bastion", port: jump.port(), identity: key.path},
			machine{name: "inner", port: inner.port(), identity: key.path, proxyJump: "bastion"})
		p := newTestPool(t, inv, nil, Config{})

		cli, err := p.Docker("inner")
		if err != nil {
			t.Fatalf("Docker: %v", err)
		}
		if _, err := cli.Ping(ctxTimeout(t)); err != nil {
			t.Fatalf("Ping through the jump host: %v", err)
		}
		if docker.pings.Load() == 0 {
			t.Error("inner daemon saw no ping")
		}
		if n := jump.tcpForwards.Load(); n != 1 {
			t.Errorf("jump host forwarded %d TCP channels, want 1", n)
		}
		if n := inner.handshakes.Load(); n != 1 {
			t.Errorf("inner host completed %d handshakes, want 1", n)
		}
		if n := jump.streamLocalOpened.Load(); n != 0 {
			t.Errorf("jump host opened %d Docker channels, want 0", n)
		}
	})

	t.Run("losing the jump host drops the inner connection and both are redialled", func(t *testing.T) {
		key := newClientKey(t)
		jump := newTestServer(t, key)
		jump.allowTCPForward.Store(true)
		inner := newTestServer(t, key)
		kh := writeKnownHosts(t,
			knownHostsLine(jump.addr(), jump.hostKey()),
			knownHostsLine(inner.addr(), inner.hostKey()))
		inv := parseInventory(t, []string{kh},
			machine{name: "bastion", port: jump.port(), identity: key.path},
			machine{name: "inner", port: inner.port(), identity: key.path, proxyJump: "bastion"})
		p := newTestPool(t, inv, nil, Config{KeepaliveInterval: 20 * time.Millisecond})

		old, err := p.Client(ctxTimeout(t), "inner")
		if err != nil {
			t.Fatalf("Client: %v", err)
		}
		jump.dropConnections()
		waitFor(t, "a new connection through the jump host", func() bool {
			c, err := p.Client(ctxTimeout(t), "inner")
			if err != nil {
				t.Fatalf("Client after the jump host dropped: %v", err)
			}
			return c != old
		})
		if n := jump.accepts.Load(); n != 2 {
			t.Errorf("jump host accepted %d connections, want 2", n)
		}
	})

	t.Run("a jump host that refuses forwarding fails the dial naming it", func(t *testing.T) {
		key := newClientKey(t)
		jump := newTestServer(t, key)
		inner := newTestServer(t, key)
		kh := writeKnownHosts(t,
			knownHostsLine(jump.addr(), jump.hostKey()),
			knownHostsLine(inner.addr(), inner.hostKey()))
		inv := parseInventory(t, []string{kh},
			machine{name: "bastion", port: jump.port(), identity: key.path},
			machine{name: "inner", port: inner.port(), identity: key.path, proxyJump: "bastion"})
		p := newTestPool(t, inv, nil, Config{})

		_, err := p.Client(ctxTimeout(t), "inner")
		var op *OpError
		if !errors.As(err, &op) || op.Machine != "inner" || op.Step != StepConnect {
			t.Fatalf("err = %v, want an OpError for inner at step %q", err, StepConnect)
		}
		if !strings.Contains(err.Error(), "via proxyJump bastion") {
			t.Errorf("err = %q, want it to name the jump host", err)
		}
		if n := inner.accepts.Load(); n != 0 {
			t.Errorf("inner host accepted %d connections, want 0", n)
		}
	})

	t.Run("a jump host with a wrong key is a host key mismatch", func(t *testing.T) {
		key := newClientKey(t)
		jump := newTestServer(t, key)
		jump.allowTCPForward.Store(true)
		inner := newTestServer(t, key)
		kh := writeKnownHosts(t,
			knownHostsLine(jump.addr(), newHostKey(t).PublicKey()),
			knownHostsLine(inner.addr(), inner.hostKey()))
		inv := parseInventory(t, []string{kh},
			machine{name: "bastion", port: jump.port(), identity: key.path},
			machine{name: "inner", port: inner.port(), identity: key.path, proxyJump: "bastion"})
		p := newTestPool(t, inv, nil, Config{})

		_, err := p.Client(ctxTimeout(t), "inner")
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) || mm.Machine != "bastion" {
			t.Fatalf("err = %v, want a HostKeyMismatchError for bastion", err)
		}
		if got := Reason(err); got != "host key mismatch" {
			t.Errorf("Reason = %q, want host key mismatch", got)
		}
	})
}

// silentListener accepts TCP connections and never says anything.
type silentListener struct {
	ln net.Listener
	n  chan net.Conn
}

func newSilentListener(t *testing.T) *silentListener {
	return newRawListener(t, false)
}

// newHangupListener accepts TCP connections and closes them at once.
func newHangupListener(t *testing.T) *silentListener {
	return newRawListener(t, true)
}

func newRawListener(t *testing.T, hangup bool) *silentListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &silentListener{ln: ln, n: make(chan net.Conn, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Count before hanging up, so a client that sees the hang-up
			// also sees the count.
			l.n <- c
			if hangup {
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(l.n)
		for c := range l.n {
			c.Close()
		}
	})
	return l
}

func (l *silentListener) port() int { return l.ln.Addr().(*net.TCPAddr).Port }

// accepts is how many connections were accepted so far.
func (l *silentListener) accepts() int { return len(l.n) }
