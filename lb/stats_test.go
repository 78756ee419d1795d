package lb

import (
	"io"
	"math"
	"net/http"
	"testing"
	"time"
)

func TestLatencyBound(t *testing.T) {
	for i := range LatencyBuckets - 1 {
		b := LatencyBound(i)
		if i > 0 && b <= LatencyBound(i-1) {
			t.Fatalf("bound %d (%v) not above bound %d (%v)", i, b, i-1, LatencyBound(i-1))
		}
		if got := latencyBucket(b); got != i {
			t.Errorf("%v falls in bucket %d, want %d (bounds are inclusive)", b, got, i)
		}
		if got := latencyBucket(b + 1); got != i+1 {
			t.Errorf("%v falls in bucket %d, want %d", b+1, got, i+1)
		}
	}
	for _, tc := range []struct {
		i    int
		want time.Duration
	}{
		{0, 500 * time.Microsecond},
		{1, 625 * time.Microsecond},
		{4, time.Millisecond},
		{5, 1250 * time.Microsecond},
		{LatencyBuckets - 2, 32768 * time.Millisecond},
		{LatencyBuckets - 1, math.MaxInt64},
	} {
		if got := LatencyBound(tc.i); got != tc.want {
			t.Errorf("LatencyBound(%d) = %v, want %v", tc.i, got, tc.want)
		}
	}
	if got := latencyBucket(-time.Second); got != 0 {
		t.Errorf("a negative latency falls in bucket %d, want 0", got)
	}
}

// statsOf returns Stats with one response per latency given, and errors.
func statsOf(errors uint64, latencies ...time.Duration) Stats {
	var s requestStats
	for _, d := range latencies {
		s.response(200, d)
	}
	for range errors {
		s.attempt(true)
	}
	var out Stats
	s.addTo(&out)
	return out
}

func TestStats_Quantile(t *testing.T) {
	ms := time.Millisecond
	ninetyNine := make([]time.Duration, 99)
	for i := range ninetyNine {
		ninetyNine[i] = ms
	}
	for _, tc := range []struct {
		name string
		s    Stats
		q    float64
		want time.Duration
	}{
		{"no latency measured gives 0", statsOf(3), 0.99, 0},
		{"the quantile is its bucket's upper bound", statsOf(0, 50*ms), 0.99, 56 * ms},
		{"p99 of 99 fast and 1 slow is fast", statsOf(0, append(ninetyNine, time.Second)...), 0.99, ms},
		{"p100 of 99 fast and 1 slow is slow", statsOf(0, append(ninetyNine, time.Second)...), 1, 1024 * ms},
		{"p0 is the fastest bucket", statsOf(0, 3*ms, ms), 0, ms},
		{"q above 1 is 1", statsOf(0, 3*ms, ms), 2, 3 * ms},
		{"NaN is 0", statsOf(0, 3*ms, ms), math.NaN(), ms},
		{"above the last bound is the largest Duration", statsOf(0, time.Minute), 0.5, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Quantile(tc.q); got != tc.want {
				t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestStats_arithmetic(t *testing.T) {
	ms := time.Millisecond
	a := statsOf(1, ms, 2*ms)  // 3 requests, 1 error
	b := statsOf(2, ms, 10*ms) // 4 requests, 2 errors
	sum := a.Add(b)
	if sum.Requests != 7 || sum.Errors != 3 || sum.Latency[latencyBucket(ms)] != 2 || sum.Latency[latencyBucket(10*ms)] != 1 {
		t.Errorf("Add = %+v", sum)
	}
	if got := sum.Sub(a); got != b {
		t.Errorf("(a+b)-a = %+v, want %+v", got, b)
	}
	if got := a.Sub(sum); got != (Stats{}) {
		t.Errorf("a smaller snapshot minus a larger one = %+v, want zeros", got)
	}
	for _, tc := range []struct {
		s    Stats
		want float64
	}{
		{Stats{}, 0},
		{Stats{Requests: 4, Errors: 1}, 0.25},
		{Stats{Requests: 0, Errors: 1}, 1},
	} {
		if got := tc.s.ErrorRate(); got != tc.want {
			t.Errorf("ErrorRate of %d/%d = %v, want %v", tc.s.Errors, tc.s.Requests, got, tc.want)
		}
	}
}

func TestPool_Stats(t *testing.T) {
	t.Run("5xx responses are errors, windows are differences", func(t *testing.T) {
		be := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/fail" {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		pool := poolOf("web", RoundRobin, be.addr())
		_, addr := httpRoute(t, pool)
		c := client(t)
		for range 5 {
			get(t, c, "http://"+addr+"/")
		}
		start := pool.Stats([]string{be.addr()})
		for _, path := range []string{"/fail", "/", "/fail", "/"} {
			get(t, c, "http://"+addr+path)
		}
		w := pool.Stats([]string{be.addr()}).Sub(start)
		if w.Requests != 4 || w.Errors != 2 || w.ErrorRate() != 0.5 {
			t.Errorf("window: %d requests, %d errors, rate %v; want 4, 2, 0.5", w.Requests, w.Errors, w.ErrorRate())
		}
		var measured uint64
		for _, n := range w.Latency {
			measured += n
		}
		if measured != 4 {
			t.Errorf("window measured %d latencies, want 4", measured)
		}
		if other := pool.Stats([]string{"10.0.0.1:80"}); other != (Stats{}) {
			t.Errorf("Stats of an address not in the pool: %+v", other)
		}
	})

	t.Run("latency is measured to the response header", func(t *testing.T) {
		slow := newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(50 * time.Millisecond)
		}))
		pool := poolOf("web", RoundRobin, slow.addr())
		_, addr := httpRoute(t, pool)
		c := client(t)
		for range 3 {
			get(t, c, "http://"+addr+"/")
		}
		st := pool.Stats([]string{slow.addr()})
		if p50, p99 := st.Quantile(0.5), st.Quantile(0.99); p50 < 50*time.Millisecond || p99 < 50*time.Millisecond {
			t.Errorf("p50 %v, p99 %v of a backend taking 50ms; want both at least 50ms", p50, p99)
		}
	})

	t.Run("a response cut short is an error", func(t *testing.T) {
		be := cutShortBackend(t)
		pool := poolOf("web", RoundRobin, be.addr())
		_, addr := httpRoute(t, pool)
		resp, err := client(t).Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		// The proxy counts the error, then closes the connection, which
		// ends the body.
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("the truncated body read without an error")
		}
		resp.Body.Close()
		if st := pool.Stats([]string{be.addr()}); st.Requests != 1 || st.Errors != 1 {
			t.Errorf("%d requests, %d errors; want 1 and 1", st.Requests, st.Errors)
		}
	})

	t.Run("counters survive SetWeighted and drain with their endpoint", func(t *testing.T) {
		p := poolOf("p", RoundRobin, "a:1")
		_, release, _ := p.Pick()
		release(true) // a request, an error, and an ejection
		p.SetWeighted(nil, []string{"a:1"}, 10)
		_, inFlight, _ := p.Pick()
		p.Set([]string{"b:1"})
		if st := p.Stats([]string{"a:1"}); st.Requests != 1 || st.Errors != 1 {
			t.Errorf("draining endpoint: %d requests, %d errors; want 1 and 1", st.Requests, st.Errors)
		}
		inFlight(false)
		if st := p.Stats([]string{"a:1"}); st != (Stats{}) {
			t.Errorf("drained endpoint still counted: %+v", st)
		}
	})

	t.Run("PickReport counts responses and failures", func(t *testing.T) {
		p := poolOf("p", RoundRobin, "a:1")
		for _, r := range []struct {
			status  int
			latency time.Duration
			failed  bool
		}{
			{200, 3 * time.Millisecond, false},
			{503, 20 * time.Millisecond, false},
			{0, 0, false},
			{0, 0, true},
		} {
			_, report, _ := p.PickReport()
			report(r.status, r.latency, r.failed)
			report(r.status, r.latency, r.failed) // once only
		}
		st := p.Stats([]string{"a:1"})
		if st.Requests != 4 || st.Errors != 3 || st.Quantile(1) != 20*time.Millisecond || st.Quantile(0.5) != 3*time.Millisecond {
			t.Errorf("%d requests, %d errors, p50 %v, max %v; want 4, 3, 3ms, 20ms",
				st.Requests, st.Errors, st.Quantile(0.5), st.Quantile(1))
		}
		if p.Endpoints()[0].Healthy {
			t.Error("a failed report did not eject the endpoint")
		}
	})
}

// cutShortBackend answers with a header announcing a longer body than it
// sends, then closes the connection.
func cutShortBackend(t *testing.T) *backend {
	return newBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
		buf.Flush()
		conn.Close()
	}))
}
