package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/collectors"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/listeners"
)

// unit is one running collector or listener.
type unit struct {
	name string
	kind string // "collector" or "listener"
	spec string // canonical form of its config entry: unchanged spec, no restart
	// files are the files the unit read when it was built (it reports
	// them: collectors.FileReader, listeners.FileReader) and their hashes
	// then: an edit rebuilds it, as a change of its settings would.
	files  map[string]string
	runner *collectors.Runner
	lrun   *listenerRunner
	cancel context.CancelFunc
	done   chan struct{}
}

// supervisor starts, stops and restarts collectors and listeners to match
// the configuration, leaving untouched the ones whose settings did not
// change.
type supervisor struct {
	sc  *Sidecar
	log *slog.Logger

	mu         sync.Mutex
	units      map[string]*unit
	cfg        *config.Config
	loadedAt   time.Time
	reloads    int64
	lastErr    string
	lastErrAt  time.Time
	restartMsg []string
	// active is the set of active entity types (nil: all), read by the
	// listeners' sinks on every batch.
	active atomic.Pointer[map[string]bool]
	// cur is cfg, readable without mu.
	cur atomic.Pointer[config.Config]
	// db is the database's absolute path: listeners name their queues
	// after it.
	db       string
	catchUps catchUps
}

// buildError is a collector or listener that cannot be built from its
// settings. Its message is the one check-config prints (file, line, entry).
type buildError struct{ msg string }

func (e buildError) Error() string { return e.msg }
func (e buildError) Unwrap() error { return config.ErrInvalid }

// specOf turns a config entry into a canonical string: comments and key
// order do not count as changes.
func specOf(c *config.Config, kind string, n any) string {
	var v any
	switch node := n.(type) {
	case interface{ Decode(any) error }:
		node.Decode(&v)
	}
	b, _ := json.Marshal(v)
	// Settings that affect every unit are part of each unit's spec only
	// where they apply; the config directory is (relative paths).
	return kind + "|" + c.Dir + "|" + string(b)
}

type built struct {
	u    *unit
	coll collectors.Collector
	cfg  config.Common
	lis  listeners.Listener
}

// build constructs the collectors and listeners of cfg whose spec differs
// from the running ones, without starting anything. Any error fails the
// whole config.
func (s *supervisor) build(cfg *config.Config) (map[string]*built, error) {
	s.mu.Lock()
	running := s.units
	s.mu.Unlock()
	out := map[string]*built{}
	var errs []error
	// add keeps the running unit of an entry whose spec and files are as
	// they were, and builds the others.
	add := func(kind, section string, i int, name string, node *yaml.Node, build func(spec string) (*built, error)) {
		spec := specOf(cfg, kind, node)
		if u, ok := running[name]; ok && u.spec == spec && !filesChanged(u.files) {
			out[name] = &built{u: u}
			return
		}
		b, err := build(spec)
		if err != nil {
			errs = append(errs, buildError{fmt.Sprintf("%s: line %d: %s[%d] (%s): %v", cfg.Path, node.Line, section, i, name, err)})
			return
		}
		out[name] = b
	}
	for i, cc := range cfg.Collectors {
		add("collector", "collectors", i, cc.Name, cc.Node, func(spec string) (*built, error) {
			c, err := collectors.New(cc.Type, collectors.Settings{
				Name: cc.Name, Node: cc.Node, Dir: cfg.Dir,
				Logger: s.log.With("collector", cc.Name),
			})
			if err != nil {
				return nil, err
			}
			return &built{u: &unit{name: cc.Name, kind: "collector", spec: spec, files: hashFiles(c)}, coll: c, cfg: cc.Common}, nil
		})
	}
	for i, lc := range cfg.Listeners {
		add("listener", "listeners", i, lc.Name, lc.Node, func(spec string) (*built, error) {
			l, err := listeners.New(lc.Type, listeners.Settings{
				Name: lc.Name, Node: lc.Node, Dir: cfg.Dir,
				Logger: s.log.With("listener", lc.Name), Database: s.db,
			})
			if err != nil {
				return nil, err
			}
			return &built{u: &unit{name: lc.Name, kind: "listener", spec: spec, files: hashFiles(l)}, lis: l}, nil
		})
	}
	if err := errors.Join(errs...); err != nil {
		for _, b := range out {
			if cl, ok := b.coll.(collectors.Closer); ok {
				cl.Close()
			}
		}
		return nil, err
	}
	return out, nil
}

// apply makes the running units match cfg. On error nothing changes.
func (s *supervisor) apply(ctx context.Context, cfg *config.Config) error {
	next, err := s.build(cfg)
	if err != nil {
		return err
	}
	s.setActive(cfg.ActiveEntityTypes)
	s.mu.Lock()
	defer s.mu.Unlock()
	// The engine's ownership rule (README "Ownership") needs the configured
	// collectors, and which are reference sources, before any of them polls.
	sources := map[string]bool{}
	for name, b := range next {
		if b.u.kind != "collector" {
			continue
		}
		c := b.coll
		if c == nil && b.u.runner != nil {
			c = b.u.runner.Collector()
		}
		sources[name] = collectors.IsReference(c)
	}
	s.sc.engine.SetSources(sources)
	var removed []string
	for name, u := range s.units {
		b, keep := next[name]
		if keep && b.u == u {
			continue // unchanged: untouched
		}
		s.stopUnit(u)
		if !keep {
			removed = append(removed, name)
		}
	}
	for name, b := range next {
		if b.u.cancel != nil {
			continue // already running
		}
		uctx, cancel := context.WithCancel(ctx)
		b.u.cancel, b.u.done = cancel, make(chan struct{})
		switch b.u.kind {
		case "collector":
			b.u.runner = collectors.NewRunner(b.cfg, b.coll, s.sc.engine, s.log.With("collector", name))
			b.u.runner.SetObserver(s.sc.metrics.pollObserver(name))
			b.u.runner.SetActiveTypes(cfg.ActiveEntityTypes)
			go func(u *unit) { defer close(u.done); u.runner.Run(uctx) }(b.u)
		case "listener":
			b.u.lrun = newListenerRunner(s, name, b.lis)
			go func(u *unit) { defer close(u.done); u.lrun.run(uctx) }(b.u)
		}
		s.log.Info("started", b.u.kind, name)
	}
	units := map[string]*unit{}
	for name, b := range next {
		units[name] = b.u
		if b.u.runner != nil {
			// Unchanged collectors keep running; only what they hand to
			// the engine follows the new active types.
			b.u.runner.SetActiveTypes(cfg.ActiveEntityTypes)
		}
	}
	s.units = units
	s.cfg = cfg
	s.cur.Store(cfg)
	s.loadedAt = time.Now()
	s.reloads++
	s.lastErr = ""
	sort.Strings(removed)
	for _, name := range removed {
		if cfg.RemovedCollector == "delete" {
			res, err := s.sc.engine.DeleteSource(ctx, name)
			if err != nil {
				s.log.Error("delete entities of removed source", "source", name, "err", err)
				continue
			}
			s.sc.metrics.changed(name, res)
			s.log.Info("deleted entities of removed source", "source", name, "deleted", res.Deleted)
		} else {
			s.log.Info("removed source's entities kept (removed_collector: keep)", "source", name)
		}
	}
	return nil
}

// stopUnit cancels a unit and waits for it. Caller holds s.mu.
func (s *supervisor) stopUnit(u *unit) {
	if u.cancel == nil {
		return
	}
	u.cancel()
	<-u.done
	s.log.Info("stopped", u.kind, u.name)
}

// stopAll stops every unit.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var wg sync.WaitGroup
	for _, u := range s.units {
		if u.cancel != nil {
			u.cancel()
			wg.Add(1)
			go func(u *unit) { defer wg.Done(); <-u.done }(u)
		}
	}
	wg.Wait()
}

func (s *supervisor) runner(name string) *collectors.Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.units[name]; ok {
		return u.runner
	}
	return nil
}

// config returns the running configuration without taking s.mu: the RPC
// server asks for the active types while an apply (holding s.mu) may be
// publishing the deletes of a removed collector.
func (s *supervisor) config() *config.Config {
	return s.cur.Load()
}

// needsRestart records the settings a reload changed that only a restart
// applies (none: the message goes).
func (s *supervisor) needsRestart(settings []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restartMsg = nil
	if len(settings) > 0 {
		s.restartMsg = []string{fmt.Sprintf("changed settings need a restart to take effect: %v", settings)}
	}
}

func (s *supervisor) reloadFailed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
}

// setActive publishes the active entity types to the listeners' sinks.
func (s *supervisor) setActive(types []string) {
	set := entity.ActiveSet(types)
	s.active.Store(&set)
}

// isActive says whether an entity type is active.
func (s *supervisor) isActive(typ string) bool {
	p := s.active.Load()
	return p == nil || *p == nil || (*p)[typ]
}

// units returns the running units, for the watcher and the metrics.
func (s *supervisor) unitList() []*unit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*unit, 0, len(s.units))
	for _, u := range s.units {
		out = append(out, u)
	}
	return out
}

// listenerRunner keeps a listener running, restarting it with capped
// back-off when it returns an error.
type listenerRunner struct {
	name  string
	l     listeners.Listener
	sink  sink
	log   *slog.Logger
	retry backoff.Policy

	mu        sync.Mutex
	state     string
	starts    int64
	lastErr   string
	lastErrAt time.Time
	startedAt time.Time
	lastApply time.Time // last batch committed (or found unchanged)
	ctx       context.Context
	cu        catchUpStatus
}

// listenerRetry is the wait before a failed listener runs again: doubling
// from Min while it keeps failing, back to Min once it ran Max or longer.
var listenerRetry = backoff.Policy{Min: time.Second, Max: time.Minute}

func newListenerRunner(s *supervisor, name string, l listeners.Listener) *listenerRunner {
	r := &listenerRunner{name: name, l: l, log: s.log.With("listener", name), state: "created", retry: listenerRetry}
	r.sink = sink{eng: s.sc.engine, source: name, sup: s, r: r}
	return r
}

func (r *listenerRunner) run(ctx context.Context) {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	retry := backoff.New(r.retry.Min, r.retry.Max)
	for {
		started := time.Now()
		r.mu.Lock()
		r.state, r.startedAt = "running", started
		r.starts++
		r.mu.Unlock()
		err := r.l.Run(ctx, r.sink)
		if ctx.Err() != nil {
			r.mu.Lock()
			r.state = "stopped"
			r.mu.Unlock()
			return
		}
		if err == nil {
			err = errors.New("listener returned without error")
		}
		r.mu.Lock()
		r.state, r.lastErr, r.lastErrAt = "failing", err.Error(), time.Now()
		r.mu.Unlock()
		if time.Since(started) >= r.retry.Max {
			// It ran for longer than the longest wait: this failure is a
			// new one, not the next of a series, and a broker that dropped
			// the connection once a day must not cost a minute each time.
			retry.Reset()
		}
		wait := retry.Next()
		r.log.Warn("listener stopped: restarting", "err", err, "in", wait)
		if !backoff.Wait(ctx, wait) {
			return
		}
	}
}

// sink feeds a listener's events to the engine under the listener's name
// (or the owner each event names).
type sink struct {
	eng    *engine.Engine
	source string
	sup    *supervisor
	r      *listenerRunner
}

// Apply drops the updates of inactive entity types (deletes still go
// through, so the baseline does not keep what the source removed) and
// applies the rest.
func (s sink) Apply(ctx context.Context, evs []entity.Event) error {
	if s.sup != nil {
		kept := evs[:0:0]
		for _, ev := range evs {
			if ev.Action == entity.Delete || s.sup.isActive(ev.Entity.Type) {
				kept = append(kept, ev)
			}
		}
		if len(kept) == 0 {
			return nil
		}
		evs = kept
	}
	res, err := s.eng.ApplyEvents(ctx, s.source, evs)
	if err == nil && s.r != nil {
		s.r.mu.Lock()
		s.r.lastApply = time.Now()
		s.r.mu.Unlock()
	}
	if err == nil && s.sup != nil {
		s.sup.sc.metrics.changed(s.source, res)
	}
	return err
}

// countsOf returns the baseline's entity counts per type of one source.
func countsOf(counts map[string]map[string]int, source string) map[string]int {
	if c := counts[source]; c != nil {
		return c
	}
	return map[string]int{}
}

// Check builds every collector and listener of cfg without starting them,
// as serve and a reload would, then asks each collector that can
// (collectors.Checker) what its first poll would fail on, and returns the
// errors (check-config prints them).
func Check(cfg *config.Config) error {
	s := &supervisor{log: slog.New(slog.DiscardHandler), units: map[string]*unit{}, db: cfg.Abs(cfg.Database)}
	built, err := s.build(cfg)
	if err != nil {
		return err
	}
	var errs []error
	for i, cc := range cfg.Collectors {
		b := built[cc.Name]
		if ch, ok := b.coll.(collectors.Checker); ok {
			if err := ch.Check(); err != nil {
				errs = append(errs, buildError{fmt.Sprintf("%s: line %d: collectors[%d] (%s): %v", cfg.Path, cc.Node.Line, i, cc.Name, err)})
			}
		}
		if cl, ok := b.coll.(collectors.Closer); ok {
			cl.Close()
		}
	}
	errs = append(errs, checkPublishers(cfg))
	return errors.Join(errs...)
}
