package main

import (
	"testing"
	"time"
)

const wrkOut = `Running 10s test @ http://127.0.0.1:8080/64
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  310.25us   9.87ms   90.12%
    Req/Sec    30.51k     1.02k   32.00k    71.00%
  Latency Distribution
     50%    2.05ms
     75%    2.20ms
     90%    2.41ms
     99%    3.10ms
  303542 requests in 10.00s, 79.33MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  30350.12
Transfer/sec:      7.93MB
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want wrkResult
		err  bool
	}{
		{
			name: "errors and percentiles are read",
			out:  wrkOut,
			want: wrkResult{rps: 30350.12, p50: 2050 * time.Microsecond, p99: 3100 * time.Microsecond, requests: 303542, non2xx: 4, socketErr: 3},
		},
		{
			name: "output without a latency distribution is an error",
			out:  "Requests/sec:  30350.12\n",
			err:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if (err != nil) != tt.err {
				t.Fatalf("parseWrk: err %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("parseWrk = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"812.00us", 812 * time.Microsecond},
		{"1.50ms", 1500 * time.Microsecond},
		{"2.00s", 2 * time.Second},
		{"1.50m", 90 * time.Second},
	}
	for _, tt := range tests {
		got, err := parseWrkDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
