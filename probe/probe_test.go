package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/fleetdev/fleet/spec"
)

const (
	testMachine = "m1"
	testID      = "0123456789abcdef0123456789abcdef"
)

// localDial reaches addr from the test process, as if from machine m1.
func localDial(ctx context.Context, machine, network, addr string) (net.Conn, error) {
	if machine != testMachine {
		return nil, fmt.Errorf("no machine %q", machine)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func port(n int) spec.IntOrString        { return spec.IntOrString{Int: n} }
func named(name string) spec.IntOrString { return spec.IntOrString{Str: name, IsStr: true} }

func target(ports ...spec.ContainerPort) Target {
	return Target{Machine: testMachine, ContainerID: testID, IP: "127.0.0.1", Ports: ports}
}

// portOf is the port of a listener's address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := portOf(t, ln.Addr().String())
	ln.Close()
	return p
}

func checkResult(t *testing.T, got Result, wantOK bool, wantMsg []string) {
	t.Helper()
	if got.OK != wantOK {
		t.Fatalf("OK = %v, want %v (message %q)", got.OK, wantOK, got.Message)
	}
	if wantOK && got.Message != "" {
		t.Errorf("Message = %q, want empty", got.Message)
	}
	if !wantOK && got.Message == "" {
		t.Errorf("Message is empty")
	}
	for _, w := range wantMsg {
		if !strings.Contains(got.Message, w) {
			t.Errorf("Message = %q, want it to contain %q", got.Message, w)
		}
	}
}

func TestRunner_Run(t *testing.T) {
	tests := []struct {
		name    string
		runner  *Runner
		probe   *spec.Probe
		target  Target
		wantMsg string
	}{
		{
			name:    "a nil probe has no handler",
			runner:  &Runner{Dial: localDial},
			target:  target(),
			wantMsg: "probe has no handler",
		},
		{
			name:    "a nil runner fails instead of panicking",
			probe:   &spec.Probe{TCPSocket: &spec.TCPSocketAction{Port: port(80)}},
			target:  target(),
			wantMsg: "dial tcp 127.0.0.1:80: no dialer",
		},
		{
			name:    "a probe without a handler fails",
			runner:  &Runner{Dial: localDial},
			probe:   &spec.Probe{TimeoutSeconds: 1},
			target:  target(),
			wantMsg: "probe has no handler",
		},
		{
			name:    "a target without an address fails naming the container",
			runner:  &Runner{Dial: localDial},
			probe:   &spec.Probe{HTTPGet: &spec.HTTPGetAction{Port: port(80)}},
			target:  Target{Machine: testMachine, ContainerID: testID},
			wantMsg: "no address for container 0123456789ab on m1",
		},
		{
			name:    "port 0 is invalid",
			runner:  &Runner{Dial: localDial},
			probe:   &spec.Probe{TCPSocket: &spec.TCPSocketAction{}},
			target:  target(),
			wantMsg: "invalid port number: 0",
		},
		{
			name:    "a port above 65535 is invalid",
			runner:  &Runner{Dial: localDial},
			probe:   &spec.Probe{TCPSocket: &spec.TCPSocketAction{Port: port(70000)}},
			target:  target(),
			wantMsg: "invalid port number: 70000",
		},
		{
			name:    "a named port that resolves out of range is invalid",
			runner:  &Runner{Dial: localDial},
			probe:   &spec.Probe{TCPSocket: &spec.TCPSocketAction{Port: named("web")}},
			target:  target(spec.ContainerPort{Name: "web"}),
			wantMsg: "invalid port number: 0",
		},
		{
			name:    "an unknown scheme fails",
			runner:  &Runner{Dial: localDial},
			probe:   &spec.Probe{HTTPGet: &spec.HTTPGetAction{Port: port(80), Scheme: "GOPHER"}},
			target:  target(),
			wantMsg: `unsupported scheme "GOPHER"`,
		},
		{
			name:    "an httpGet probe without a dialer fails",
			runner:  &Runner{},
			probe:   &spec.Probe{HTTPGet: &spec.HTTPGetAction{Port: port(80)}},
			target:  target(),
			wantMsg: "no dialer for 127.0.0.1:80",
		},
		{
			name:    "a tcpSocket probe without a dialer fails",
			runner:  &Runner{},
			probe:   &spec.Probe{TCPSocket: &spec.TCPSocketAction{Port: port(80)}},
			target:  target(),
			wantMsg: "dial tcp 127.0.0.1:80: no dialer",
		},
		{
			name:    "an exec probe without Docker fails",
			runner:  &Runner{},
			probe:   &spec.Probe{Exec: &spec.ExecAction{Command: []string{"true"}}},
			target:  target(),
			wantMsg: "no Docker API for m1",
		},
		{
			name:    "an exec probe without a command fails",
			runner:  &Runner{Docker: func(string) (Docker, error) { return &fakeDocker{}, nil }},
			probe:   &spec.Probe{Exec: &spec.ExecAction{}},
			target:  target(),
			wantMsg: "exec probe has no command",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.runner.Run(t.Context(), tt.probe, tt.target)
			if got.OK || got.Message != tt.wantMsg {
				t.Errorf("Run() = %+v, want failure %q", got, tt.wantMsg)
			}
		})
	}
}

func TestRunner_Run_httpGet(t *testing.T) {
	t.Parallel()
	ok := func(w http.ResponseWriter, r *http.Request) {}
	closed := closedPort(t)
	get := func(path string) func(int) spec.HTTPGetAction {
		return func(p int) spec.HTTPGetAction { return spec.HTTPGetAction{Path: path, Port: port(p)} }
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		tls     bool
		timeout int
		action  func(port int) spec.HTTPGetAction
		ports   func(port int) []spec.ContainerPort
		wantOK  bool
		wantMsg []string
		check   func(t *testing.T, r *http.Request) // the request the server saw
	}{
		{
			name:    "a 200 passes",
			handler: ok,
			action:  get("/healthz"),
			wantOK:  true,
			check: func(t *testing.T, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/healthz" {
					t.Errorf("request = %s %s, want GET /healthz", r.Method, r.URL)
				}
			},
		},
		{
			name: "a 302 passes without being followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/" {
					t.Errorf("redirect to %s followed", r.URL.Path)
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			},
			action: get(""),
			wantOK: true,
		},
		{
			name: "a 500 fails with its status",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "sick", http.StatusInternalServerError)
			},
			action:  get("/"),
			wantMsg: []string{"HTTP probe failed with statuscode: 500"},
		},
		{
			name: "a large body is not a failure",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(strings.Repeat("x", 1<<20)))
			},
			action: get("/"),
			wantOK: true,
		},
		{
			name: "a handler slower than the timeout fails at the deadline",
			handler: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			timeout: 1,
			action:  get("/slow"),
			wantMsg: []string{`Get "http://127.0.0.1:`, `/slow": context deadline exceeded`},
		},
		{
			name:    "HTTPS passes without verifying the certificate",
			handler: ok,
			tls:     true,
			action: func(p int) spec.HTTPGetAction {
				return spec.HTTPGetAction{Port: port(p), Scheme: "HTTPS"}
			},
			wantOK: true,
			check: func(t *testing.T, r *http.Request) {
				if r.TLS == nil {
					t.Error("request was not over TLS")
				}
			},
		},
		{
			name:    "headers are sent and a Host header sets the host",
			handler: ok,
			action: func(p int) spec.HTTPGetAction {
				return spec.HTTPGetAction{Port: port(p), HTTPHeaders: []spec.HTTPHeader{
					{Name: "X-Probe", Value: "a"}, {Name: "X-Probe", Value: "b"}, {Name: "Host", Value: "example.test"},
				}}
			},
			wantOK: true,
			check: func(t *testing.T, r *http.Request) {
				if r.Host != "example.test" {
					t.Errorf("Host = %q, want example.test", r.Host)
				}
				if got := r.Header.Values("X-Probe"); !slices.Equal(got, []string{"a", "b"}) {
					t.Errorf("X-Probe = %q, want [a b]", got)
				}
				if got := r.Header.Get("User-Agent"); got != "fleet-probe/1.0" {
					t.Errorf("User-Agent = %q, want fleet-probe/1.0", got)
				}
				if got := r.Header.Get("Accept"); got != "*/*" {
					t.Errorf("Accept = %q, want */*", got)
				}
			},
		},
		{
			name:    "a header replaces the User-Agent",
			handler: ok,
			action: func(p int) spec.HTTPGetAction {
				return spec.HTTPGetAction{Port: port(p), HTTPHeaders: []spec.HTTPHeader{{Name: "User-Agent", Value: "mine"}}}
			},
			wantOK: true,
			check: func(t *testing.T, r *http.Request) {
				if got := r.Header.Values("User-Agent"); !slices.Equal(got, []string{"mine"}) {
					t.Errorf("User-Agent = %q, want [mine]", got)
				}
			},
		},
		{
			name:    "a path without a slash keeps its query",
			handler: ok,
			action:  get("healthz?full=1"),
			wantOK:  true,
			check: func(t *testing.T, r *http.Request) {
				if r.URL.Path != "/healthz" || r.URL.RawQuery != "full=1" {
					t.Errorf("URL = %s, want /healthz?full=1", r.URL)
				}
			},
		},
		{
			name:    "a named port resolves to the container's port",
			handler: ok,
			action: func(int) spec.HTTPGetAction {
				return spec.HTTPGetAction{Port: named("web")}
			},
			ports: func(p int) []spec.ContainerPort {
				return []spec.ContainerPort{{Name: "metrics", ContainerPort: 1}, {Name: "web", ContainerPort: p}}
			},
			wantOK: true,
		},
		{
			name:    "a missing port name fails naming it",
			handler: ok,
			action: func(int) spec.HTTPGetAction {
				return spec.HTTPGetAction{Port: named("admin")}
			},
			ports: func(p int) []spec.ContainerPort {
				return []spec.ContainerPort{{Name: "web", ContainerPort: p}}
			},
			wantMsg: []string{`no port named "admin" on container 0123456789ab`},
		},
		{
			name:    "a refused connection fails naming the URL",
			handler: ok,
			action: func(int) spec.HTTPGetAction {
				return spec.HTTPGetAction{Path: "/healthz", Port: port(closed)}
			},
			wantMsg: []string{`Get "http://127.0.0.1:`, "/healthz", "connection refused"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seen := make(chan *http.Request, 1)
			h := func(w http.ResponseWriter, r *http.Request) {
				select {
				case seen <- r.Clone(context.Background()):
				default:
				}
				tt.handler(w, r)
			}
			var srv *httptest.Server
			if tt.tls {
				srv = httptest.NewTLSServer(http.HandlerFunc(h))
			} else {
				srv = httptest.NewServer(http.HandlerFunc(h))
			}
			defer srv.Close()
			p := portOf(t, srv.Listener.Addr().String())
			a := tt.action(p)
			tgt := target()
			if tt.ports != nil {
				tgt.Ports = tt.ports(p)
			}

			r := &Runner{Dial: localDial}
			got := r.Run(t.Context(), &spec.Probe{HTTPGet: &a, TimeoutSeconds: tt.timeout}, tgt)
			checkResult(t, got, tt.wantOK, tt.wantMsg)
			if tt.check != nil {
				select {
				case req := <-seen:
					tt.check(t, req)
				default:
					t.Error("the server saw no request")
				}
			}
		})
	}
}

func TestRunner_Run_tcpSocket(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := portOf(t, ln.Addr().String())
	closed := closedPort(t)

	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	tests := []struct {
		name    string
		dial    Dialer
		port    spec.IntOrString
		ports   []spec.ContainerPort
		wantOK  bool
		wantMsg []string
	}{
		{
			name:   "an open port passes",
			port:   port(open),
			wantOK: true,
		},
		{
			name:    "a refused port fails naming the address",
			port:    port(closed),
			wantMsg: []string{fmt.Sprintf("dial tcp 127.0.0.1:%d", closed), "connection refused"},
		},
		{
			name:   "a named port resolves to the container's port",
			port:   named("db"),
			ports:  []spec.ContainerPort{{Name: "db", ContainerPort: open}},
			wantOK: true,
		},
		{
			name:    "a missing port name fails naming it",
			port:    named("db"),
			ports:   []spec.ContainerPort{{Name: "web", ContainerPort: open}},
			wantMsg: []string{`no port named "db" on container 0123456789ab`},
		},
		{
			name: "a dial error is made to name the address",
			dial: func(context.Context, string, string, string) (net.Conn, error) {
				return nil, errors.New("ssh: rejected: connect failed (Connection refused)")
			},
			port:    port(80),
			wantMsg: []string{"dial tcp 127.0.0.1:80: ssh: rejected: connect failed (Connection refused)"},
		},
		{
			name: "a dialer that ignores the context is cut off at the timeout",
			dial: func(context.Context, string, string, string) (net.Conn, error) {
				<-stuck
				return nil, errors.New("released")
			},
			port:    port(80),
			wantMsg: []string{"dial tcp 127.0.0.1:80: context deadline exceeded"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &Runner{Dial: tt.dial}
			if r.Dial == nil {
				r.Dial = localDial
			}
			got := r.Run(t.Context(), &spec.Probe{TCPSocket: &spec.TCPSocketAction{Port: tt.port}}, target(tt.ports...))
			checkResult(t, got, tt.wantOK, tt.wantMsg)
		})
	}
}

// fakeDocker is one machine's Docker API running one exec, whose every
// call can fail.
type fakeDocker struct {
	createErr  error
	attachErr  error
	inspectErr error
	stdout     string
	stderr     string
	hang       bool                    // the attach stream never ends
	inspects   []container.ExecInspect // in turn; the last repeats

	mu       sync.Mutex
	created  container.ExecOptions
	inspectN int
	daemon   net.Conn // Docker's end of the attach stream
}

func (f *fakeDocker) ContainerExecCreate(ctx context.Context, id string, o container.ExecOptions) (container.ExecCreateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != testID {
		return container.ExecCreateResponse{}, fmt.Errorf("No such container: %s", id)
	}
	f.created = o
	if f.createErr != nil {
		return container.ExecCreateResponse{}, f.createErr
	}
	return container.ExecCreateResponse{ID: "exec1"}, nil
}

func (f *fakeDocker) ContainerExecAttach(ctx context.Context, execID string, o container.ExecAttachOptions) (types.HijackedResponse, error) {
	if f.attachErr != nil {
		return types.HijackedResponse{}, f.attachErr
	}
	ours, theirs := net.Pipe()
	f.mu.Lock()
	f.daemon = theirs
	f.mu.Unlock()
	if !f.hang {
		go func() {
			defer theirs.Close()
			stdcopy.NewStdWriter(theirs, stdcopy.Stdout).Write([]byte(f.stdout))
			stdcopy.NewStdWriter(theirs, stdcopy.Stderr).Write([]byte(f.stderr))
		}()
	}
	return types.NewHijackedResponse(ours, "application/vnd.docker.multiplexed-stream"), nil
}

func (f *fakeDocker) ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inspectErr != nil {
		return container.ExecInspect{}, f.inspectErr
	}
	if len(f.inspects) == 0 {
		return container.ExecInspect{ExecID: execID}, nil
	}
	i := min(f.inspectN, len(f.inspects)-1)
	f.inspectN++
	return f.inspects[i], nil
}

func TestRunner_Run_exec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		docker    *fakeDocker
		dockerErr error
		command   []string
		cancel    bool // the caller gives up before the attempt starts
		wantOK    bool
		wantMsg   string
	}{
		{
			name:    "a command that exits 0 passes",
			docker:  &fakeDocker{stdout: "fine\n"},
			command: []string{"cat", "/tmp/healthy"},
			wantOK:  true,
		},
		{
			name: "a command that exits 1 fails with its output",
			docker: &fakeDocker{
				stderr:   "cat: /tmp/healthy: No such file or directory\n",
				inspects: []container.ExecInspect{{ExitCode: 1}},
			},
			command: []string{"cat", "/tmp/healthy"},
			wantMsg: `command "cat /tmp/healthy" exited with 1: cat: /tmp/healthy: No such file or directory`,
		},
		{
			name: "only the first 256 bytes of output are kept",
			docker: &fakeDocker{
				stdout:   strings.Repeat("o", 200),
				stderr:   strings.Repeat("e", 200),
				inspects: []container.ExecInspect{{ExitCode: 2}},
			},
			command: []string{"check"},
			wantMsg: `command "check" exited with 2: ` + strings.Repeat("o", 200) + strings.Repeat("e", 56),
		},
		{
			name: "an exec still running after its output ends is inspected again",
			docker: &fakeDocker{inspects: []container.ExecInspect{
				{Running: true}, {ExitCode: 3},
			}},
			command: []string{"check"},
			wantMsg: `command "check" exited with 3`,
		},
		{
			name:      "an unreachable Docker fails naming the machine",
			dockerErr: errors.New("ssh: handshake failed"),
			command:   []string{"true"},
			wantMsg:   "docker on m1: ssh: handshake failed",
		},
		{
			name:    "a failed exec create fails naming the container",
			docker:  &fakeDocker{createErr: errors.New("container is not running")},
			command: []string{"true"},
			wantMsg: "create exec in container 0123456789ab on m1: container is not running",
		},
		{
			name:    "a failed attach fails naming the container",
			docker:  &fakeDocker{attachErr: errors.New("connection reset")},
			command: []string{"true"},
			wantMsg: "start exec in container 0123456789ab on m1: connection reset",
		},
		{
			name:    "a failed inspect fails naming the container",
			docker:  &fakeDocker{inspectErr: errors.New("no such exec")},
			command: []string{"true"},
			wantMsg: "inspect exec in container 0123456789ab on m1: no such exec",
		},
		{
			name:    "a stream that never ends times out",
			docker:  &fakeDocker{hang: true},
			command: []string{"sleep", "100"},
			wantMsg: `command "sleep 100" timed out after 1s`,
		},
		{
			name:    "a caller giving up is not a timeout",
			docker:  &fakeDocker{hang: true},
			command: []string{"sleep", "100"},
			cancel:  true,
			wantMsg: "read exec output in container 0123456789ab on m1: context canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &Runner{Docker: func(machine string) (Docker, error) {
				if machine != testMachine {
					return nil, fmt.Errorf("no machine %q", machine)
				}
				if tt.dockerErr != nil {
					return nil, tt.dockerErr
				}
				return tt.docker, nil
			}}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			got := r.Run(ctx, &spec.Probe{Exec: &spec.ExecAction{Command: tt.command}}, target())
			if got.OK != tt.wantOK || got.Message != tt.wantMsg {
				t.Errorf("Run() = %+v, want OK %v and message %q", got, tt.wantOK, tt.wantMsg)
			}
			if tt.docker == nil {
				return
			}
			tt.docker.mu.Lock()
			created, daemon := tt.docker.created, tt.docker.daemon
			tt.docker.mu.Unlock()
			if !slices.Equal(created.Cmd, tt.command) || !created.AttachStdout || !created.AttachStderr || created.Tty {
				t.Errorf("exec created with %+v, want Cmd %q attaching stdout and stderr without a tty", created, tt.command)
			}
			if daemon != nil {
				// The attempt must not leave the stream open on the machine.
				daemon.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := daemon.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, io.ErrClosedPipe) {
					t.Errorf("attach stream still open after Run: read = %v", err)
				}
			}
		})
	}
}
