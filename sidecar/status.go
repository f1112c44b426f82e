package sidecar

import (
	"context"
	"sort"
	"time"

	"github.com/openstack-synchronizer/synchronizer/buildinfo"
	"github.com/openstack-synchronizer/synchronizer/collectors"
	"github.com/openstack-synchronizer/synchronizer/listeners"
	"github.com/openstack-synchronizer/synchronizer/publishers"
	"github.com/openstack-synchronizer/synchronizer/rpc"
	"github.com/openstack-synchronizer/synchronizer/store"
)

// The answer of the status RPC (docs/contract.md). The fields of each
// struct are in the order of their JSON names, as when status was built of
// maps: the encoding is the same byte for byte
// (testdata/status.golden.json). Pointers are figures that are absent,
// rather than zero, until known.

type statusReport struct {
	ChangeLog   changeLogStatus             `json:"change_log"`
	Collectors  []collectors.Status         `json:"collectors"`
	Config      configStatus                `json:"config"`
	Counts      map[string]map[string]int   `json:"counts"`
	Database    string                      `json:"database"`
	DatabaseID  string                      `json:"database_id"`
	Entities    int                         `json:"entities"`
	HeldDeletes map[string]map[string]int   `json:"held_deletes"`
	Listeners   []listenerStatus            `json:"listeners"`
	PID         int                         `json:"pid"`
	Publishers  map[string]publishers.Stats `json:"publishers,omitempty"`
	RPC         rpc.Counters                `json:"rpc"`
	Socket      string                      `json:"socket"`
	StartedAt   time.Time                   `json:"started_at"`
	Store       storeStatus                 `json:"store"`
	Version     buildinfo.Info              `json:"version"`
	WAL         store.WALStats              `json:"wal"`
}

type changeLogStatus struct {
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`
}

// configStatus is the running configuration. Status is served while the
// baseline loads, before the first configuration is applied: path, hash
// and active types are absent then.
type configStatus struct {
	ActiveEntityTypes *[]string `json:"active_entity_types,omitempty"`
	Hash              *string   `json:"hash,omitempty"`
	LastError         string    `json:"last_error,omitempty"`
	LastErrorAt       time.Time `json:"last_error_at,omitzero"`
	LoadedAt          time.Time `json:"loaded_at"`
	NeedsRestart      []string  `json:"needs_restart,omitempty"`
	Path              *string   `json:"path,omitempty"`
	Reloads           int64     `json:"reloads"`
}

type storeStatus struct {
	Checks      int64       `json:"checks"`
	LastCheck   time.Time   `json:"last_check,omitzero"`
	LastCheckMS int64       `json:"last_check_ms"`
	Message     string      `json:"message,omitempty"`
	SeqGaps     []store.Gap `json:"seq_gaps,omitempty"`
	State       string      `json:"state"`
}

// listenerStatus is a listener runner's figures. Messages and BadMessages
// repeat the listener's own (details), in the same place for every
// listener type.
type listenerStatus struct {
	BadMessages     *int64            `json:"bad_messages,omitempty"`
	CatchUpFailures int64             `json:"catch_up_failures"`
	CatchUpPolls    int64             `json:"catch_up_polls"`
	CatchUps        int64             `json:"catch_ups"`
	Details         *listeners.Status `json:"details,omitempty"`
	Entities        map[string]int    `json:"entities,omitzero"`
	LastCatchUp     *catchUpReport    `json:"last_catch_up,omitempty"`
	LastError       string            `json:"last_error,omitempty"`
	LastErrorAt     time.Time         `json:"last_error_at,omitzero"`
	LastSuccess     time.Time         `json:"last_success,omitzero"`
	Messages        *int64            `json:"messages,omitempty"`
	Name            string            `json:"name"`
	StartedAt       time.Time         `json:"started_at,omitzero"`
	Starts          int64             `json:"starts"`
	State           string            `json:"state"`
}

type catchUpReport struct {
	At             time.Time `json:"at"`
	Collectors     []string  `json:"collectors"`
	LastError      string    `json:"last_error,omitempty"`
	LastPollDoneAt time.Time `json:"last_poll_done_at,omitzero"`
	Reason         string    `json:"reason"`
}

func (b backend) Status(ctx context.Context) (any, error) {
	sc := b.sc
	last, pruned, err := sc.store.LogBounds(ctx)
	if err != nil {
		return nil, err
	}
	st := statusReport{
		Version:     buildinfo.Get(),
		PID:         sc.pid,
		StartedAt:   sc.started.UTC(),
		Socket:      sc.socket,
		Database:    sc.store.Path(),
		DatabaseID:  sc.store.DatabaseID(),
		Store:       sc.storeStatus(),
		Entities:    sc.engine.Len(),
		Counts:      sc.engine.Counts(),
		HeldDeletes: sc.engine.Held(),
		ChangeLog:   changeLogStatus{FirstSeq: pruned + 1, LastSeq: last},
		RPC:         sc.rpc.Counters(),
		WAL:         sc.store.WALStats(),
	}
	if sc.pubs != nil && sc.pubs.Len() > 0 {
		st.Publishers = sc.pubs.Status()
	}
	st.Config, st.Collectors, st.Listeners = sc.sup.status()
	sort.Slice(st.Collectors, func(i, j int) bool { return st.Collectors[i].Name < st.Collectors[j].Name })
	return st, nil
}

// status is the supervisor's part of status: the configuration and the
// units, listeners sorted by name.
func (s *supervisor) status() (configStatus, []collectors.Status, []listenerStatus) {
	counts := s.sc.engine.Counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	cols := []collectors.Status{}
	lis := []listenerStatus{}
	for _, u := range s.units {
		if u.runner != nil {
			st := u.runner.Status()
			st.Entities = countsOf(counts, u.name)
			cols = append(cols, st)
		}
		if u.lrun != nil {
			st := u.lrun.status()
			st.Entities = countsOf(counts, u.name)
			lis = append(lis, st)
		}
	}
	sort.Slice(lis, func(i, j int) bool { return lis[i].Name < lis[j].Name })
	cfg := configStatus{LoadedAt: s.loadedAt.UTC(), Reloads: s.reloads, NeedsRestart: s.restartMsg}
	if s.cfg != nil {
		cfg.Path, cfg.Hash, cfg.ActiveEntityTypes = &s.cfg.Path, &s.cfg.Hash, &s.cfg.ActiveEntityTypes
	}
	if s.lastErr != "" {
		cfg.LastError, cfg.LastErrorAt = s.lastErr, s.lastErrAt.UTC()
	}
	return cfg, cols, lis
}

func (r *listenerRunner) status() listenerStatus {
	r.mu.Lock()
	st := listenerStatus{Name: r.name, State: r.state, Starts: r.starts, StartedAt: r.startedAt.UTC(), LastSuccess: r.lastApply.UTC()}
	if r.lastErr != "" {
		st.LastError, st.LastErrorAt = r.lastErr, r.lastErrAt.UTC()
	}
	if h, ok := r.l.(listeners.HealthReporter); ok && r.state == "running" {
		if why := h.Down(); why != "" {
			st.State, st.LastError = "failing", why
		}
	}
	st.CatchUps, st.CatchUpPolls, st.CatchUpFailures = r.cu.asked, r.cu.polls, r.cu.failures
	if r.cu.asked > 0 {
		st.LastCatchUp = &catchUpReport{At: r.cu.at, Reason: r.cu.reason, Collectors: r.cu.collectors,
			LastPollDoneAt: r.cu.doneAt, LastError: r.cu.lastErr}
	}
	r.mu.Unlock()
	if sr, ok := r.l.(listeners.StatusReporter); ok {
		d := sr.Status()
		st.Details, st.Messages, st.BadMessages = &d, &d.Received, &d.BadTotal
	}
	return st
}

// storeStatus is the store's part of status.
func (sc *Sidecar) storeStatus() storeStatus {
	h := sc.store.Health()
	return storeStatus{State: h.State, Checks: h.Checks, LastCheckMS: h.LastCheckMS, LastCheck: h.LastCheck,
		Message: h.Message, SeqGaps: sc.store.Gaps()}
}
