package sshexec

import (
	"testing"
	"time"
)

func TestBackoff_Delay(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name     string
		backoff  Backoff
		failures int
		want     time.Duration
	}{
		{"no failures means no wait", Backoff{Initial: 100 * ms, Max: time.Second}, 0, 0},
		{"negative failures mean no wait", Backoff{}, -1, 0},
		{"the first failure waits Initial", Backoff{Initial: 100 * ms, Max: time.Second}, 1, 100 * ms},
		{"the second failure doubles", Backoff{Initial: 100 * ms, Max: time.Second}, 2, 200 * ms},
		{"the third failure doubles again", Backoff{Initial: 100 * ms, Max: time.Second}, 3, 400 * ms},
		{"the wait is capped at Max", Backoff{Initial: 100 * ms, Max: time.Second}, 5, time.Second},
		{"many failures stay at Max without overflowing", Backoff{Initial: 100 * ms, Max: time.Second}, 1000, time.Second},
		{"an Initial above Max is capped", Backoff{Initial: 2 * time.Second, Max: time.Second}, 1, time.Second},
		{"the zero value starts at 200ms", Backoff{}, 1, 200 * ms},
		{"the zero value doubles from 200ms", Backoff{}, 3, 800 * ms},
		{"the zero value is capped at 5s", Backoff{}, 10, 5 * time.Second},
		{"a zero Max defaults to 5s", Backoff{Initial: time.Second}, 4, 5 * time.Second},
		{"a zero Initial defaults to 200ms", Backoff{Max: time.Minute}, 2, 400 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.backoff.Delay(tt.failures); got != tt.want {
				t.Errorf("%+v.Delay(%d) = %s, want %s", tt.backoff, tt.failures, got, tt.want)
			}
		})
	}
}
