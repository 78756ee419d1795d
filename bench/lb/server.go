package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a process the benchmark started, pinned to one CPU, and must
// stop again whatever happens.
type server struct {
	name  string
	cmd   *exec.Cmd
	logs  []string  // files whose tails explain a failure
	stdin io.Closer // closing it tells the fleet child to exit
	done  chan struct{}
	err   error // Wait's, once done is closed
}

// startPinned starts argv under taskset on cpu. taskset execs argv in
// place, so the process's pid is the server's own. Output goes to
// dir/name.out; extraLogs are the server's own log files.
func startPinned(dir, name, taskset string, cpu int, withStdin bool, extraLogs []string, argv ...string) (*server, error) {
	out := filepath.Join(dir, name+".out")
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(taskset, append([]string{"-c", strconv.Itoa(cpu)}, argv...)...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group keeps a terminal's ^C for the benchmark, which
	// stops the servers in order; Pdeathsig ends them if the benchmark is
	// killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	s := &server{name: name, cmd: cmd, logs: append([]string{out}, extraLogs...), done: make(chan struct{})}
	if withStdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		s.stdin = w
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// pid is the server's main process.
func (s *server) pid() int { return s.cmd.Process.Pid }

// waitReady polls url with c until it answers 200, the server exits, or
// 10s pass; the error carries the tails of the server's logs.
func (s *server) waitReady(ctx context.Context, c *http.Client, url string) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited while starting: %v\n%s", s.name, s.err, s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer in 10s: %v\n%s", s.name, last, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server: stdin closed and SIGTERM, SIGKILL to its whole
// process group (nginx's worker too) if it lingers past 5s.
func (s *server) stop() {
	if s.stdin != nil {
		s.stdin.Close()
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-s.pid(), syscall.SIGKILL)
		<-s.done
	}
}

// logTail is the last lines of each of the server's logs.
func (s *server) logTail() string {
	var b strings.Builder
	for _, l := range s.logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", l, tail(data, 15))
	}
	return b.String()
}

// checkPinned verifies that the server and its children (nginx's worker)
// may run only on cpu.
func (s *server) checkPinned(cpu int) error {
	for _, pid := range append([]int{s.pid()}, children(s.pid())...) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok && strings.TrimSpace(v) != strconv.Itoa(cpu) {
				return fmt.Errorf("%s: pid %d may run on cpus %s, want %d", s.name, pid, strings.TrimSpace(v), cpu)
			}
		}
	}
	return nil
}

// cpuTicks is the user+system time, in clock ticks, of the server and
// its children so far.
func (s *server) cpuTicks() int64 {
	var n int64
	for _, pid := range append([]int{s.pid()}, children(s.pid())...) {
		f := procStat(pid)
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			n += u + st
		}
	}
	return n
}

// procStat is /proc/pid/stat from field 3 (state) on: the command name
// before it may hold spaces. Index 11 is utime, 12 stime.
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

// children are the pids whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(p); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc's times: 100 on every Linux
// that matters, but getconf knows for sure.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}

// cpuStat is one CPU's line of /proc/stat, in clock ticks.
type cpuStat struct {
	tasks int64 // user, nice, system and steal: what processes (or another VM) ran
	busy  int64 // tasks plus irq and softirq
	total int64 // busy plus idle and iowait
}

// readCPU reads /proc/stat's line for cpu.
func readCPU(cpu int) cpuStat {
	var s cpuStat
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	prefix := fmt.Sprintf("cpu%d ", cpu)
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already in user.
		for i, v := range strings.Fields(l)[1:] {
			if i >= 8 {
				break
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			s.total += n
			switch i {
			case 0, 1, 2, 7:
				s.tasks += n
				s.busy += n
			case 5, 6:
				s.busy += n
			}
		}
	}
	return s
}

// freePorts reserves n loopback ports by listening on them at once, then
// lets them go for the servers to take.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
