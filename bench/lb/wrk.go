package main

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	rps       float64
	p50, p99  time.Duration
	requests  int64
	non2xx    int64         // "Non-2xx or 3xx responses"
	socketErr int64         // connect + read + write + timeout
	cpu       time.Duration // wrk's own user+system time
}

// runWrk runs wrk with one thread and conns keep-alive connections for
// d, pinned to cpu.
func runWrk(ctx context.Context, ts toolset, cpu, conns int, d time.Duration, url string) (wrkResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	argv := []string{"-c", strconv.Itoa(cpu), ts.wrk, "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs), "--latency", url}
	cmd := exec.CommandContext(ctx, ts.taskset, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return wrkResult{}, fmt.Errorf("wrk %s: %w", url, ctx.Err())
		}
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	// taskset execs wrk in place: the process state is wrk's.
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

// parseWrk reads wrk --latency output.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var err error
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch {
		case f[0] == "Requests/sec:":
			r.rps, err = strconv.ParseFloat(f[1], 64)
		case f[0] == "50%":
			r.p50, err = parseWrkDuration(f[1])
		case f[0] == "99%":
			r.p99, err = parseWrkDuration(f[1])
		case len(f) > 2 && f[1] == "requests" && f[2] == "in":
			r.requests, err = strconv.ParseInt(f[0], 10, 64)
		case strings.HasPrefix(strings.TrimSpace(l), "Non-2xx or 3xx responses:"):
			r.non2xx, err = strconv.ParseInt(f[len(f)-1], 10, 64)
		case f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 3; i < len(f); i += 2 {
				n, perr := strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				if perr != nil {
					err = perr
					break
				}
				r.socketErr += n
			}
		}
		if err != nil {
			return wrkResult{}, fmt.Errorf("parse %q: %w", strings.TrimSpace(l), err)
		}
	}
	if r.rps == 0 || r.p50 == 0 || r.p99 == 0 {
		return wrkResult{}, fmt.Errorf("no Requests/sec or latency distribution in the output")
	}
	return r, nil
}

// parseWrkDuration reads wrk's latency values: 812.00us, 1.23ms, 2.00s,
// 1.50m.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, err
			}
			return time.Duration(math.Round(n * float64(u.unit))), nil
		}
	}
	return 0, fmt.Errorf("unknown unit in %q", s)
}
