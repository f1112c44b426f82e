package eventually

import (
	"testing"
	"time"
)

func TestTrueReturnsOnceCondHolds(t *testing.T) {
	start := time.Now()
	n := 0
	True(t, "the third call", time.Millisecond, func() bool { n++; return n == 3 })
	if n != 3 || time.Since(start) > 10*time.Second {
		t.Fatalf("%d calls in %s", n, time.Since(start))
	}
}
