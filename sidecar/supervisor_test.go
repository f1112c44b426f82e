package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/listeners"
	"github.com/openstack-synchronizer/synchronizer/logbuf"
)

// failingListener fails each run at once, except the runs listed in
// healthy, which last that long first; after the last run it waits for
// the end.
type failingListener struct {
	runs    int // read by the test once done is closed
	last    int
	healthy map[int]time.Duration
	done    chan struct{}
}

func (l *failingListener) Run(ctx context.Context, _ listeners.Sink) error {
	l.runs++
	if l.runs > l.last {
		close(l.done)
		<-ctx.Done()
		return ctx.Err()
	}
	time.Sleep(l.healthy[l.runs])
	return errors.New("connection reset")
}

// TestListenerRetryResetsAfterHealthyRun: a listener's restarts wait
// longer while it keeps failing, and the first wait again once it ran for
// as long as the longest wait (a broker that drops the connection once in a
// while must not leave the listener down for a minute each time).
func TestListenerRetryResetsAfterHealthyRun(t *testing.T) {
	var logs logbuf.Buffer
	l := &failingListener{last: 6, healthy: map[int]time.Duration{4: 400 * time.Millisecond}, done: make(chan struct{})}
	r := &listenerRunner{name: "bus", l: l, log: slog.New(slog.NewTextHandler(&logs, nil)),
		retry: backoff.Policy{Min: time.Millisecond, Max: 300 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	go func() { r.run(ctx); close(stopped) }()
	select {
	case <-l.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the listener did not run 7 times; logs:\n%s", logs.String())
	}
	cancel()
	<-stopped

	var waits []string
	for _, m := range regexp.MustCompile(`listener stopped: restarting.* in=(\S+)`).FindAllStringSubmatch(logs.String(), -1) {
		waits = append(waits, m[1])
	}
	// Runs 1-3 fail at once (1, 2, 4 ms); run 4 is healthy for 400 ms,
	// longer than the 300 ms cap, so its failure waits 1 ms again.
	want := []string{"1ms", "2ms", "4ms", "1ms", "2ms", "4ms"}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	if r.state != "stopped" || r.starts != 7 {
		t.Fatalf("state %q after %d starts, want stopped after 7", r.state, r.starts)
	}
}
