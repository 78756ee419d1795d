// Package sshexec reaches fleet's machines: one SSH connection per machine,
// reused by every operation, with verified host keys, keepalives and
// reconnection with backoff, and the Docker API tunnelled over it.
package sshexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"github.com/fleetdev/fleet/inventory"
)

// Config tunes a Pool. The zero value of each field takes its default.
type Config struct {
	// DialTimeout bounds TCP connect plus SSH handshake. Default 2s.
	DialTimeout time.Duration
	// KeepaliveInterval is how often a keepalive is sent. Default 5s.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long a keepalive may go unanswered before
	// the connection is declared dead and closed. Default 15s, as
	// OpenSSH's ServerAliveInterval 5 with ServerAliveCountMax 3: replies
	// queue behind bulk transfers into a busy host, so shorter values
	// kill healthy connections. Fast failure detection is the
	// controller's health ping, not this.
	KeepaliveTimeout time.Duration
	// Backoff spaces reconnection attempts after failures.
	Backoff Backoff
	// HostKeys verifies host keys; required.
	HostKeys *HostKeyPolicy
	// SSHConfig fills in user, port and identity the inventory leaves out.
	SSHConfig SSHConfig
	// Logger receives connection events; default discards.
	Logger *slog.Logger
	// DockerSocket is the Docker socket path on the machines.
	// Default /var/run/docker.sock.
	DockerSocket string
}

func (c *Config) setDefaults() {
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.KeepaliveInterval <= 0 {
		c.KeepaliveInterval = 5 * time.Second
	}
	if c.KeepaliveTimeout <= 0 {
		c.KeepaliveTimeout = 3 * c.KeepaliveInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DockerSocket == "" {
		c.DockerSocket = "/var/run/docker.sock"
	}
}

var errPoolClosed = errors.New("sshexec: pool is closed")

// Pool holds one SSH connection per machine of an inventory, dialled on
// first use and redialled (with backoff) after it breaks.
type Pool struct {
	cfg Config
	inv *inventory.Inventory
	log *slog.Logger

	mu     sync.Mutex
	hosts  map[string]*host
	closed atomic.Bool // read under a host's mu, which Close takes after setting it
}

type host struct {
	name   string
	target *Target

	mu       sync.Mutex // held while dialling, so concurrent callers share one dial
	client   *ssh.Client
	release  func() // closes what the connection holds besides itself (jump host, agent)
	failures int
	lastErr  error
	nextTry  time.Time
	docker   *client.Client
}

// NewPool prepares connections to the machines of inv; nothing is dialled
// until first use.
func NewPool(inv *inventory.Inventory, cfg Config) (*Pool, error) {
	cfg.setDefaults()
	if cfg.HostKeys == nil {
		return nil, errors.New("sshexec: a host key policy is required")
	}
	p := &Pool{cfg: cfg, inv: inv, log: cfg.Logger.With("component", "sshexec"), hosts: map[string]*host{}}
	for _, m := range inv.Machines {
		t, err := Resolve(inv, m, cfg.SSHConfig)
		if err != nil {
			return nil, err
		}
		p.hosts[m.Name] = &host{name: m.Name, target: t}
	}
	return p, nil
}

// Target is how machine name is reached.
func (p *Pool) Target(name string) (*Target, bool) {
	h, ok := p.hosts[name]
	if !ok {
		return nil, false
	}
	return h.target, true
}

func (p *Pool) host(name string) (*host, error) {
	h, ok := p.hosts[name]
	if !ok {
		return nil, fmt.Errorf("machine %q is not in the inventory %s", name, p.inv.Path)
	}
	return h, nil
}

// Client returns the live SSH connection to machine name, dialling it if
// there is none. After a failure, the next dial waits out the backoff if
// ctx allows, else it returns the last error at once.
func (p *Pool) Client(ctx context.Context, name string) (*ssh.Client, error) {
	h, err := p.host(name)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.closed.Load() {
		// Close has passed or is waiting for h.mu: a connection dialled
		// now would never be closed.
		return nil, errPoolClosed
	}
	if h.client != nil {
		return h.client, nil
	}
	if wait := time.Until(h.nextTry); wait > 0 {
		if dl, ok := ctx.Deadline(); ok && dl.Before(h.nextTry) {
			return nil, fmt.Errorf("%w (next attempt in %s)", h.lastErr, wait.Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	c, release, err := p.dial(ctx, h.target)
	if err != nil {
		h.failures++
		h.lastErr = err
		h.nextTry = time.Now().Add(p.cfg.Backoff.Delay(h.failures))
		return nil, err
	}
	h.failures, h.lastErr, h.nextTry = 0, nil, time.Time{}
	h.client, h.release = c, release
	if h.docker != nil {
		h.docker.Close() // idle HTTP connections rode the old tunnel
	}
	p.log.Debug("connected", "machine", name, "address", h.target.Address())
	go p.watch(h, c)
	return c, nil
}

// watch keeps c alive with keepalives and forgets it when it ends, so the
// next Client call redials.
func (p *Pool) watch(h *host, c *ssh.Client) {
	done := make(chan struct{})
	go func() {
		c.Wait()
		close(done)
	}()
	tick := time.NewTicker(p.cfg.KeepaliveInterval)
	defer tick.Stop()
	// One keepalive is outstanding at a time. Its reply can queue behind
	// a channel window of bulk data (an image load into a busy engine), so
	// a slow reply is not a dead connection: only silence for longer than
	// KeepaliveTimeout is.
	var pending chan error
	var sentAt time.Time
	for {
		select {
		case <-done:
			p.forget(h, c, errors.New("connection closed"))
			return
		case err := <-pending:
			pending = nil
			if err != nil {
				p.log.Info("keepalive failed; closing connection", "machine", h.name, "err", err)
				c.Close()
			}
		case now := <-tick.C:
			if pending == nil {
				pending, sentAt = make(chan error, 1), now
				go func(res chan<- error) {
					_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
					res <- err
				}(pending)
			} else if now.Sub(sentAt) > p.cfg.KeepaliveTimeout {
				p.log.Info("no keepalive reply; closing connection", "machine", h.name, "silence", now.Sub(sentAt))
				c.Close()
			}
		}
	}
}

func (p *Pool) forget(h *host, c *ssh.Client, why error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client != c {
		return
	}
	h.client = nil
	if h.release != nil {
		h.release()
		h.release = nil
	}
	h.lastErr = &OpError{Machine: h.name, Address: h.target.Address(), Step: StepConnect, Err: why}
}

// dial connects to t, through its jump host if it has one, and
// authenticates, all within DialTimeout and ctx.
func (p *Pool) dial(ctx context.Context, t *Target) (*ssh.Client, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	fail := func(step string, err error) (*ssh.Client, func(), error) {
		return nil, nil, &OpError{Machine: t.Name, Address: t.Address(), Step: step, Err: err}
	}
	var conn net.Conn
	var jump *ssh.Client
	var jumpRelease func()
	if t.Jump != nil {
		var err error
		jump, jumpRelease, err = p.dial(ctx, t.Jump)
		if err != nil {
			return fail(StepConnect, fmt.Errorf("via proxyJump %s: %w", t.Jump.Name, err))
		}
		conn, err = jump.DialContext(ctx, "tcp", t.Address())
		if err != nil {
			jump.Close()
			jumpRelease()
			return fail(StepConnect, fmt.Errorf("via proxyJump %s: %w", t.Jump.Name, err))
		}
	} else {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "tcp", t.Address())
		if err != nil {
			return fail(StepConnect, err)
		}
	}
	release := func() {
		if jump != nil {
			jump.Close()
			jumpRelease()
		}
	}
	auth, closeAuth, err := authMethods(t.IdentityFile, t.Agent)
	if err != nil {
		conn.Close()
		release()
		return fail(StepAuth, err)
	}
	// The handshake has no context of its own: a deadline on the socket
	// bounds it, and cancellation closes the socket.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              auth,
		HostKeyCallback:   p.cfg.HostKeys.callback(ctx, t.Name),
		HostKeyAlgorithms: p.cfg.HostKeys.algorithms(ctx, t.Address()),
		Timeout:           p.cfg.DialTimeout,
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, t.Address(), cfg)
	closeAuth()
	if !stop() {
		// Cancellation or the deadline closed the socket under the
		// handshake; say which, on one line (errors.Join would add a
		// newline to a status message).
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w: %w", err, ctx.Err())
		}
	}
	if err != nil {
		conn.Close()
		release()
		var mm *HostKeyMismatchError
		switch {
		case errors.As(err, &mm), errors.Is(err, ErrUnknownHost):
			return fail(StepHostKey, err)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return fail(StepAuth, fmt.Errorf("%w (user %q)", err, t.User))
		case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
			return fail(StepHandshake, fmt.Errorf("%w: %w", err, ctx.Err()))
		}
		return fail(StepHandshake, err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), release, nil
}

// Docker returns a Docker API client for machine name whose every
// connection is a channel over the machine's pooled SSH connection.
func (p *Pool) Docker(name string) (*client.Client, error) {
	h, err := p.host(name)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.docker != nil {
		return h.docker, nil
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := p.Client(ctx, name)
		if err != nil {
			return nil, err
		}
		conn, err := c.DialContext(ctx, "unix", p.cfg.DockerSocket)
		if err != nil {
			return nil, &OpError{Machine: name, Address: h.target.Address(), Step: StepDocker,
				Err: fmt.Errorf("open %s: %w", p.cfg.DockerSocket, err)}
		}
		return conn, nil
	}
	// Our own transport: no proxy from the environment (the host name is
	// not real, the dialer decides), and big write buffers, because every
	// write becomes an SSH packet and sshd's cost is per packet: with Go's
	// default 4 KiB, streaming an image into a host cost ~20x the CPU.
	tr := &http.Transport{}
	cli, err := client.NewClientWithOpts(
		client.WithHTTPClient(&http.Client{Transport: tr}),
		client.WithHost("http://"+name+".fleet.invalid"),
		client.WithDialContext(dial),
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", name, err)
	}
	tr.Proxy = nil
	tr.WriteBufferSize = 256 << 10
	tr.ReadBufferSize = 64 << 10
	h.docker = cli
	return cli, nil
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Swap(true) {
		return nil
	}
	for _, h := range p.hosts {
		h.mu.Lock()
		if h.docker != nil {
			h.docker.Close()
		}
		if h.client != nil {
			h.client.Close()
		}
		if h.release != nil {
			h.release()
		}
		// watch's forget must not release the jump host a second time.
		h.client, h.release = nil, nil
		h.mu.Unlock()
	}
	return nil
}
