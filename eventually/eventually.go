// Package eventually holds how tests wait for what must happen eventually.
// Such a wait is no claim about how fast: on a loaded machine (CI, or load
// average 20 on 2 cores) a first poll or a reload that takes milliseconds
// when quiet can take many seconds, so every wait gets at least Min.
package eventually

import (
	"testing"
	"time"
)

// Min is the least time True gives a condition.
const Min = 30 * time.Second

// True polls cond until it holds, and fails t, naming what it waited for,
// once max(timeout, Min) has passed.
func True(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max(timeout, Min))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
