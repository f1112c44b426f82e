package sidecar

import (
	"context"
	"errors"
	"fmt"
	"github.com/openstack-synchronizer/synchronizer/buildinfo"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openstack-synchronizer/synchronizer/engine"
)

// metrics are the Prometheus figures. They are kept whether or not the
// endpoint is enabled (updating them costs little), in a registry of their
// own so that several sidecars can run in one test process.
type metrics struct {
	reg          *prometheus.Registry
	pollDuration *prometheus.HistogramVec
	polls        *prometheus.CounterVec
	changes      *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	reloadOK     prometheus.Gauge
	reloadTime   prometheus.Gauge
	conflicts    *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	// sc answers /readyz beside /metrics.
	sc *Sidecar
}

func newMetrics(sc *Sidecar) *metrics {
	m := &metrics{
		sc:  sc,
		reg: prometheus.NewRegistry(),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "synchronizer_poll_duration_seconds",
			Help:    "Duration of collector polls, from the start of the listing to the commit.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"collector"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synchronizer_polls_total",
			Help: "Collector polls by outcome (success or failure; a failed poll changes nothing).",
		}, []string{"collector", "outcome"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synchronizer_changes_total",
			Help: "Changes committed to the change log, by source and action.",
		}, []string{"source", "action"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synchronizer_config_reloads_total",
			Help: "Configuration reloads by outcome.",
		}, []string{"outcome"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synchronizer_config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded (1) or the previous configuration is still running (0).",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "synchronizer_config_last_reload_success_timestamp_seconds",
			Help: "When the running configuration was loaded.",
		}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synchronizer_ownership_conflicts_total",
			Help: "Keys a collector lists that another collector owns and keeps, counted when first seen (README \"Ownership\").",
		}, []string{"collector"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "synchronizer_duplicate_keys_total",
			Help: "Listings of a key beyond its first in one poll, dropped (the first is applied).",
		}, []string{"collector"}),
	}
	bi := buildinfo.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "synchronizer_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	buildInfo.Set(1)
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	m.reg.MustRegister(buildInfo, m.pollDuration, m.polls, m.changes, m.reloads, m.reloadOK, m.reloadTime, m.conflicts, m.duplicates,
		stateCollector{sc}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sc.pubs != nil {
		// Even when empty: a reload may add publishers.
		m.reg.MustRegister(sc.pubs)
	}
	return m
}

// pollObserver returns the runner hook of one collector.
func (m *metrics) pollObserver(name string) func(time.Duration, engine.Result, error) {
	dur := m.pollDuration.WithLabelValues(name)
	ok, failed := m.polls.WithLabelValues(name, "success"), m.polls.WithLabelValues(name, "failure")
	conflicts, duplicates := m.conflicts.WithLabelValues(name), m.duplicates.WithLabelValues(name)
	return func(d time.Duration, res engine.Result, err error) {
		dur.Observe(d.Seconds())
		conflicts.Add(float64(res.NewConflicts))
		duplicates.Add(float64(res.Duplicates))
		// A poll cut short after some commits still committed them.
		m.changed(name, res)
		if err != nil {
			failed.Inc()
			return
		}
		ok.Inc()
	}
}

// changed counts the changes an apply committed.
func (m *metrics) changed(source string, res engine.Result) {
	for action, n := range map[string]int{"create": res.Created, "update": res.Updated, "delete": res.Deleted} {
		if n > 0 {
			m.changes.WithLabelValues(source, action).Add(float64(n))
		}
	}
}

// reloaded records a reload's outcome.
func (m *metrics) reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("failure").Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
}

// listen opens the endpoint's address (validated as loopback by the
// config) before serve, so that an address in use fails the start.
func (m *metrics) listen(addr string, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	log.Info("metrics endpoint listening", "addr", ln.Addr().String())
	return ln, nil
}

// serve runs the endpoint on ln until ctx ends.
func (m *metrics) serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/readyz", m.sc.readyz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics endpoint stopped", "err", err)
	}
	return nil
}

// stateCollector reads, at scrape time, the figures that are states rather
// than events: entities per source and type, subscribers and their queues,
// held deletes, listener messages.
type stateCollector struct{ sc *Sidecar }

var (
	descEntities    = prometheus.NewDesc("synchronizer_entities", "Entities in the baseline, by source and type.", []string{"source", "type"}, nil)
	descConns       = prometheus.NewDesc("synchronizer_rpc_connections", "Open socket connections.", nil, nil)
	descSubscribers = prometheus.NewDesc("synchronizer_rpc_subscribers", "Registered subscriptions.", nil, nil)
	descQueued      = prometheus.NewDesc("synchronizer_rpc_queued_changes", "Changes waiting in subscriber queues.", nil, nil)
	descLastSeq     = prometheus.NewDesc("synchronizer_change_log_last_seq", "The seq of the last committed change.", nil, nil)
	descHeld        = prometheus.NewDesc("synchronizer_held_deletes", "Deletes held back by the mass-delete brake, by source and type.", []string{"source", "type"}, nil)
	descMessages    = prometheus.NewDesc("synchronizer_listener_messages_total", "Bus messages received, by listener.", []string{"listener"}, nil)
	descBad         = prometheus.NewDesc("synchronizer_listener_bad_messages_total", "Bus messages that could not be used, by listener.", []string{"listener"}, nil)
	descOtherCons   = prometheus.NewDesc("synchronizer_listener_queue_other_consumers", "Consumers of a listener's queue other than this sidecar: each takes notifications away from it (give every sidecar a queue of its own).", []string{"listener"}, nil)
	descCatchUps    = prometheus.NewDesc("synchronizer_listener_catch_up_polls_total", "Polls run because a listener may have missed notifications (new or lost queue, first connect, full queue).", []string{"listener"}, nil)
	descFailing     = prometheus.NewDesc("synchronizer_unit_failing", "Whether a collector or listener is failing (1) or not (0).", []string{"kind", "name"}, nil)
	descCheckpoints = prometheus.NewDesc("synchronizer_wal_checkpoints_total", "Background WAL checkpoints run.", nil, nil)
	descWALFrames   = prometheus.NewDesc("synchronizer_wal_frames", "Pages in the WAL at the last checkpoint.", nil, nil)
	descWALFailing  = prometheus.NewDesc("synchronizer_wal_checkpoint_failing", "Whether the last WAL checkpoint failed (1): the WAL grows until one succeeds.", nil, nil)
	descStoreFail   = prometheus.NewDesc("synchronizer_store_failing", "Whether the database is corrupt (1): quick_check or a read found damage; status says the way out.", nil, nil)
	descStoreCheck  = prometheus.NewDesc("synchronizer_store_quick_check_seconds", "How long the last PRAGMA quick_check took.", nil, nil)

	descQueuedBytes   = prometheus.NewDesc("synchronizer_rpc_queued_bytes", "Bytes of changes queued for all subscribers (bounded by subscriber_memory).", nil, nil)
	descRejected      = prometheus.NewDesc("synchronizer_rpc_rejected_connections_total", "Connections refused past max_connections.", nil, nil)
	descIdleClosed    = prometheus.NewDesc("synchronizer_rpc_idle_closed_total", "Connections closed after idle_timeout without a subscription.", nil, nil)
	descMemoryResyncs = prometheus.NewDesc("synchronizer_rpc_memory_resyncs_total", "Subscribers cut off with resync because subscriber_memory was reached.", nil, nil)
	descAcceptErrors  = prometheus.NewDesc("synchronizer_rpc_accept_errors_total", "Failed accepts on the socket (each retried after a back-off).", nil, nil)
	descGetAllCut     = prometheus.NewDesc("synchronizer_rpc_get_all_cut_total", "get_all answers cut by get_all_timeout.", nil, nil)
	descCollReqs      = prometheus.NewDesc("synchronizer_collector_requests_total", "HTTP requests a collector made to its source's API.", []string{"collector"}, nil)
	descCollBytes     = prometheus.NewDesc("synchronizer_collector_response_bytes_total", "Response body bytes a collector read from its source's API.", []string{"collector"}, nil)
	descLastSuccess   = prometheus.NewDesc("synchronizer_collector_last_success_timestamp_seconds",
		"When the collector's last poll succeeded (Unix time); while none has, when the collector started.", []string{"collector"}, nil)
	descInterval = prometheus.NewDesc("synchronizer_collector_interval_seconds", "The collector's configured poll interval.", []string{"collector"}, nil)
	descResyncs  = prometheus.NewDesc("synchronizer_rpc_resyncs_total",
		"Consumers told to resynchronize with get_all, by reason: queue_overflow (resync notification to a subscriber past its queue or memory bound), pruned_during_replay, since_outside_log (-32001), other_database (-32001 for another database's id).",
		[]string{"reason"}, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntities, descConns, descSubscribers, descQueued, descLastSeq, descHeld, descMessages, descBad, descOtherCons, descCatchUps, descFailing,
		descCheckpoints, descWALFrames, descWALFailing, descStoreFail, descStoreCheck,
		descQueuedBytes, descRejected, descIdleClosed, descMemoryResyncs, descAcceptErrors, descGetAllCut,
		descCollReqs, descCollBytes,
		descLastSuccess, descInterval, descResyncs} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	sc := c.sc
	for src, types := range sc.engine.Counts() {
		for typ, n := range types {
			ch <- prometheus.MustNewConstMetric(descEntities, prometheus.GaugeValue, float64(n), src, typ)
		}
	}
	for src, types := range sc.engine.Held() {
		for typ, n := range types {
			ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(n), src, typ)
		}
	}
	ch <- prometheus.MustNewConstMetric(descLastSeq, prometheus.CounterValue, float64(sc.engine.LastSeq()))
	w := sc.store.WALStats()
	ch <- prometheus.MustNewConstMetric(descCheckpoints, prometheus.CounterValue, float64(w.Checkpoints))
	ch <- prometheus.MustNewConstMetric(descWALFrames, prometheus.GaugeValue, float64(w.Frames))
	walFailing := 0.0
	if w.LastError != "" {
		walFailing = 1
	}
	ch <- prometheus.MustNewConstMetric(descWALFailing, prometheus.GaugeValue, walFailing)
	h := sc.store.Health()
	storeFailing := 0.0
	if h.State == "failing" {
		storeFailing = 1
	}
	ch <- prometheus.MustNewConstMetric(descStoreFail, prometheus.GaugeValue, storeFailing)
	ch <- prometheus.MustNewConstMetric(descStoreCheck, prometheus.GaugeValue, float64(h.LastCheckMS)/1000)
	if sc.rpc != nil {
		r := sc.rpc.Counters()
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(r.Connections))
		ch <- prometheus.MustNewConstMetric(descSubscribers, prometheus.GaugeValue, float64(r.Subscribers))
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(r.QueuedChanges))
		ch <- prometheus.MustNewConstMetric(descQueuedBytes, prometheus.GaugeValue, float64(r.QueuedBytes))
		ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(r.Rejected))
		ch <- prometheus.MustNewConstMetric(descIdleClosed, prometheus.CounterValue, float64(r.IdleClosed))
		ch <- prometheus.MustNewConstMetric(descMemoryResyncs, prometheus.CounterValue, float64(r.MemoryResyncs))
		ch <- prometheus.MustNewConstMetric(descAcceptErrors, prometheus.CounterValue, float64(r.AcceptErrors))
		ch <- prometheus.MustNewConstMetric(descGetAllCut, prometheus.CounterValue, float64(r.GetAllCut))
		for reason, n := range sc.rpc.Resyncs() {
			ch <- prometheus.MustNewConstMetric(descResyncs, prometheus.CounterValue, float64(n), reason)
		}
	}
	if sc.sup == nil {
		return
	}
	for _, u := range sc.sup.unitList() {
		var state string
		if u.runner != nil {
			state = u.runner.Status().State
			// collectors.TrafficReporter (the prometheus package holds the name).
			if tr, ok := u.runner.Collector().(interface{ Traffic() (int64, int64) }); ok {
				reqs, bytes := tr.Traffic()
				ch <- prometheus.MustNewConstMetric(descCollReqs, prometheus.CounterValue, float64(reqs), u.name)
				ch <- prometheus.MustNewConstMetric(descCollBytes, prometheus.CounterValue, float64(bytes), u.name)
			}
			if at, every := u.runner.LastSuccess(); !at.IsZero() {
				ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(at.UnixNano())/1e9, u.name)
				ch <- prometheus.MustNewConstMetric(descInterval, prometheus.GaugeValue, every.Seconds(), u.name)
			}
		} else if u.lrun != nil {
			st := u.lrun.status()
			state = st.State
			if d := st.Details; d != nil {
				ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(d.Received), u.name)
				ch <- prometheus.MustNewConstMetric(descBad, prometheus.CounterValue, float64(d.BadTotal), u.name)
				if d.OtherConsumers != nil {
					ch <- prometheus.MustNewConstMetric(descOtherCons, prometheus.GaugeValue, float64(*d.OtherConsumers), u.name)
				}
			}
			ch <- prometheus.MustNewConstMetric(descCatchUps, prometheus.CounterValue, float64(st.CatchUpPolls), u.name)
		}
		failing := 0.0
		if state == "failing" {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, failing, u.kind, u.name)
	}
}
