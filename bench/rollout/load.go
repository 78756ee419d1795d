package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// loadResult is what a load run saw. A request fails on a transport
// error, a timeout or any status but 200.
type loadResult struct {
	Total, Failed int
	// Versions counts the answers by their X-Demo-Version header.
	Versions map[string]int
	// Reasons counts the failures by a short cause.
	Reasons map[string]int
	// FirstFail and LastFail are when the first and last failed
	// requests were sent, from the start of the run.
	FirstFail, LastFail time.Duration
	Elapsed             time.Duration
}

// load is a steady stream of GETs at a fixed total rate, spread over
// workers that each keep their own keep-alive connection, as a browser
// or a service client would. A worker whose request takes longer than its
// interval skips the ticks it missed, so the rate is a ceiling and the
// load stays bounded when the target slows down.
type load struct {
	cancel context.CancelFunc
	done   chan loadResult
}

// startLoad sends rate requests/s to url from workers workers until stop
// is called or limit has passed, whichever is first.
func startLoad(url string, rate, workers int, limit time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &load{cancel: cancel, done: make(chan loadResult, 1)}
	interval := time.Duration(workers) * time.Second / time.Duration(rate)
	start := time.Now()
	results := make([]loadResult, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = worker(ctx, url, start, time.Duration(i)*interval/time.Duration(workers), interval)
		}()
	}
	go func() {
		wg.Wait()
		total := loadResult{Versions: map[string]int{}, Reasons: map[string]int{}, Elapsed: time.Since(start)}
		for _, r := range results {
			total.Total += r.Total
			total.Failed += r.Failed
			for v, n := range r.Versions {
				total.Versions[v] += n
			}
			for k, n := range r.Reasons {
				total.Reasons[k] += n
			}
			if r.Failed > 0 && (total.FirstFail == 0 || r.FirstFail < total.FirstFail) {
				total.FirstFail = r.FirstFail
			}
			total.LastFail = max(total.LastFail, r.LastFail)
		}
		l.done <- total
	}()
	return l
}

// stop ends the run and returns its totals.
func (l *load) stop() loadResult {
	l.cancel()
	return <-l.done
}

func worker(ctx context.Context, url string, start time.Time, offset, interval time.Duration) loadResult {
	res := loadResult{Versions: map[string]int{}, Reasons: map[string]int{}}
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	defer client.CloseIdleConnections()
	select {
	case <-ctx.Done():
		return res
	case <-time.After(offset):
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		sent := time.Since(start)
		version, reason := get(ctx, client, url)
		// A request cut short by the end of the run is not counted.
		if ctx.Err() != nil {
			return res
		}
		res.Total++
		if reason != "" {
			res.Failed++
			res.Reasons[reason]++
			if res.Failed == 1 {
				res.FirstFail = sent
			}
			res.LastFail = sent
		} else {
			res.Versions[version]++
		}
		select {
		case <-ctx.Done():
			return res
		case <-tick.C:
		}
	}
}

// get sends one request and returns the version that answered, or why
// the request failed.
func get(ctx context.Context, client *http.Client, url string) (version, reason string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", errReason(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Sprintf("status %d", resp.StatusCode)
	}
	if err != nil {
		return "", "body: " + errReason(err)
	}
	return resp.Header.Get("X-Demo-Version"), ""
}

// errReason names a transport error's cause briefly, so failures can be
// counted by kind.
func errReason(err error) string {
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(msg, "connection reset"):
		return "connection reset"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.HasSuffix(msg, "EOF"):
		return "connection closed (EOF)"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// versions prints the answers per version and their share: "v1 610
// 44%, v2 790 56%".
func (r loadResult) versions() string {
	var vs []string
	for v := range r.Versions {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	var parts []string
	for _, v := range vs {
		name := v
		if name == "" {
			name = "no version header"
		}
		parts = append(parts, fmt.Sprintf("%s %d %.0f%%", name, r.Versions[v], 100*float64(r.Versions[v])/float64(r.Total-r.Failed)))
	}
	return strings.Join(parts, ", ")
}

// failures prints why and when requests failed, or "" when none did.
func (r loadResult) failures() string {
	if r.Failed == 0 {
		return ""
	}
	var ks []string
	for k := range r.Reasons {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return r.Reasons[ks[i]] > r.Reasons[ks[j]] })
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %d", k, r.Reasons[k]))
	}
	return fmt.Sprintf("failed requests: %s; sent between +%.1fs and +%.1fs of the load", strings.Join(parts, ", "), r.FirstFail.Seconds(), r.LastFail.Seconds())
}

// String is the line's request figures: "requests 1400  failed 0  (v1
// 610 44%, v2 790 56%)".
func (r loadResult) String() string {
	return fmt.Sprintf("requests %d  failed %d  (%s)", r.Total, r.Failed, r.versions())
}
