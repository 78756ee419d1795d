package lb

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawBackend answers every GET with a fixed response of size bytes, over
// keep-alive, allocating nothing per request.
func rawBackend(tb testing.TB, size int) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
		strconv.Itoa(size) + "\r\n\r\n" + strings.Repeat("x", size))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReaderSize(c, 4096)
				for {
					if err := skipHead(br); err != nil {
						return
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// skipHead consumes one bodiless request head.
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			return nil
		}
	}
}

// readRawResponse consumes one response with a Content-Length body.
func readRawResponse(br *bufio.Reader) error {
	length := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && bytes.EqualFold(line[:15], []byte("content-length:")) {
			for _, c := range bytes.TrimSpace(line[15:]) {
				length = length*10 + int(c-'0')
			}
		}
	}
	_, err := br.Discard(length)
	return err
}

// benchProxy drives keep-alive clients written on raw connections through
// the proxy at addr; dial, when given, opens them instead of net.Dial (for
// TLS).
func benchProxy(b *testing.B, addr string, dial ...func() (net.Conn, error)) {
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var c net.Conn
		var err error
		if len(dial) > 0 {
			c, err = dial[0]()
		} else {
			c, err = net.Dial("tcp", addr)
		}
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReaderSize(c, 16<<10)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readRawResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHTTPProxy measures a proxied keep-alive request through lb; the
// client and backend allocate nothing, so allocs/op is the proxy's. The
// router cases pick the pool with a Router by Host; the tls cases
// terminate TLS (ECDSA P-256, TLS 1.3, HTTP/1.1 by ALPN), their client's
// encryption sharing the CPUs with the proxy's.
func BenchmarkHTTPProxy(b *testing.B) {
	cert := newTestCert(b)
	for _, tc := range []struct {
		name                string
		size                int
		router, tls, canary bool
	}{
		{name: "64B", size: 64},
		{name: "4KiB", size: 4096},
		{name: "router/64B", size: 64, router: true},
		{name: "canary10%/64B", size: 64, canary: true},
		{name: "tls/64B", size: 64, tls: true},
		{name: "tls/4KiB", size: 4096, tls: true},
		{name: "tls-router/64B", size: 64, tls: true, router: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			backend := rawBackend(b, tc.size)
			bal := New(Options{})
			defer bal.Close()
			pool := poolOf("bench", RoundRobin, backend)
			if tc.canary {
				pool.SetWeighted([]string{backend}, []string{rawBackend(b, tc.size)}, 10)
			}
			rt := Route{Name: "bench", Listen: "127.0.0.1:0", Mode: HTTP, Pool: pool}
			if tc.router {
				rt.Pool = nil
				rt.Router = func(host, path []byte) *Pool {
					if string(host) == "bench.example" {
						return pool
					}
					return nil
				}
			}
			if tc.tls {
				rt.TLS = cert.serverConfig()
			}
			if errs := bal.Update([]Route{rt}); errs != nil {
				b.Fatal(errs)
			}
			addr := bal.Addr("bench").String()
			if !tc.tls {
				benchProxy(b, addr)
				return
			}
			cfg := &tls.Config{RootCAs: cert.roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}}
			benchProxy(b, addr, func() (net.Conn, error) { return tls.Dial("tcp", addr, cfg) })
		})
	}
}

// BenchmarkPool_pick measures the choice of an endpoint alone, from
// parallel goroutines as the proxy makes it.
func BenchmarkPool_pick(b *testing.B) {
	addrs := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"}
	for _, tc := range []struct {
		name    string
		canary  []string
		percent int
		eject   bool
	}{
		{name: "4 endpoints"},
		{name: "4 endpoints, 1 ejected", eject: true},
		{name: "3 stable, 1 canary at 10%", canary: addrs[3:], percent: 10},
		{name: "3 stable, 1 canary at 10%, 1 ejected", canary: addrs[3:], percent: 10, eject: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := NewPool("bench", RoundRobin)
			if tc.canary == nil {
				p.Set(addrs)
			} else {
				p.SetWeighted(addrs[:3], tc.canary, tc.percent)
			}
			if tc.eject {
				p.endpoints()[0].dialFailed(time.Now())
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var tried triedSet
					if e, _ := p.pick(p.eps.Load(), &tried, time.Now); e == nil {
						b.Error("picked nothing")
						return
					}
				}
			})
		})
	}
}

// BenchmarkReverseProxyBaseline is the same load through net/http's
// server and httputil.ReverseProxy, for comparison; the tls cases serve
// HTTPS as the Ingress server did before lb's fast path.
func BenchmarkReverseProxyBaseline(b *testing.B) {
	cert := newTestCert(b)
	for _, tc := range []struct {
		name string
		size int
		tls  bool
	}{
		{name: "64B", size: 64},
		{name: "4KiB", size: 4096},
		{name: "tls/64B", size: 64, tls: true},
		{name: "tls/4KiB", size: 4096, tls: true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			backend := rawBackend(b, tc.size)
			u, _ := url.Parse("http://" + backend)
			rp := httputil.NewSingleHostReverseProxy(u)
			rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := ln.Addr().String()
			srv := &http.Server{Handler: rp}
			defer srv.Close()
			if !tc.tls {
				go srv.Serve(ln)
				benchProxy(b, addr)
				return
			}
			go srv.Serve(tls.NewListener(ln, cert.serverConfig()))
			cfg := &tls.Config{RootCAs: cert.roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}}
			benchProxy(b, addr, func() (net.Conn, error) { return tls.Dial("tcp", addr, cfg) })
		})
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
