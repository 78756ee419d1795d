package sshexec

// Test support: an in-process SSH server with a fake Docker daemon behind
// it, client keys, known_hosts files, inventories and an in-memory PinStore.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fleetdev/fleet/inventory"
	"github.com/fleetdev/fleet/store"
)

// defaultDockerSocket is where the pool looks for Docker unless told
// otherwise; the test server maps it to its fake daemon.
const defaultDockerSocket = "/var/run/docker.sock"

// newHostKey returns a fresh ed25519 host key.
func newHostKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newECDSAHostKey returns a fresh ECDSA P-256 host key, a type the client
// prefers over ed25519 when it has no preference of its own.
func newECDSAHostKey(t *testing.T) ssh.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clientKey is a client identity written to an OpenSSH private key file.
type clientKey struct {
	path string
	pub  ssh.PublicKey
}

func newClientKey(t *testing.T) clientKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "fleet test")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{path: path, pub: sshPub}
}

// testServer is an SSH server on 127.0.0.1 that authorises one client key,
// answers keepalives, forwards direct-streamlocal channels for the Docker
// socket to a fake daemon and, when allowed, direct-tcpip channels to any
// TCP address.
type testServer struct {
	t          *testing.T
	ln         net.Listener
	authorized ssh.PublicKey

	mu       sync.Mutex
	hostKeys []ssh.Signer
	sockets  map[string]string // socket path asked for -> local unix socket
	conns    []net.Conn

	allowTCPForward   atomic.Bool
	dropKeepalives    atomic.Bool
	accepts           atomic.Int32 // TCP connections accepted
	handshakes        atomic.Int32 // SSH handshakes completed
	keepalives        atomic.Int32 // keepalive requests answered
	tcpForwards       atomic.Int32 // direct-tcpip channels opened
	streamLocalOpened atomic.Int32 // direct-streamlocal channels opened

	wg sync.WaitGroup
}

// newTestServer starts a server with one ed25519 host key, authorising
// client.
func newTestServer(t *testing.T, client clientKey) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{
		t: t, ln: ln, authorized: client.pub,
		hostKeys: []ssh.Signer{newHostKey(t)},
		sockets:  map[string]string{},
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

// addr is host:port, as a Target's Address.
func (s *testServer) addr() string { return s.ln.Addr().String() }

// keyAddress is where the server's key is pinned, as KeyAddress gives it
// for a target naming the server.
func keyAddress(s *testServer) string {
	return KeyAddress(&Target{Host: "127.0.0.1", Port: s.port()})
}

func (s *testServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// hostKey is the server's first host key.
func (s *testServer) hostKey() ssh.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostKeys[0].PublicKey()
}

// hostSigner is the server's first host key, private half included.
func (s *testServer) hostSigner() ssh.Signer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostKeys[0]
}

// setHostKeys replaces the server's host keys for connections accepted
// from now on, as a reinstalled host (or an impostor on its address) would.
func (s *testServer) setHostKeys(keys ...ssh.Signer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hostKeys = keys
}

// serveDocker starts a fake Docker daemon and makes path on this server
// lead to it.
func (s *testServer) serveDocker(path string) *fakeDocker {
	d := newFakeDocker(s.t)
	s.mu.Lock()
	s.sockets[path] = d.socket
	s.mu.Unlock()
	return d
}

// dropConnections closes the server side of every SSH connection, as a
// crashed sshd or a cut network would.
func (s *testServer) dropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *testServer) close() {
	s.ln.Close()
	s.dropConnections()
	s.wg.Wait()
}

func (s *testServer) config() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(s.authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.hostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

func (s *testServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepts.Add(1)
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *testServer) handle(c net.Conn) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config())
	if err != nil {
		return
	}
	defer sc.Close()
	s.handshakes.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for r := range reqs {
			switch {
			case r.Type == "keepalive@openssh.com" && s.dropKeepalives.Load():
				// Leave it unanswered, as a hung host would.
			case r.Type == "keepalive@openssh.com":
				s.keepalives.Add(1)
				r.Reply(true, nil)
			default:
				r.Reply(false, nil)
			}
		}
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "direct-streamlocal@openssh.com":
			var m struct {
				Path      string
				Reserved0 string
				Reserved1 uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			s.mu.Lock()
			local, ok := s.sockets[m.Path]
			s.mu.Unlock()
			if !ok {
				nc.Reject(ssh.ConnectionFailed, "no such socket: "+m.Path)
				continue
			}
			s.streamLocalOpened.Add(1)
			s.forward(nc, "unix", local)
		case "direct-tcpip":
			if !s.allowTCPForward.Load() {
				nc.Reject(ssh.Prohibited, "TCP forwarding is disabled")
				continue
			}
			var m struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			s.tcpForwards.Add(1)
			s.forward(nc, "tcp", net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))))
		default:
			nc.Reject(ssh.UnknownChannelType, "not supported")
		}
	}
}

// forward connects a new channel to network/address and copies both ways.
func (s *testServer) forward(nc ssh.NewChannel, network, address string) {
	conn, err := net.Dial(network, address)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	s.mu.Lock()
	s.conns = append(s.conns, conn)
	s.mu.Unlock()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		io.Copy(conn, ch)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	go func() {
		defer s.wg.Done()
		io.Copy(ch, conn)
		ch.CloseWrite()
		ch.Close()
		conn.Close()
	}()
}

// fakeDocker answers the few Docker API calls fleet makes first, on a unix
// socket.
type fakeDocker struct {
	socket string
	pings  atomic.Int32
	infos  atomic.Int32
}

func newFakeDocker(t *testing.T) *fakeDocker {
	t.Helper()
	// Unix socket paths are limited to about 100 bytes; t.TempDir can be
	// longer.
	dir, err := os.MkdirTemp("", "sshexec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &fakeDocker{socket: filepath.Join(dir, "docker.sock")}
	ln, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		d.pings.Add(1)
		w.Header().Set("Api-Version", "1.47")
		w.Header().Set("Ostype", "linux")
		w.Header().Set("Cache-Control", "no-cache")
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("GET /{version}/info", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.PathValue("version"), "v") {
			http.NotFound(w, r)
			return
		}
		d.infos.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"Name":"fake","ServerVersion":"28.5.2","NCPU":4,"MemTotal":8589934592}`)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d
}

// writeKnownHosts writes a known_hosts file holding lines and returns its
// path.
func writeKnownHosts(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// knownHostsLine is the known_hosts line for key at address host:port.
func knownHostsLine(address string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(address)}, key)
}

// machine is one inventory entry for a test inventory.
type machine struct {
	name      string
	port      int
	identity  string
	proxyJump string
}

// parseInventory builds an inventory through inventory.Parse, every
// machine on 127.0.0.1 as user fleet.
func parseInventory(t *testing.T, knownHosts []string, machines ...machine) *inventory.Inventory {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: fleet/v1\nkind: Inventory\n")
	if len(knownHosts) > 0 {
		b.WriteString("knownHosts:\n")
		for _, f := range knownHosts {
			fmt.Fprintf(&b, "  - %s\n", f)
		}
	}
	b.WriteString("machines:\n")
	for _, m := range machines {
		fmt.Fprintf(&b, "  - name: %s\n    address: 127.0.0.1\n    port: %d\n    user: fleet\n    identityFile: %s\n",
			m.name, m.port, m.identity)
		if m.proxyJump != "" {
			fmt.Fprintf(&b, "    proxyJump: %s\n", m.proxyJump)
		}
	}
	inv, err := inventory.Parse(filepath.Join(t.TempDir(), "inventory.yaml"), []byte(b.String()))
	if err != nil {
		t.Fatalf("parse inventory: %v\n%s", err, b.String())
	}
	return inv
}

// newTestPool makes a pool over inv with pins (nil: none) and small
// timeouts, closed when the test ends.
func newTestPool(t *testing.T, inv *inventory.Inventory, pins PinStore, cfg Config) *Pool {
	t.Helper()
	policy, err := NewHostKeyPolicy(inv.KnownHosts, pins)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HostKeys = policy
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	p, err := NewPool(inv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// memPins is an in-memory PinStore that can be made to fail.
type memPins struct {
	mu   sync.Mutex
	keys map[string]store.HostKey
	err  error // returned by every call when set
	pins int   // successful PinHostKey calls that stored a key
}

func newMemPins() *memPins { return &memPins{keys: map[string]store.HostKey{}} }

func (m *memPins) HostKey(_ context.Context, address string) (store.HostKey, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return store.HostKey{}, false, m.err
	}
	hk, ok := m.keys[address]
	return hk, ok, nil
}

func (m *memPins) PinHostKey(_ context.Context, hk store.HostKey) (store.HostKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return store.HostKey{}, m.err
	}
	if old, ok := m.keys[hk.Address]; ok {
		return old, nil
	}
	m.keys[hk.Address] = hk
	m.pins++
	return hk, nil
}

func (m *memPins) get(address string) (store.HostKey, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hk, ok := m.keys[address]
	return hk, ok
}

// waitFor polls cond until it holds, failing the test if it does not
// within a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ctxTimeout is a context for one test step, with a generous deadline.
func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
