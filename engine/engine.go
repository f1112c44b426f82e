// Package engine decides what changed. It hashes entities in a canonical
// form, compares snapshots and push events with the baseline, assigns change
// sequence numbers, commits baseline and change log together through the
// store and tells the subscribers after each commit.
//
// The engine is the only writer of the store. It keeps an in-memory index of
// the baseline (key → hashes, owner, last observation) so that an unchanged
// snapshot is compared without reading the database and writes nothing.
package engine

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/store"
)

// Published is one committed change as subscribers receive it: JSON is the
// complete change object (entity fields plus seq and action).
type Published struct {
	Seq  int64
	Type string
	JSON []byte
}

// Publisher receives committed changes. Publish is called after each commit,
// in seq order, never concurrently, and must not block.
type Publisher interface {
	Publish([]Published)
}

// Options configure an Engine.
type Options struct {
	// BatchSize is the most changes committed in one transaction.
	BatchSize int
	// RetainCount and RetainAge bound the change log (0: no bound).
	RetainCount int64
	RetainAge   time.Duration
	Logger      *slog.Logger
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// rec is the index entry of one baseline row. Owner and type are interned
// as small numbers to keep a million entries within a bounded memory.
type rec struct {
	hash     [16]byte
	core     [16]byte
	observed int64 // unix nanoseconds
	source   uint16
	typ      uint16
}

// Engine applies snapshots and events. Its methods are safe for concurrent
// use; applies are serialized.
type Engine struct {
	st  *store.Store
	o   Options
	log *slog.Logger

	mu      sync.Mutex // serializes writers and guards everything below
	idx     map[string]rec
	names   []string
	nameID  map[string]uint16
	lastSeq int64
	pub     Publisher
	held    map[string]map[string]int // source → type → deletes held back by the brake
}

// New loads the baseline index from st.
func New(ctx context.Context, st *store.Store, o Options) (*Engine, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	e := &Engine{
		st: st, o: o, log: o.Logger,
		idx:    make(map[string]rec),
		nameID: make(map[string]uint16),
		held:   make(map[string]map[string]int),
	}
	last, _, err := st.LogBounds(ctx)
	if err != nil {
		return nil, err
	}
	e.lastSeq = last
	err = st.ScanBaseline(ctx, func(b store.BaselineRow) error {
		var r rec
		if _, err := hex.Decode(r.hash[:], []byte(b.Hash)); err != nil {
			return fmt.Errorf("engine: baseline %s: bad hash: %w", b.Key, err)
		}
		// A row without core hash (hand-edited) simply never matches one.
		hex.Decode(r.core[:], []byte(b.CoreHash))
		t, err := time.Parse(time.RFC3339Nano, b.ObservedAt)
		if err != nil {
			return fmt.Errorf("engine: baseline %s: bad observed_at: %w", b.Key, err)
		}
		r.observed = t.UnixNano()
		r.source = e.intern(b.Source)
		r.typ = e.intern(b.Type)
		e.idx[b.Key] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("engine: load baseline: %w", err)
	}
	return e, nil
}

func (e *Engine) intern(s string) uint16 {
	if id, ok := e.nameID[s]; ok {
		return id
	}
	id := uint16(len(e.names))
	e.names = append(e.names, s)
	e.nameID[s] = id
	return id
}

// SetPublisher sets who is told about committed changes.
func (e *Engine) SetPublisher(p Publisher) {
	e.mu.Lock()
	e.pub = p
	e.mu.Unlock()
}

// LastSeq returns the seq of the last committed change.
func (e *Engine) LastSeq() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastSeq
}

// Locked runs fn while no change can be committed, with the last committed
// seq. Subscribers use it to join the stream without a gap or a duplicate.
func (e *Engine) Locked(fn func(lastSeq int64)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn(e.lastSeq)
}

// Counts returns the number of baseline entities per source and type.
func (e *Engine) Counts() map[string]map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]map[string]int{}
	for _, r := range e.idx {
		src, typ := e.names[r.source], e.names[r.typ]
		if out[src] == nil {
			out[src] = map[string]int{}
		}
		out[src][typ]++
	}
	return out
}

// Len returns the number of entities in the baseline.
func (e *Engine) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.idx)
}

// Prune applies the change-log retention.
func (e *Engine) Prune(ctx context.Context) (int64, error) {
	return e.st.Prune(ctx, e.o.RetainCount, e.o.RetainAge, e.o.Now())
}

// RunPruner prunes the change log every interval until ctx ends.
func (e *Engine) RunPruner(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := e.Prune(ctx); err != nil {
			if ctx.Err() == nil {
				e.log.Error("prune change log", "err", err)
			}
		} else if n > 0 {
			e.log.Info("pruned change log", "changes", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
