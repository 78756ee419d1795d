// Command demo is fleet's example web app: it answers with its hostname and
// version, serves /healthz and /ready, and shuts down gracefully on
// SIGTERM, so rollouts have something real to move between. A few
// environment variables make it misbehave on purpose, for tests:
//
//	DEMO_UNHEALTHY=1            /healthz fails from the start
//	DEMO_UNHEALTHY_AFTER=5s     /healthz fails once the process is 5s old
//	DEMO_READY_AFTER=3s         /ready fails until the process is 3s old
//	DEMO_EXIT_AFTER=2s          the process exits after 2s...
//	DEMO_EXIT_CODE=3            ...with this code (default 1)
//	DEMO_ERROR_PERCENT=100      this share of answers to / are 500s
//	DEMO_DELAY=300ms            answers to / wait this long first
//
// `demo check URL` GETs URL and exits 0 for a 2xx or 3xx answer, 1
// otherwise: an exec probe or a Docker HEALTHCHECK in an image that has
// no shell. `demo write FILE TEXT`, `demo read FILE` and `demo mode FILE`
// let tests of volumes write, read and stat files in it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=v2".
var version = "v1"

func main() {
	if len(os.Args) == 3 && os.Args[1] == "check" {
		os.Exit(check(os.Args[2]))
	}
	// For tests of volumes, in an image with no shell.
	if len(os.Args) == 4 && os.Args[1] == "write" {
		if err := os.WriteFile(os.Args[2], []byte(os.Args[3]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "mode" {
		st, err := os.Stat(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%04o", st.Mode().Perm())
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "read" {
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
		return
	}
	started := time.Now()
	after := func(env string) (time.Duration, bool) {
		d, err := time.ParseDuration(os.Getenv(env))
		return d, err == nil
	}
	if d, ok := after("DEMO_EXIT_AFTER"); ok {
		code := 1
		fmt.Sscan(os.Getenv("DEMO_EXIT_CODE"), &code)
		time.AfterFunc(d, func() {
			log.Printf("exiting with %d after %s (DEMO_EXIT_AFTER is set)", code, d)
			os.Exit(code)
		})
	}
	addr := flag.String("addr", envOr("ADDR", ":8080"), "listen address (env ADDR)")
	flag.Parse()
	host, _ := os.Hostname()
	var served atomic.Int64
	mux := http.NewServeMux()
	errorPercent, _ := strconv.Atoi(os.Getenv("DEMO_ERROR_PERCENT"))
	delay, _ := after("DEMO_DELAY")
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		time.Sleep(delay)
		// Every answer whose count crosses a multiple of 100/percent fails.
		if errorPercent > 0 && n*int64(errorPercent)/100 != (n-1)*int64(errorPercent)/100 {
			w.Header().Set("X-Demo-Version", version)
			http.Error(w, "failing on purpose (DEMO_ERROR_PERCENT)", http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Demo-Version", version)
		fmt.Fprintf(w, "hello from %s, version %s\n", host, version)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("DEMO_UNHEALTHY") != "" {
			http.Error(w, "unhealthy on purpose (DEMO_UNHEALTHY is set)", http.StatusServiceUnavailable)
			return
		}
		if d, ok := after("DEMO_UNHEALTHY_AFTER"); ok && time.Since(started) >= d {
			http.Error(w, "unhealthy on purpose (DEMO_UNHEALTHY_AFTER has passed)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if d, ok := after("DEMO_READY_AFTER"); ok && time.Since(started) < d {
			http.Error(w, "not ready yet (DEMO_READY_AFTER)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"hostname": host, "version": version, "served": served.Load()})
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("demo %s listening on %s", version, *addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func check(url string) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
