package sshexec

import "time"

// Backoff spaces reconnection attempts to a machine that keeps failing:
// Initial after the first failure, doubling up to Max.
type Backoff struct {
	Initial time.Duration // default 200ms
	Max     time.Duration // default 5s
}

// Delay is how long to wait before the next attempt after failures
// consecutive failures (0 means no wait).
func (b Backoff) Delay(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	initial, max := b.Initial, b.Max
	if initial <= 0 {
		initial = 200 * time.Millisecond
	}
	if max <= 0 {
		max = 5 * time.Second
	}
	d := initial
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
