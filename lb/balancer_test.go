package lb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

func TestBalancer_Update(t *testing.T) {
	t.Run("routes come and go without disturbing an open connection on a kept route", func(t *testing.T) {
		a, bk := namedBackend(t, "a"), namedBackend(t, "b")
		poolA := poolOf("a", RoundRobin, a.addr())
		web := Route{Name: "web", Listen: "127.0.0.1:0", Mode: HTTP, Pool: poolA}
		b := startBalancer(t, Options{}, web)
		c := dialRaw(t, b.Addr("web").String())
		ask := func(want string) {
			t.Helper()
			if _, body := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); body != want {
				t.Fatalf("got %q, want %q", body, want)
			}
		}
		ask("a")

		api := Route{Name: "api", Listen: "127.0.0.1:0", Mode: HTTP, Pool: poolOf("b", RoundRobin, bk.addr())}
		if errs := b.Update([]Route{web, api}); errs != nil {
			t.Fatal(errs)
		}
		apiAddr := b.Addr("api").String()
		if _, body := get(t, client(t), "http://"+apiAddr+"/"); body != "b" {
			t.Errorf("new route answered %q", body)
		}
		ask("a")

		if errs := b.Update([]Route{web}); errs != nil {
			t.Fatal(errs)
		}
		if conn, err := net.Dial("tcp", apiAddr); err == nil {
			conn.Close()
			t.Errorf("removed route still accepts connections")
		}
		ask("a")

		// Re-pointing the kept route to another pool keeps the connection.
		web.Pool = poolOf("b", RoundRobin, bk.addr())
		if errs := b.Update([]Route{web}); errs != nil {
			t.Fatal(errs)
		}
		ask("b")
	})

	t.Run("a listen error names the address and spares the other routes", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		pool := poolOf("a", RoundRobin, namedBackend(t, "a").addr())
		b := New(Options{})
		defer b.Close()
		errs := b.Update([]Route{
			{Name: "bad", Listen: taken.Addr().String(), Mode: HTTP, Pool: pool},
			{Name: "good", Listen: "127.0.0.1:0", Mode: HTTP, Pool: pool},
			{Name: "nopool", Listen: "127.0.0.1:0", Mode: HTTP},
		})
		if err := errs["bad"]; err == nil || !strings.Contains(err.Error(), taken.Addr().String()) || !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("bad route: %v", err)
		}
		if errs["nopool"] == nil {
			t.Errorf("route without a pool: no error")
		}
		if errs["good"] != nil || b.Addr("good") == nil {
			t.Fatalf("good route: %v", errs["good"])
		}
		if _, body := get(t, client(t), "http://"+b.Addr("good").String()+"/"); body != "a" {
			t.Errorf("good route answered %q", body)
		}
	})
}

func TestBalancer_Shutdown(t *testing.T) {
	t.Run("idle connections close and a request in flight finishes", func(t *testing.T) {
		held, release := make(chan string, 1), make(chan struct{})
		bk := holdBackend(t, "a", held, release)
		b := startBalancer(t, Options{}, Route{Name: "web", Listen: "127.0.0.1:0", Mode: HTTP, Pool: poolOf("a", RoundRobin, bk.addr())})
		addr := b.Addr("web").String()
		idle := dialRaw(t, addr)
		idle.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		busy := dialRaw(t, addr)
		io.WriteString(busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
		waitFor(t, held, "the held request")

		stopped := make(chan error)
		go func() { stopped <- b.Shutdown(shutdownCtx(t)) }()
		if _, err := idle.br.ReadByte(); err != io.EOF {
			t.Errorf("idle connection: %v, want EOF", err)
		}
		close(release)
		resp, body := busy.readResponse(t, "GET")
		if resp.StatusCode != 200 || body != "a" || !resp.Close {
			t.Errorf("request in flight: %d %q, close=%v; want 200 a and Connection: close", resp.StatusCode, body, resp.Close)
		}
		if err := waitFor(t, stopped, "Shutdown"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if _, err := net.Dial("tcp", addr); err == nil {
			t.Errorf("listener still open after Shutdown")
		}
		if errs := b.Update(nil); errs != nil {
			t.Errorf("Update(nil) after Shutdown: %v", errs)
		}
		if errs := b.Update([]Route{{Name: "x", Listen: "127.0.0.1:0", Pool: NewPool("x", RoundRobin)}}); !errors.Is(errs["x"], ErrShutdown) {
			t.Errorf("Update after Shutdown: %v", errs)
		}
	})

	t.Run("an expired context closes requests in flight", func(t *testing.T) {
		held, release := make(chan string, 1), make(chan struct{})
		defer close(release)
		bk := holdBackend(t, "a", held, release)
		b := startBalancer(t, Options{}, Route{Name: "web", Listen: "127.0.0.1:0", Mode: HTTP, Pool: poolOf("a", RoundRobin, bk.addr())})
		busy := dialRaw(t, b.Addr("web").String())
		io.WriteString(busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
		waitFor(t, held, "the held request")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown: %v, want context.Canceled", err)
		}
		if _, err := http.ReadResponse(busy.br, nil); err == nil {
			t.Errorf("request in flight got a response after a forced shutdown")
		}
	})
}
