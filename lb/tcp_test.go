package lb

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
)

// tcpBackend listens on loopback and serves each connection with handle,
// in its own goroutine, until the test ends.
func tcpBackend(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
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
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

// echoBackend echoes each connection until its client half-closes, then
// half-closes too.
func echoBackend(t *testing.T) string {
	return tcpBackend(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

func TestBalancer_TCP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs func(t *testing.T) []string
	}{
		{"a connection is echoed and half-closed", func(t *testing.T) []string { return []string{echoBackend(t)} }},
		{"a refused endpoint is skipped", func(t *testing.T) []string { return []string{refusedAddr(t), echoBackend(t)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := poolOf("p", RoundRobin, tc.addrs(t)...)
			b := startBalancer(t, Options{}, Route{Name: "db", Listen: "127.0.0.1:0", Mode: TCP, Pool: pool})
			c := dialRaw(t, b.Addr("db").String())
			payload := make([]byte, 512<<10)
			rand.Read(payload)
			go func() {
				c.Write(payload)
				c.Conn.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				t.Errorf("echo of %d bytes came back as %d different bytes", len(payload), len(got))
			}
		})
	}

	t.Run("no endpoint closes the client connection", func(t *testing.T) {
		b := startBalancer(t, Options{}, Route{Name: "db", Listen: "127.0.0.1:0", Mode: TCP, Pool: poolOf("p", RoundRobin, refusedAddr(t))})
		c := dialRaw(t, b.Addr("db").String())
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read %d, %v; want EOF", n, err)
		}
	})
}
