package lb

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// holdBackend answers /hold only when released, announcing on held that it
// holds a request; other paths answer its name at once.
func holdBackend(t *testing.T, name string, held chan<- string, release <-chan struct{}, configure ...func(*http.Server)) *backend {
	return newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held <- name
			<-release
		}
		io.WriteString(w, name)
	}), configure...)
}

func TestBalancer_HTTPBalancing(t *testing.T) {
	t.Run("round-robin spreads requests evenly over the endpoints", func(t *testing.T) {
		names := []string{"a", "b", "c"}
		var addrs []string
		for _, n := range names {
			addrs = append(addrs, namedBackend(t, n).addr())
		}
		_, addr := httpRoute(t, poolOf("p", RoundRobin, addrs...))
		c := client(t)
		got := map[string]int{}
		for range 300 {
			code, body := get(t, c, "http://"+addr+"/")
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			got[body]++
		}
		for _, n := range names {
			if got[n] != 100 {
				t.Errorf("endpoint %s got %d of 300 requests, want 100 (all: %v)", n, got[n], got)
			}
		}
	})

	t.Run("least-connections prefers the idle endpoint", func(t *testing.T) {
		held, release := make(chan string, 2), make(chan struct{})
		a := holdBackend(t, "a", held, release)
		bk := holdBackend(t, "b", held, release)
		pool := poolOf("p", LeastConnections, a.addr(), bk.addr())
		_, addr := httpRoute(t, pool)
		done := make(chan string)
		go func() {
			_, body := get(t, client(t), "http://"+addr+"/hold")
			done <- body
		}()
		busy := waitFor(t, held, "the held request to reach an endpoint")
		idle := map[string]string{"a": "b", "b": "a"}[busy]
		c := client(t)
		for range 20 {
			if _, body := get(t, c, "http://"+addr+"/"); body != idle {
				t.Fatalf("request went to %s, busy with a held request; want %s", body, idle)
			}
		}
		close(release)
		if body := waitFor(t, done, "the held request"); body != busy {
			t.Errorf("held request answered by %q, want %q", body, busy)
		}
	})
}

func TestPool_SetDrains(t *testing.T) {
	t.Run("an endpoint removed mid-request finishes it while new requests go elsewhere", func(t *testing.T) {
		held, release := make(chan string, 2), make(chan struct{})
		closed := map[string]chan struct{}{"a": make(chan struct{}, 8), "b": make(chan struct{}, 8)}
		backends := map[string]*backend{}
		for _, n := range []string{"a", "b"} {
			ch := closed[n]
			backends[n] = holdBackend(t, n, held, release, func(s *http.Server) {
				s.ConnState = func(_ net.Conn, s http.ConnState) {
					if s == http.StateClosed {
						ch <- struct{}{}
					}
				}
			})
		}
		pool := poolOf("p", RoundRobin, backends["a"].addr(), backends["b"].addr())
		_, addr := httpRoute(t, pool)
		done := make(chan string)
		go func() {
			code, body := get(t, client(t), "http://"+addr+"/hold")
			done <- fmt.Sprint(code, " ", body)
		}()
		gone := waitFor(t, held, "the held request to reach an endpoint")
		kept := map[string]string{"a": "b", "b": "a"}[gone]
		pool.Set([]string{backends[kept].addr()})
		c := client(t)
		for range 10 {
			if _, body := get(t, c, "http://"+addr+"/"); body != kept {
				t.Fatalf("request went to removed endpoint %s", body)
			}
		}
		close(release)
		if got := waitFor(t, done, "the drained request"); got != "200 "+gone {
			t.Errorf("drained request got %q, want %q", got, "200 "+gone)
		}
		// Its upstream connection is closed, not kept idle.
		waitFor(t, closed[gone], "the removed endpoint's connection to close")
		for _, e := range pool.Endpoints() {
			if e.Addr == backends[gone].addr() {
				t.Errorf("removed endpoint still listed: %+v", e)
			}
		}
	})
}

func TestBalancer_HTTPFailures(t *testing.T) {
	t.Run("a refused endpoint is ejected and the request succeeds on another", func(t *testing.T) {
		dead := refusedAddr(t)
		good := namedBackend(t, "good")
		pool := poolOf("p", RoundRobin, dead, good.addr())
		_, addr := httpRoute(t, pool)
		c := client(t)
		for range 10 {
			if code, body := get(t, c, "http://"+addr+"/"); code != 200 || body != "good" {
				t.Fatalf("got %d %q, want 200 good", code, body)
			}
		}
		st := pool.Endpoints()
		if st[0].Healthy || !st[1].Healthy {
			t.Errorf("health: %+v; want the refused endpoint ejected", st)
		}
		if st[0].Requests != 1 {
			t.Errorf("ejected endpoint tried %d times, want 1", st[0].Requests)
		}
	})

	// hangup reads a request and closes the connection unanswered.
	hangup := func(t *testing.T) (*backend, *atomic.Int64) {
		var n atomic.Int64
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			n.Add(1)
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}))
		return bk, &n
	}

	t.Run("a POST is not retried after its bytes were sent", func(t *testing.T) {
		bad, badN := hangup(t)
		var goodN atomic.Int64
		good := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			goodN.Add(1)
			io.WriteString(w, "good")
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bad.addr(), good.addr()))
		resp, err := client(t).Post("http://"+addr+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || !strings.Contains(string(body), "web") {
			t.Errorf("got %d %q, want 502 naming the route", resp.StatusCode, body)
		}
		if badN.Load() != 1 || goodN.Load() != 0 {
			t.Errorf("the hanging endpoint saw %d requests and the good one %d; want 1 and 0", badN.Load(), goodN.Load())
		}
	})

	t.Run("a GET is retried on another endpoint when the first hangs up", func(t *testing.T) {
		bad, badN := hangup(t)
		good := namedBackend(t, "good")
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bad.addr(), good.addr()))
		if code, body := get(t, client(t), "http://"+addr+"/"); code != 200 || body != "good" {
			t.Errorf("got %d %q, want 200 good", code, body)
		}
		if badN.Load() != 1 {
			t.Errorf("the hanging endpoint saw %d requests, want 1", badN.Load())
		}
	})

	t.Run("no endpoints answer 503 naming the pool", func(t *testing.T) {
		_, addr := httpRoute(t, NewPool("p", RoundRobin))
		code, body := get(t, client(t), "http://"+addr+"/")
		if code != 503 || body != "no ready endpoints for p\n" {
			t.Errorf("got %d %q", code, body)
		}
	})

	t.Run("every endpoint refusing answers 502 naming the route and the error", func(t *testing.T) {
		_, addr := httpRoute(t, poolOf("p", RoundRobin, refusedAddr(t), refusedAddr(t)))
		c := client(t)
		for range 3 { // the keep-alive connection survives a 502
			code, body := get(t, c, "http://"+addr+"/")
			if code != 502 || !strings.Contains(body, "web") || !strings.Contains(body, "refused") {
				t.Errorf("got %d %q", code, body)
			}
		}
	})

	t.Run("a dead idle upstream connection is replaced without failing the request", func(t *testing.T) {
		var conns []net.Conn
		var mu sync.Mutex
		bk := namedBackend(t, "a", func(s *http.Server) {
			s.ConnState = func(c net.Conn, s http.ConnState) {
				if s == http.StateNew {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}
		})
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := client(t)
		get(t, c, "http://"+addr+"/")
		mu.Lock()
		for _, conn := range conns { // the endpoint closes its idle connections
			conn.Close()
		}
		mu.Unlock()
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, "http://"+addr+"/", strings.NewReader("x"))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s after the endpoint closed idle connections: status %d", method, resp.StatusCode)
			}
			mu.Lock()
			for _, conn := range conns {
				conn.Close()
			}
			mu.Unlock()
		}
	})
}

func TestBalancer_HTTPBodies(t *testing.T) {
	t.Run("chunked request and response bodies pass through intact", func(t *testing.T) {
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.TransferEncoding) == 0 || r.TransferEncoding[0] != "chunked" {
				http.Error(w, "want a chunked request", 400)
				return
			}
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			sum := sha256.Sum256(body)
			w.Header().Set("X-Request-Sha256", hex.EncodeToString(sum[:]))
			for len(body) > 0 { // flushing makes the response chunked
				n := min(len(body), 10000)
				w.Write(body[:n])
				w.(http.Flusher).Flush()
				body = body[n:]
			}
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		payload := make([]byte, 1<<20+123)
		rand.Read(payload)
		want := sha256.Sum256(payload)
		req, _ := http.NewRequest("POST", "http://"+addr+"/", io.MultiReader(bytes.NewReader(payload)))
		req.ContentLength = -1 // chunked
		resp, err := client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, got)
		}
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("response transfer encoding %v, want chunked", resp.TransferEncoding)
		}
		if h := resp.Header.Get("X-Request-Sha256"); h != hex.EncodeToString(want[:]) {
			t.Errorf("endpoint saw a request body with sha256 %s, want %x", h, want)
		}
		if sha256.Sum256(got) != want {
			t.Errorf("response body differs (%d bytes, sent %d)", len(got), len(payload))
		}
	})

	t.Run("a large Content-Length response passes through intact", func(t *testing.T) {
		payload := make([]byte, 3<<20+7)
		rand.Read(payload)
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
			w.Write(payload)
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := client(t)
		for range 2 {
			code, body := get(t, c, "http://"+addr+"/")
			if code != 200 || body != string(payload) {
				t.Fatalf("status %d, body of %d bytes; want 200 and the %d bytes sent", code, len(body), len(payload))
			}
		}
	})

	t.Run("HEAD and 204 responses have no body", func(t *testing.T) {
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/204" {
				w.WriteHeader(204)
				return
			}
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		resp, body := c.roundTrip(t, "HEAD", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || body != "" || resp.ContentLength != 11 {
			t.Errorf("HEAD: %d, Content-Length %d, body %q", resp.StatusCode, resp.ContentLength, body)
		}
		resp, body = c.roundTrip(t, "GET", "GET /204 HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 204 || body != "" {
			t.Errorf("204: %d, body %q", resp.StatusCode, body)
		}
		// Had a body slipped through, this response would not parse.
		if resp, body = c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); body != "hello world" {
			t.Errorf("GET after HEAD and 204: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("Expect 100-continue passes through", func(t *testing.T) {
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body) // reading sends the 100 Continue
			w.Write(body)
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		io.WriteString(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		line, err := c.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("first line %q, %v; want 100 Continue", line, err)
		}
		if blank, _ := c.br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("after 100 Continue: %q", blank)
		}
		io.WriteString(c, "hello")
		resp, body := c.readResponse(t, "PUT")
		if resp.StatusCode != 200 || body != "hello" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("an HTTP/1.0 client gets a chunked response de-chunked and the connection closed", func(t *testing.T) {
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "part one, ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		all, err := io.ReadAll(c.br)
		if err != nil {
			t.Fatal(err)
		}
		head, body, _ := strings.Cut(string(all), "\r\n\r\n")
		if body != "part one, part two" || strings.Contains(strings.ToLower(head), "chunked") {
			t.Errorf("got head %q body %q", head, body)
		}
	})
}

func TestBalancer_HTTPKeepAlive(t *testing.T) {
	t.Run("1000 sequential requests over one client connection open one upstream connection", func(t *testing.T) {
		bk := namedBackend(t, "a")
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		for i := range 1000 {
			resp, body := c.roundTrip(t, "GET", fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
			if resp.StatusCode != 200 || body != "a" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
			}
		}
		if n := bk.ln.accepted.Load(); n != 1 {
			t.Errorf("backend accepted %d connections, want 1", n)
		}
	})

	t.Run("pipelined requests are answered in order", func(t *testing.T) {
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.URL.Path)
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		for _, want := range []string{"/1", "/2", "/3"} {
			if _, body := c.readResponse(t, "GET"); body != want {
				t.Errorf("got %q, want %q", body, want)
			}
		}
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("after Connection: close: %v, want EOF", err)
		}
	})
}

func TestBalancer_HTTPUpgrade(t *testing.T) {
	t.Run("an upgraded connection copies bytes both ways", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		seen := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			seen <- head.String()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nwelcome;")
			io.Copy(c, br) // echo
		}()
		_, addr := httpRoute(t, poolOf("p", RoundRobin, ln.Addr().String()))
		c := dialRaw(t, addr)
		// The first bytes of the new protocol follow the head at once.
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly;")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
			t.Fatalf("response %d %v", resp.StatusCode, resp.Header)
		}
		head := waitFor(t, seen, "the upgrade request")
		if !strings.Contains(head, "Upgrade: echo\r\n") || !strings.Contains(head, "Connection: Upgrade\r\n") {
			t.Errorf("endpoint got head %q without the upgrade fields", head)
		}
		io.WriteString(c, "later")
		c.Conn.(*net.TCPConn).CloseWrite()
		rest, err := io.ReadAll(c.br)
		if err != nil {
			t.Fatal(err)
		}
		if string(rest) != "welcome;early;later" {
			t.Errorf("got %q, want %q", rest, "welcome;early;later")
		}
	})
}

func TestBalancer_HTTPHeaders(t *testing.T) {
	t.Run("X-Forwarded fields are set and hop-by-hop fields dropped both ways", func(t *testing.T) {
		seen := make(chan http.Header, 1)
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Clone()
			h.Set("Host", r.Host)
			seen <- h
			w.Header().Set("Connection", "X-Private")
			w.Header().Set("X-Private", "secret")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-End-To-End", "yes")
			io.WriteString(w, "ok")
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		resp, _ := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: shop.example\r\n"+
			"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"+
			"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"+
			"X-Kept: 1\r\n\r\n")
		h := waitFor(t, seen, "the request")
		want := map[string]string{
			"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "shop.example",
			"Host":              "shop.example",
			"X-Kept":            "1",
		}
		for k, v := range want {
			if got := strings.Join(h.Values(k), ","); got != v {
				t.Errorf("endpoint got %s %q, want %q", k, got, v)
			}
		}
		for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Connection"} {
			if v := h.Values(k); len(v) > 0 {
				t.Errorf("endpoint got hop-by-hop %s: %q", k, v)
			}
		}
		for _, k := range []string{"X-Private", "Keep-Alive", "Connection"} {
			if v := resp.Header.Values(k); len(v) > 0 {
				t.Errorf("client got hop-by-hop %s: %q", k, v)
			}
		}
		if resp.Header.Get("X-End-To-End") != "yes" {
			t.Errorf("client lost an end-to-end field: %v", resp.Header)
		}
	})

	t.Run("a head over 64 KiB gets 431", func(t *testing.T) {
		bk := namedBackend(t, "a")
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		resp, _ := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 70<<10)+"\r\n\r\n")
		if resp.StatusCode != 431 {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})

	t.Run("a head that fits in 64 KiB but not in a read buffer goes through", func(t *testing.T) {
		seen := make(chan int, 1)
		bk := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- len(r.Header.Get("X-Big"))
		}))
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		c := dialRaw(t, addr)
		resp, _ := c.roundTrip(t, "GET", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 30<<10)+"\r\n\r\n")
		if resp.StatusCode != 200 || waitFor(t, seen, "the request") != 30<<10 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})

	t.Run("malformed requests get 400", func(t *testing.T) {
		bk := namedBackend(t, "a")
		_, addr := httpRoute(t, poolOf("p", RoundRobin, bk.addr()))
		for name, raw := range map[string]string{
			"no host":                    "GET / HTTP/1.1\r\n\r\n",
			"length and chunked":         "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
			"two lengths":                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
			"space before colon":         "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
			"folded line":                "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
			"bare CR in a value":         "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n",
			"unknown transfer coding":    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
			"request line without space": "GET/HTTP/1.1\r\nHost: x\r\n\r\n",
		} {
			c := dialRaw(t, addr)
			if resp, _ := c.roundTrip(t, "GET", raw); resp.StatusCode != 400 {
				t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
			}
		}
	})
}
