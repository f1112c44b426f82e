package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

// Applier is the engine as the poll loop sees it.
type Applier interface {
	ApplySnapshot(ctx context.Context, snap *entity.Snapshot, o engine.SnapshotOptions) (engine.Result, error)
}

// VolatileDefaulter is implemented by collectors whose sources have fields
// that change on every poll without meaning a change (hypervisor uptime):
// the config's volatile_fields add to these.
type VolatileDefaulter interface {
	DefaultVolatile() map[string][]string
}

// TypeFilter is implemented by collectors that can skip listing entity types
// nobody wants (active_entity_types), to spare the source. The runner drops
// inactive types from snapshots either way.
type TypeFilter interface {
	SetActiveTypes(types []string)
}

// Runner runs one configured collector: a poll every interval (start to
// start, shifted once by the jitter), a time-out per poll, capped
// exponential back-off after failures. A failed poll changes nothing in the
// baseline. The framework, not the collector, times each poll and records
// its outcome.
type Runner struct {
	cfg config.Common
	c   Collector
	eng Applier
	log *slog.Logger
	vol map[string][]string

	trigger chan collectRequest
	// shift is the jitter, drawn once: how far this runner's schedule is
	// moved from that of collectors started at the same moment.
	shift time.Duration
	// active is the set of active entity types (nil: every type); observe
	// is told the outcome of each poll (metrics). Both may change while
	// the runner runs, without restarting it.
	active  atomic.Pointer[map[string]bool]
	observe atomic.Pointer[func(time.Duration, engine.Result, error)]

	mu          sync.Mutex
	state       string
	startedAt   time.Time
	polls       int64
	failures    int64
	consecutive int
	lastStart   time.Time
	lastSuccess time.Time
	lastError   string
	lastErrorAt time.Time
	lastDur     time.Duration
	totalDur    time.Duration
	maxDur      time.Duration
	lastResult  engine.Result
	lastCount   int
	nextPoll    time.Time
	// Totals over the runner's life of ownership conflicts first seen and
	// of duplicate listings dropped.
	conflicts  int64
	duplicates int64
	listed     *Listed // types of the last successful poll
}

// Listed is what a collector's last successful poll listed: the types it
// listed completely and those of its entities, or every type (All).
type Listed struct {
	Types []string
	All   bool
}

// Overlaps says whether the listing covers one of types.
func (l *Listed) Overlaps(types []string) bool {
	if l.All {
		return true
	}
	for _, t := range types {
		if slices.Contains(l.Types, t) {
			return true
		}
	}
	return false
}

func listedOf(snap *entity.Snapshot) *Listed {
	l := &Listed{All: snap.AllTypes, Types: slices.Clone(snap.Types)}
	for _, e := range snap.Entities {
		if !slices.Contains(l.Types, e.Type) {
			l.Types = append(l.Types, e.Type)
		}
	}
	sort.Strings(l.Types)
	return l
}

// Listed returns what the last successful poll listed, nil before one
// succeeded: which bus notifications this collector can make up for.
func (r *Runner) Listed() *Listed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listed
}

type collectRequest struct {
	force bool
	done  chan collectReply
}

type collectReply struct {
	res engine.Result
	err error
}

// NewRunner wraps a collector built from cfg.
func NewRunner(cfg config.Common, c Collector, eng Applier, log *slog.Logger) *Runner {
	vol := map[string][]string{}
	if d, ok := c.(VolatileDefaulter); ok {
		for t, fs := range d.DefaultVolatile() {
			vol[t] = append(vol[t], fs...)
		}
	}
	for t, fs := range cfg.VolatileFields {
		vol[t] = append(vol[t], fs...)
	}
	r := &Runner{cfg: cfg, c: c, eng: eng, log: log, vol: vol, trigger: make(chan collectRequest), state: "created"}
	if cfg.Jitter > 0 {
		r.shift = time.Duration(rand.Float64() * cfg.Jitter * float64(cfg.Interval.D()))
	}
	return r
}

// Collector returns the wrapped collector.
func (r *Runner) Collector() Collector { return r.c }

// Run polls until ctx ends. The first poll starts at once.
func (r *Runner) Run(ctx context.Context) {
	r.setState("idle")
	r.mu.Lock()
	r.startedAt = time.Now()
	r.mu.Unlock()
	defer func() {
		r.setState("stopped")
		if cl, ok := r.c.(Closer); ok {
			cl.Close()
		}
	}()
	delay := time.Duration(0)
	shifted := false
	for {
		r.mu.Lock()
		r.nextPoll = time.Now().Add(delay)
		r.mu.Unlock()
		t := time.NewTimer(delay)
		var req *collectRequest
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case q := <-r.trigger:
			t.Stop()
			req = &q
		}
		start := time.Now()
		res, err := r.poll(ctx, req != nil && req.force)
		if req != nil {
			req.done <- collectReply{res, err}
		}
		if ctx.Err() != nil {
			return
		}
		delay = r.nextDelay(err, time.Since(start))
		if err == nil && !shifted {
			delay += r.shift
			shifted = true
		}
	}
}

// timeoutBackoff caps the back-off after polls that merely timed out, in
// intervals: a slow source is spared a little, but a change never waits
// minutes behind a poll that was only late.
const timeoutBackoff = 4

// timedOut says whether a poll failed by running out of time (its own
// time-out, or requests that outlived theirs) rather than being refused.
func timedOut(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &t) && t.Timeout()
}

// nextDelay is the wait after a poll that took took and ended with err.
//
// After a success the next poll starts one interval after this one
// started, not after it ended: a change waits at most an interval plus one
// poll, however long polls take. A poll longer than the interval is
// followed by a rest of a tenth of the interval. The jitter is not added
// here but once (shift), after the first success: a jitter drawn at every
// poll would add itself to the time a change takes to arrive.
//
// After a failure the wait is the interval doubled per consecutive failure,
// capped at max_backoff, or at timeoutBackoff intervals when the poll
// merely timed out.
func (r *Runner) nextDelay(err error, took time.Duration) time.Duration {
	iv := r.cfg.Interval.D()
	if err != nil {
		r.mu.Lock()
		n := r.consecutive
		r.mu.Unlock()
		ceiling := r.cfg.MaxBackoff.D()
		if timedOut(err) {
			ceiling = min(max(ceiling, iv), timeoutBackoff*iv)
		}
		return backoff.Policy{Min: iv, Max: ceiling}.Delay(n)
	}
	return max(iv-took, iv/10)
}

// Collect runs a poll now, between scheduled polls (never concurrently with
// one), and returns its result. force applies deletes held back by the
// mass-delete brake.
func (r *Runner) Collect(ctx context.Context, force bool) (engine.Result, error) {
	q := collectRequest{force: force, done: make(chan collectReply, 1)}
	select {
	case r.trigger <- q:
	case <-ctx.Done():
		return engine.Result{}, ctx.Err()
	}
	select {
	case rep := <-q.done:
		return rep.res, rep.err
	case <-ctx.Done():
		return engine.Result{}, ctx.Err()
	}
}

func (r *Runner) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
}

func (r *Runner) poll(ctx context.Context, force bool) (res engine.Result, err error) {
	start := time.Now()
	r.mu.Lock()
	r.state, r.lastStart = "polling", start
	r.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout.D())
	defer cancel()
	snap, err := r.collect(pctx)
	if err == nil && pctx.Err() != nil {
		err = fmt.Errorf("poll timed out after %s: %w", r.cfg.Timeout.D(), pctx.Err())
	}
	if err == nil {
		snap = r.filter(snap)
	}
	if err == nil {
		res, err = r.eng.ApplySnapshot(ctx, snap, engine.SnapshotOptions{
			Source:         r.cfg.Name,
			StartedAt:      start,
			Volatile:       r.vol,
			MaxDeleteRatio: *r.cfg.MaxDeleteRatio,
			Force:          force,
			Reference:      IsReference(r.c),
		})
		if err == nil && snap.Applied != nil {
			snap.Applied()
		}
	}
	dur := time.Since(start)
	if fn := r.observe.Load(); fn != nil {
		(*fn)(dur, res, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.polls++
	r.lastDur = dur
	r.totalDur += dur
	r.maxDur = max(r.maxDur, dur)
	r.conflicts += int64(res.NewConflicts)
	r.duplicates += int64(res.Duplicates)
	if err != nil {
		r.failures++
		r.consecutive++
		prev := r.lastError
		var partial *engine.PartialError
		msg := "poll failed: baseline unchanged"
		text := err.Error()
		if errors.As(err, &partial) {
			// Some batches are in: the baseline is right for them, and
			// the next poll completes the rest.
			msg, text = "poll partially applied: the next poll completes it", "poll "+partial.Error()
		}
		r.state, r.lastError, r.lastErrorAt = "failing", text, time.Now()
		// A lasting failure is logged now and then; a different one at
		// once (collector errors carry no secrets).
		if r.consecutive == 1 || r.consecutive%10 == 0 || text != prev {
			r.log.Warn(msg, "err", text, "consecutive", r.consecutive, "duration", dur)
		}
		return res, err
	}
	if r.consecutive > 0 {
		r.log.Info("poll recovered", "after_failures", r.consecutive, "last_error", r.lastError)
	}
	r.consecutive = 0
	r.state, r.lastSuccess, r.lastResult, r.lastCount = "idle", time.Now(), res, len(snap.Entities)
	r.listed = listedOf(snap)
	lvl := slog.LevelDebug
	if res.Created+res.Updated+res.Deleted > 0 || len(res.Held) > 0 {
		lvl = slog.LevelInfo
	}
	r.log.Log(ctx, lvl, "poll done", "entities", len(snap.Entities), "created", res.Created,
		"updated", res.Updated, "deleted", res.Deleted, "held", res.Held, "duration", dur)
	return res, nil
}

// SetActiveTypes limits what the following polls hand to the engine to the
// given entity types (empty: every type), and tells the collector when it can
// skip listing the others (TypeFilter). It takes effect at the next poll.
func (r *Runner) SetActiveTypes(types []string) {
	set := entity.ActiveSet(types)
	r.active.Store(&set)
	if f, ok := r.c.(TypeFilter); ok {
		f.SetActiveTypes(types)
	}
}

// SetObserver sets a function called after every poll with its duration,
// result and error (nil fn: none). It must not block.
func (r *Runner) SetObserver(fn func(time.Duration, engine.Result, error)) {
	if fn == nil {
		r.observe.Store(nil)
		return
	}
	r.observe.Store(&fn)
}

// filter drops the entities of inactive types from a snapshot and leaves
// those types out of its complete listings, so that the engine neither
// shows them nor deletes the ones it already has: turning a type off hides
// it, it does not wipe it.
func (r *Runner) filter(snap *entity.Snapshot) *entity.Snapshot {
	p := r.active.Load()
	if p == nil || *p == nil {
		return snap
	}
	active := *p
	out := &entity.Snapshot{Entities: make([]entity.Entity, 0, len(snap.Entities)), Applied: snap.Applied}
	for _, e := range snap.Entities {
		if active[e.Type] {
			out.Entities = append(out.Entities, e)
		}
	}
	// A collector that lists incrementally is told of an applied snapshot
	// whatever was filtered out: it lists a type again in full when the
	// type becomes active again (TypeFilter).
	activeKey := func(k string) bool { typ, _ := entity.SplitKey(k); return active[typ] }
	for _, k := range snap.Present {
		if activeKey(k) {
			out.Present = append(out.Present, k)
		}
	}
	for _, k := range snap.Deletes {
		if activeKey(k) {
			out.Deletes = append(out.Deletes, k)
		}
	}
	if snap.AllTypes {
		// Complete for every type, so complete for each active one.
		for t := range active {
			out.Types = append(out.Types, t)
		}
		sort.Strings(out.Types)
		return out
	}
	for _, t := range snap.Types {
		if active[t] {
			out.Types = append(out.Types, t)
		}
	}
	return out
}

// collect calls the collector, turning a panic into a failed poll so that a
// bug in one collector cannot take the sidecar down.
func (r *Runner) collect(ctx context.Context) (snap *entity.Snapshot, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("collector panicked: %v", p)
		}
	}()
	snap, err = r.c.Collect(ctx)
	if err == nil && snap == nil {
		err = errors.New("collector returned no snapshot")
	}
	return snap, err
}

// Status reports the poll loop's figures and the collector's own.
// LastSuccess returns when a poll last succeeded, or when the runner
// started while none has, and the configured interval: "no successful poll
// for N intervals" is then one comparison, also for a collector that never
// succeeded (metrics).
func (r *Runner) LastSuccess() (time.Time, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastSuccess.IsZero() {
		return r.startedAt, r.cfg.Interval.D()
	}
	return r.lastSuccess, r.cfg.Interval.D()
}

func (r *Runner) Status() Status {
	r.mu.Lock()
	st := Status{
		Name:                    r.cfg.Name,
		Type:                    r.cfg.Type,
		State:                   r.state,
		Interval:                r.cfg.Interval.D().String(),
		Polls:                   r.polls,
		Failures:                r.failures,
		ConsecutiveFailures:     r.consecutive,
		LastDuration:            r.lastDur.String(),
		LastDurationMS:          r.lastDur.Milliseconds(),
		MaxDurationMS:           r.maxDur.Milliseconds(),
		LastEntities:            r.lastCount,
		LastResult:              r.lastResult,
		OwnershipConflictsTotal: r.conflicts,
		DuplicateKeysTotal:      r.duplicates,
		StartedAt:               r.startedAt.UTC(),
		LastRun:                 r.lastStart.UTC(),
		LastSuccess:             r.lastSuccess.UTC(),
	}
	if r.polls > 0 {
		avg := (r.totalDur / time.Duration(r.polls)).Milliseconds()
		st.AvgDurationMS = &avg
	}
	if r.lastError != "" {
		st.LastError, st.LastErrorAt = r.lastError, r.lastErrorAt.UTC()
	}
	if !r.nextPoll.IsZero() && r.state == "idle" || r.state == "failing" {
		next := r.nextPoll.UTC()
		st.NextPoll = &next
	}
	r.mu.Unlock()
	if sr, ok := r.c.(StatusReporter); ok {
		st.Details = sr.Status()
	}
	return st
}

// Status is a runner's figures in `status`. The fields are in the order of
// their JSON names, as the map status once was: the encoding is the same
// byte for byte (sidecar/testdata/status.golden.json). Pointers are figures
// that are absent, rather than zero, until known.
type Status struct {
	AvgDurationMS       *int64 `json:"avg_duration_ms,omitempty"`
	ConsecutiveFailures int    `json:"consecutive_failures"`
	// Details are the collector's own figures (StatusReporter).
	Details map[string]any `json:"details,omitzero"`
	// Keys this collector lists that another one keeps (README
	// "Ownership"), counted when first seen; listings of a key beyond its
	// first in one poll, dropped.
	DuplicateKeysTotal int64 `json:"duplicate_keys_total"`
	// Entities are the baseline's counts per type of this collector,
	// filled in by whoever knows the baseline (the sidecar).
	Entities                map[string]int `json:"entities,omitzero"`
	Failures                int64          `json:"failures"`
	Interval                string         `json:"interval"`
	LastDuration            string         `json:"last_duration"`
	LastDurationMS          int64          `json:"last_duration_ms"`
	LastEntities            int            `json:"last_entities"`
	LastError               string         `json:"last_error,omitempty"`
	LastErrorAt             time.Time      `json:"last_error_at,omitzero"`
	LastResult              engine.Result  `json:"last_result"`
	LastRun                 time.Time      `json:"last_run,omitzero"`
	LastSuccess             time.Time      `json:"last_success,omitzero"`
	MaxDurationMS           int64          `json:"max_duration_ms"`
	Name                    string         `json:"name"`
	NextPoll                *time.Time     `json:"next_poll,omitempty"`
	OwnershipConflictsTotal int64          `json:"ownership_conflicts_total"`
	Polls                   int64          `json:"polls"`
	StartedAt               time.Time      `json:"started_at,omitzero"`
	State                   string         `json:"state"`
	Type                    string         `json:"type"`
}
