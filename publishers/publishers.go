// Package publishers sends the committed change log elsewhere: to a
// RabbitMQ stream that consumers on other hosts read and resume by seq. A
// publisher type is one file in this package that registers a Factory in
// init. Publishers read the store's change log, not the engine's memory:
// they are woken by commits but never hold one up, and a publisher that
// lags or whose broker is down only falls behind in the log.
package publishers

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

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
// after each commit) and a prometheus.Collector.
type Set struct {
	names []string
	pubs  []Publisher
	log   *slog.Logger
}

// NewSet makes every configured publisher; nothing runs until Run.
func NewSet(cfg []config.Publisher, dir string, st *store.Store, log *slog.Logger) (*Set, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Set{log: log}
	for _, p := range cfg {
		pub, err := New(p, Settings{Name: p.Name, Node: p.Node, Dir: dir, Logger: log.With("publisher", p.Name), Store: st})
		if err != nil {
			return nil, err
		}
		s.names = append(s.names, p.Name)
		s.pubs = append(s.pubs, pub)
	}
	return s, nil
}

// Len is the number of publishers.
func (s *Set) Len() int { return len(s.pubs) }

// Publish implements engine.Publisher.
func (s *Set) Publish(p []engine.Published) {
	if len(p) == 0 {
		return
	}
	last := p[len(p)-1].Seq
	for _, pub := range s.pubs {
		pub.Wake(last)
	}
}

// Floor is the lowest floor of all publishers (-1: none).
func (s *Set) Floor() int64 {
	floor := int64(-1)
	for _, p := range s.pubs {
		if f := p.Floor(); f >= 0 && (floor < 0 || f < floor) {
			floor = f
		}
	}
	return floor
}

// Run runs every publisher until ctx ends, restarting one that fails.
func (s *Set) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, p := range s.pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := time.Second
			for ctx.Err() == nil {
				err := p.Run(ctx)
				if ctx.Err() != nil {
					return
				}
				s.log.Error("publisher stopped; restarting", "publisher", s.names[i], "err", err, "in", backoff)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, time.Minute)
			}
		}()
	}
	wg.Wait()
}

// Status is each publisher's Stats by name.
func (s *Set) Status() map[string]Stats {
	out := make(map[string]Stats, len(s.pubs))
	for i, p := range s.pubs {
		out[s.names[i]] = p.Stats()
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
	for i, p := range s.pubs {
		st := p.Stats()
		c := 0.0
		if st.Connected {
			c = 1
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(st.Lag), s.names[i])
		ch <- prometheus.MustNewConstMetric(publishedDesc, prometheus.CounterValue, float64(st.Published), s.names[i])
		ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, c, s.names[i])
		ch <- prometheus.MustNewConstMetric(resyncDesc, prometheus.CounterValue, float64(st.Resyncs), s.names[i])
	}
}
