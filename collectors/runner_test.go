package collectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

type fakeCollector struct {
	mu    sync.Mutex
	calls int
	fn    func(ctx context.Context, call int) (*entity.Snapshot, error)
}

var _ Collector = (*fakeCollector)(nil)

func (f *fakeCollector) Collect(ctx context.Context) (*entity.Snapshot, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	return f.fn(ctx, n)
}

type fakeApplier struct {
	mu    sync.Mutex
	snaps []*entity.Snapshot
	opts  []engine.SnapshotOptions
}

var _ Applier = (*fakeApplier)(nil)

func (a *fakeApplier) ApplySnapshot(_ context.Context, s *entity.Snapshot, o engine.SnapshotOptions) (engine.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.snaps = append(a.snaps, s)
	a.opts = append(a.opts, o)
	return engine.Result{Created: len(s.Entities)}, nil
}

func (a *fakeApplier) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.snaps)
}

func common(interval, timeout, maxBackoff time.Duration) config.Common {
	r := 0.5
	return config.Common{Name: "c", Type: "fake", Interval: config.Duration(interval), Timeout: config.Duration(timeout),
		MaxBackoff: config.Duration(maxBackoff), MaxDeleteRatio: &r}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestFailedPollsChangeNothing(t *testing.T) {
	cases := []struct {
		name string
		fn   func(ctx context.Context, call int) (*entity.Snapshot, error)
		want string
	}{
		{"error", func(context.Context, int) (*entity.Snapshot, error) { return nil, errors.New("api down") }, "api down"},
		{"time-out", func(ctx context.Context, _ int) (*entity.Snapshot, error) {
			<-ctx.Done()
			return &entity.Snapshot{AllTypes: true}, nil // a collector ignoring ctx's error
		}, "timed out"},
		{"panic", func(context.Context, int) (*entity.Snapshot, error) { panic("bug") }, "panicked"},
		{"nil snapshot", func(context.Context, int) (*entity.Snapshot, error) { return nil, nil }, "no snapshot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := &fakeApplier{}
			r := NewRunner(common(time.Hour, 50*time.Millisecond, time.Hour), &fakeCollector{fn: tc.fn}, app, quiet)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { r.Run(ctx); close(done) }()
			_, err := r.Collect(ctx, false)
			cancel()
			<-done
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if app.count() != 0 {
				t.Fatal("a failed poll reached the engine")
			}
			st := r.Status()
			if st.Failures == 0 || st.LastError == "" {
				t.Fatalf("status does not show the failure: %v", st)
			}
		})
	}
}

func TestNextDelay(t *testing.T) {
	refused := errors.New("HTTP 500")
	timeout := fmt.Errorf("nova: list servers: %w", context.DeadlineExceeded)
	cases := []struct {
		name       string
		interval   time.Duration
		maxBackoff time.Duration
		err        error
		took       time.Duration
		want       []time.Duration // for 1, 2, ... consecutive failures (one value for a success)
	}{
		// The next poll starts an interval after this one started: a
		// change waits at most an interval plus a poll.
		{"success: interval from the start", 10 * time.Second, time.Minute, nil, 1500 * time.Millisecond, []time.Duration{8500 * time.Millisecond}},
		{"success: a poll longer than the interval rests a tenth", 2 * time.Second, time.Minute, nil, 3 * time.Second, []time.Duration{200 * time.Millisecond}},
		{"failure: doubles and caps at max_backoff", time.Second, 5 * time.Second, refused, 0,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}},
		{"failure: max_backoff under the interval", 10 * time.Second, time.Second, refused, 0, []time.Duration{10 * time.Second, 10 * time.Second}},
		// A poll that merely timed out never waits minutes (2 s: 2, 4,
		// 8, 8, ... instead of up to 5 min).
		{"time-out: caps at 4 intervals", 2 * time.Second, 5 * time.Minute, timeout, 0,
			[]time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}},
		{"time-out: max_backoff lower still caps", 2 * time.Second, 3 * time.Second, timeout, 0, []time.Duration{2 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"time-out of a request (Timeout() true)", time.Second, time.Hour, errors.Join(refused, fmt.Errorf("page 2: %w", netTimeout{})), 0,
			[]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRunner(common(tc.interval, time.Second, tc.maxBackoff), &fakeCollector{}, &fakeApplier{}, quiet)
			var got []time.Duration
			for n := range tc.want {
				r.consecutive = n + 1
				got = append(got, r.nextDelay(tc.err, tc.took))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("delays %v, want %v", got, tc.want)
			}
		})
	}
}

type netTimeout struct{}

func (netTimeout) Error() string   { return "request timed out after 1s" }
func (netTimeout) Timeout() bool   { return true }
func (netTimeout) Temporary() bool { return true }

// The jitter shifts the schedule once, by at most its share of the
// interval; every later poll starts an interval after the one before.
func TestJitterShiftsOnce(t *testing.T) {
	app := &fakeApplier{}
	var mu sync.Mutex
	var starts []time.Time
	col := &fakeCollector{fn: func(context.Context, int) (*entity.Snapshot, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		time.Sleep(60 * time.Millisecond) // a poll's own duration
		return &entity.Snapshot{AllTypes: true}, nil
	}}
	cfg := common(200*time.Millisecond, time.Second, time.Second)
	cfg.Jitter = 0.5
	r := NewRunner(cfg, col, app, quiet)
	if r.shift < 0 || r.shift >= 100*time.Millisecond {
		t.Fatalf("shift %v, want within [0, 100ms)", r.shift)
	}
	r.shift = 100 * time.Millisecond // the largest a draw can be
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for app.count() < 6 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	gaps := make([]time.Duration, len(starts)-1)
	for i := range gaps {
		gaps[i] = starts[i+1].Sub(starts[i])
	}
	// Start to start: the interval plus the shift once, then the interval,
	// never the interval plus the poll's 60 ms or a new draw.
	if gaps[0] < 300*time.Millisecond || gaps[0] >= 350*time.Millisecond {
		t.Errorf("first gap %v, want 300ms (interval + shift)", gaps[0])
	}
	for _, g := range gaps[1:] {
		if g < 200*time.Millisecond || g >= 250*time.Millisecond {
			t.Errorf("gaps %v, want 200ms after the first", gaps)
			break
		}
	}
}

func TestRunnerPollsAndRecovers(t *testing.T) {
	app := &fakeApplier{}
	col := &fakeCollector{fn: func(_ context.Context, call int) (*entity.Snapshot, error) {
		if call == 2 {
			return nil, errors.New("flaky")
		}
		return &entity.Snapshot{Types: []string{"t"}, Entities: []entity.Entity{{Type: "t", ID: "1"}}}, nil
	}}
	cfg := common(20*time.Millisecond, time.Second, 40*time.Millisecond)
	cfg.VolatileFields = map[string][]string{"t": {"x"}}
	r := NewRunner(cfg, col, app, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for app.count() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d polls applied", app.count())
		}
		time.Sleep(5 * time.Millisecond)
	}
	app.mu.Lock()
	o := app.opts[0]
	app.mu.Unlock()
	if o.Source != "c" || o.Volatile["t"][0] != "x" || o.MaxDeleteRatio != 0.5 || o.StartedAt.IsZero() {
		t.Fatalf("snapshot options %+v", o)
	}
	st := r.Status()
	if st.ConsecutiveFailures != 0 || st.Failures != 1 {
		t.Fatalf("status after recovery: %v", st)
	}
}

// partialApplier fails its first apply after committing part of it.
type partialApplier struct {
	fakeApplier
	calls int
}

func (a *partialApplier) ApplySnapshot(ctx context.Context, s *entity.Snapshot, o engine.SnapshotOptions) (engine.Result, error) {
	a.calls++
	if a.calls == 1 {
		return engine.Result{Created: 15000, Seq: 15000}, &engine.PartialError{Committed: 15000, Total: 60000,
			FirstSeq: 1, LastSeq: 15000, Err: errors.New("engine: snapshot of c: store: commit: database or disk is full")}
	}
	return a.fakeApplier.ApplySnapshot(ctx, s, o)
}

// TestRunnerLogsErrorChanges: a lasting failure is logged at its 1st, 10th,
// 20th... poll, but a failure whose text changes is logged at once, and so
// is recovery. A poll cut short after some commits says so, in the log and
// in status.
func TestRunnerLogsErrorChanges(t *testing.T) {
	errs := []string{"nova: 503", "nova: 503", "nova: 503", "keystone: 401", "keystone: 401", "nova: 503", ""}
	col := &fakeCollector{fn: func(_ context.Context, call int) (*entity.Snapshot, error) {
		if e := errs[min(call, len(errs))-1]; e != "" {
			return nil, errors.New(e)
		}
		return &entity.Snapshot{AllTypes: true, Entities: []entity.Entity{{Type: "t", ID: "1"}}}, nil
	}}
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	app := &partialApplier{}
	r := NewRunner(common(time.Hour, time.Second, time.Hour), col, app, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	// The first poll is the scheduled one; the others are triggered.
	for i := 0; i < len(errs)+1; i++ {
		r.Collect(ctx, false)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, want := range []struct {
		s string
		n int
	}{
		{`err="nova: 503"`, 2},     // 1st failure, then again after keystone's
		{`err="keystone: 401"`, 1}, // a new error, logged at once
		{`msg="poll recovered" after_failures=7 last_error="poll partially applied`, 1},
		{`msg="poll partially applied: the next poll completes it" err="poll partially applied: 15000 of 60000 changes committed (seq 1..15000), then: engine: snapshot of c: store: commit: database or disk is full"`, 1},
	} {
		if n := strings.Count(out, want.s); n != want.n {
			t.Errorf("%q logged %d times, want %d", want.s, n, want.n)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
