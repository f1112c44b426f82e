// Package publishers sends the committed change log elsewhere: to a
// RabbitMQ stream that consumers on other hosts read and resume by seq. A
// publisher type is one file in this package that registers a Factory in
// init. Publishers read the store's change log, not the engine's memory:
// they are woken by commits but never hold one up, and a publisher that
// lags or whose broker is down only falls behind in the log.
package publishers

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

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/store"
)

// Publisher sends the change log somewhere, from its own cursor on.
type Publisher interface {
	// Run publishes until ctx ends. Transient failures (broker down) are
	// its own to retry; an error return is restarted with back-off.
	Run(ctx context.Context) error
	// Wake says changes through seq were committed. It must not block.
	Wake(seq int64)
	// Floor is the seq through which the change log may be pruned at most
	// (< 0: no limit): the changes after it are not yet published.
	Floor() int64
	// Stats are the figures for status and metrics.
	Stats() Stats
}

// Stats are a publisher's figures. Lag is last_seq - cursor.
type Stats struct {
	State     string `json:"state"`
	Connected bool   `json:"connected"`
	Host      string `json:"host,omitempty"`
	Stream    string `json:"stream"`
	Cursor    int64  `json:"cursor"`
	LastSeq   int64  `json:"last_seq"`
	Lag       int64  `json:"lag"`
	Published int64  `json:"published"`
	Resyncs   int64  `json:"resync_markers"`
	LastError string `json:"last_error,omitempty"`
	// Snapshot is the last complete snapshot in the stream (amqp-stream).
	Snapshot  *SnapshotMark `json:"snapshot,omitempty"`
	Snapshots int64         `json:"snapshots_written"`
}

// Settings is what a factory gets.
type Settings struct {
	Name   string
	Node   *yaml.Node // the whole config entry, for config.DecodeStrict
	Dir    string     // the config file's directory
	Logger *slog.Logger
	// Store is the sidecar's store; nil when the config is only checked
	// (the publisher is built to validate it and never runs).
	Store *store.Store
}

// Factory makes a publisher from its config entry.
type Factory func(Settings) (Publisher, error)

var (
	regMu    sync.Mutex
	registry = map[string]Factory{}
)

// Register makes a publisher type known.
func Register(typ string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[typ]; dup {
		panic("publishers: type registered twice: " + typ)
	}
	registry[typ] = f
}

// Types returns the registered type names, sorted.
func Types() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var out []string
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// New makes one publisher.
func New(p config.Publisher, s Settings) (Publisher, error) {
	regMu.Lock()
	f := registry[p.Type]
	regMu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("publishers[%s]: unknown type %q (known: %v)", p.Name, p.Type, Types())
	}
	return f(s)
}

// Set is the configured publishers. It is an engine.Publisher (it wakes them
// after each commit) and a prometheus.Collector. Apply changes it while it
// runs (a config reload): a publisher whose entry changed is stopped, its
// cursor saved, and made again from it, so none of the log is skipped.
type Set struct {
	dir  string
	st   *store.Store
	log  *slog.Logger
	last atomic.Int64 // the last seq a commit woke the publishers with

	applyMu sync.Mutex // one Apply at a time

	mu sync.Mutex
	// entries is the current list, replaced whole under mu and read
	// without it: Publish runs at every commit, publishers or not.
	entries atomic.Pointer[[]*entry]
	runCtx  context.Context // Run's; nil before Run
	ended   bool            // Run's ctx ended: nothing starts any more
	wg      sync.WaitGroup
}

// entry is one running publisher.
type entry struct {
	name string
	conf string // the config entry, canonical: a changed one is made again
	pub  Publisher
	stop context.CancelFunc // nil while it does not run
	done chan struct{}      // closed when its Run returned
	// retired is set when Apply stops the entry: Run must not start it
	// again meanwhile (unless Apply keeps it after all).
	retired bool
}

// NewSet makes every configured publisher; nothing runs until Run.
func NewSet(cfg []config.Publisher, dir string, st *store.Store, log *slog.Logger) (*Set, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Set{dir: dir, st: st, log: log}
	var es []*entry
	for _, p := range cfg {
		e, err := s.make(p)
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	s.entries.Store(&es)
	return s, nil
}

func (s *Set) make(p config.Publisher) (*entry, error) {
	pub, err := New(p, Settings{Name: p.Name, Node: p.Node, Dir: s.dir, Logger: s.log.With("publisher", p.Name), Store: s.st})
	if err != nil {
		return nil, err
	}
	return &entry{name: p.Name, conf: entryConf(p), pub: pub}, nil
}

// entryConf is the entry as its settings, not as written: an edit of a
// comment or of the YAML's layout changes nothing, as for collectors.
func entryConf(p config.Publisher) string {
	var v any
	if p.Node != nil {
		if err := p.Node.Decode(&v); err != nil {
			b, _ := yaml.Marshal(p.Node)
			return string(b)
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// list is the current entries (the slice is never changed in place).
func (s *Set) list() []*entry {
	if l := s.entries.Load(); l != nil {
		return *l
	}
	return nil
}

// Len is the number of publishers.
func (s *Set) Len() int { return len(s.list()) }

// Publish implements engine.Publisher.
func (s *Set) Publish(p []engine.Published) {
	if len(p) == 0 {
		return
	}
	last := p[len(p)-1].Seq
	s.last.Store(last)
	for _, e := range s.list() {
		e.pub.Wake(last)
	}
}

// Floor is the lowest floor of all publishers (-1: none). A publisher
// stopped for a reload keeps its floor until the one made again from its
// cursor replaces it.
func (s *Set) Floor() int64 {
	floor := int64(-1)
	for _, e := range s.list() {
		if f := e.pub.Floor(); f >= 0 && (floor < 0 || f < floor) {
			floor = f
		}
	}
	return floor
}

// Run runs every publisher until ctx ends, restarting one that fails, and
// those Apply adds meanwhile.
func (s *Set) Run(ctx context.Context) {
	s.mu.Lock()
	s.runCtx = ctx
	for _, e := range s.list() {
		s.start(e)
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.wg.Wait()
}

// start runs e until its stop or Run's ctx, unless Run ended or e is
// retired. Caller holds s.mu.
func (s *Set) start(e *entry) {
	if e.retired || s.ended {
		return
	}
	ctx, stop := context.WithCancel(s.runCtx)
	e.stop, e.done = stop, make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(e.done)
		retry := backoff.New(time.Second, time.Minute)
		for ctx.Err() == nil {
			err := e.pub.Run(ctx)
			if ctx.Err() != nil {
				return
			}
			wait := retry.Next()
			s.log.Error("publisher stopped; restarting", "publisher", e.name, "err", err, "in", wait)
			backoff.Wait(ctx, wait)
		}
	}()
}

// Apply makes the set that of cfg: publishers whose entry is unchanged go
// on; removed ones stop; changed ones stop (their cursor saved) and are made
// again from it; new ones start. Every entry is checked first: a bad one
// changes nothing (the old publishers go on) and is the error.
func (s *Set) Apply(cfg []config.Publisher) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	old := map[string]*entry{}
	for _, e := range s.list() {
		old[e.name] = e
	}
	var errs []error
	changed := map[string]bool{}
	for i, p := range cfg {
		if e := old[p.Name]; e != nil && e.conf == entryConf(p) {
			continue
		}
		changed[p.Name] = true
		if _, err := New(p, Settings{Name: p.Name, Node: p.Node, Dir: s.dir}); err != nil {
			errs = append(errs, fmt.Errorf("publishers[%d] (%s): %w", i, p.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, p := range cfg {
		keep[p.Name] = !changed[p.Name]
	}
	// Stop what goes or changes, and wait: a publisher saves its cursor as
	// its Run returns, and the one made again reads it. Meanwhile it stays
	// in the list, so its floor still holds the unpublished changes.
	var halting []*entry
	for name, e := range old {
		if !keep[name] {
			halting = append(halting, e)
		}
	}
	s.halt(halting)
	next := make([]*entry, 0, len(cfg))
	for _, p := range cfg {
		if keep[p.Name] {
			next = append(next, old[p.Name])
			continue
		}
		e, err := s.make(p)
		if err != nil {
			// The store failed (the config was checked above). The old
			// entry stays, stopped, so its floor holds: a later reload
			// or a restart makes it again from its cursor.
			errs = append(errs, fmt.Errorf("publisher %s: %w", p.Name, err))
			if o := old[p.Name]; o != nil {
				s.mu.Lock()
				o.retired = false // it runs again below, from its cursor
				s.mu.Unlock()
				next = append(next, o)
			}
			continue
		}
		s.log.Info("publisher (re)started by a reload", "publisher", p.Name)
		next = append(next, e)
	}
	s.mu.Lock()
	s.entries.Store(&next)
	if s.runCtx != nil {
		for _, e := range next {
			if e.stop == nil {
				s.start(e)
			}
		}
	}
	s.mu.Unlock()
	// A commit between a publisher's making and its place in the list
	// woke only the others.
	if last := s.last.Load(); last > 0 {
		for _, e := range next {
			e.pub.Wake(last)
		}
	}
	for name := range old {
		if _, ok := keep[name]; !ok {
			s.log.Info("publisher removed by a reload", "publisher", name)
		}
	}
	return errors.Join(errs...)
}

// halt stops the entries, all at once, and waits until their Run
// returned (their cursor saved).
func (s *Set) halt(es []*entry) {
	var done []chan struct{}
	s.mu.Lock()
	for _, e := range es {
		e.retired = true
		if e.stop != nil {
			e.stop()
			done = append(done, e.done)
		}
		e.stop = nil
	}
	s.mu.Unlock()
	for _, d := range done {
		<-d
	}
}

// Status is each publisher's Stats by name.
func (s *Set) Status() map[string]Stats {
	l := s.list()
	out := make(map[string]Stats, len(l))
	for _, e := range l {
		out[e.name] = e.pub.Stats()
	}
	return out
}

var (
	lagDesc       = prometheus.NewDesc("synchronizer_publisher_lag", "Changes committed and not yet confirmed by the publisher's broker (last_seq - cursor).", []string{"publisher"}, nil)
	publishedDesc = prometheus.NewDesc("synchronizer_publisher_published_total", "Changes the publisher's broker confirmed (duplicates after a reconnect count again).", []string{"publisher"}, nil)
	connectedDesc = prometheus.NewDesc("synchronizer_publisher_connected", "Whether the publisher is connected to its broker (1) or not (0).", []string{"publisher"}, nil)
	resyncDesc    = prometheus.NewDesc("synchronizer_publisher_resync_markers_total", "Resync markers written: changes pruned before they were published.", []string{"publisher"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- publishedDesc
	ch <- connectedDesc
	ch <- resyncDesc
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, e := range s.list() {
		st := e.pub.Stats()
		c := 0.0
		if st.Connected {
			c = 1
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(st.Lag), e.name)
		ch <- prometheus.MustNewConstMetric(publishedDesc, prometheus.CounterValue, float64(st.Published), e.name)
		ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, c, e.name)
		ch <- prometheus.MustNewConstMetric(resyncDesc, prometheus.CounterValue, float64(st.Resyncs), e.name)
	}
}
