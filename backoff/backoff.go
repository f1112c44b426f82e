// Package backoff holds the capped exponential back-off of the retry loops
// (collector polls, listener restarts and reconnects, OpenStack requests,
// the CLI's watch): one rule for how long to wait after failures in a row.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential back-off: the wait after the nth failure
// in a row is Min doubled n-1 times, at most Max (a Max below Min counts as
// Min), plus up to Jitter times itself at random, so that many clients
// failing together do not retry together.
type Policy struct {
	Min, Max time.Duration
	Jitter   float64
}

// Delay is the wait after the nth failure in a row (n < 1 counts as 1).
func (p Policy) Delay(n int) time.Duration {
	d := p.Min
	for i := 1; i < n && d > 0 && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, max(p.Max, p.Min))
	if p.Jitter > 0 && d > 0 {
		d += time.Duration(rand.Int64N(int64(float64(d)*p.Jitter) + 1))
	}
	return d
}

// Backoff is a Policy with the count of failures in a row of one loop. The
// zero Backoff waits nothing; it is not safe for concurrent use.
type Backoff struct {
	Policy
	n int
}

// New returns a Backoff from min to max, without jitter.
func New(min, max time.Duration) *Backoff {
	return &Backoff{Policy: Policy{Min: min, Max: max}}
}

// Next counts a failure and returns the wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	b.n++
	return b.Delay(b.n)
}

// Reset starts over after a success: the next failure waits Min.
func (b *Backoff) Reset() { b.n = 0 }

// Wait waits d, or until ctx ends: it reports whether the loop should go
// on (false: ctx ended).
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
