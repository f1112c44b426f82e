// Package engine decides what changed. It hashes entities in a canonical
// form, compares snapshots and push events with the baseline, assigns change
// sequence numbers, commits baseline and change log together through the
// store and tells the subscribers after each commit.
//
// The engine is the only writer of the store. It keeps an in-memory index of
// the baseline (key → hashes, owner, last observation) so that an unchanged
// snapshot is compared without reading the database and writes nothing.
//
// The files follow what happens: load.go reads the baseline index; apply.go
// holds what every apply shares (normalizing and hashing the entities,
// Result); snapshot.go applies a collector's listing, with explicit.go for
// its Present and Deletes, ownership.go for who may change a key, brake.go
// for mass deletes and tombstone.go for keys deleted recently; events.go
// applies push events; commit.go writes baseline and change log, one
// transaction per batch, and publishes each batch; prune.go bounds the
// change log. Engine's doc says which lock guards what, and in which order
// they are taken.
package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
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
// in seq order, never concurrently, and must not block: it runs under the
// engine's lock (Engine: Locking).
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
	// DeferLoad leaves loading the baseline index to Load, so that the
	// socket can serve readers while a large baseline loads.
	DeferLoad bool
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
//
// Locking. These are all the mutexes of the engine. A lock is only taken
// while holding locks listed before it: mu, then cmu or fps.mu; cmu and
// fps.mu are never held together, and no lock of the engine is taken while
// either is held (the logger's may be).
//
//   - mu serializes the writers (ApplySnapshot, ApplyEvents, DeleteSource,
//     Load) with whoever must not see a commit half done (Locked, LastSeq,
//     SetPublisher). It guards idx, names, nameID, lastSeq, pub, refs,
//     shadowed and tombs, and is held for a whole apply: the comparison
//     with the index, the store's writes (which take the store's own
//     commit lock, store.Store.wmu, after it) and the publication of each
//     batch. Preparing the entities (prepareAll: normalizing and hashing,
//     the main CPU cost) runs before it is taken.
//   - cmu guards counts, cnames, n, loaded and held: what status reads
//     (Counts, Len, Loaded, Held) without waiting for an apply. Writers
//     change them holding mu, then cmu (count, brake, ApplySnapshot,
//     DeleteSource, Load); readers take cmu alone.
//   - fps.mu (fingerprint.go) guards the fingerprint cache's map and batch
//     size, only inside fpCache's methods. Hashing takes it without mu
//     (prepareAll) and under mu (a KeepLinks event hashed again, keepLinks);
//     hashing reads Len (cmu) before it takes fps.mu, not while.
//
// sources, floor and the fingerprint counters are atomics, read and set
// under no lock.
//
// Publisher.Publish and Locked's fn run under mu: they must neither block
// nor call a method of the engine that takes mu (an apply, Locked, LastSeq,
// SetPublisher), which would deadlock. Locks they take (the rpc server's
// subscriber lock) come after mu. Helpers that run under mu say "Caller
// holds e.mu (Engine: Locking)".
type Engine struct {
	st  *store.Store
	o   Options
	log *slog.Logger

	mu      sync.Mutex // see Locking above; guards these and refs, shadowed, tombs
	idx     map[string]rec
	names   []string
	nameID  map[string]uint16
	lastSeq int64
	pub     Publisher

	// cmu guards what status reads without waiting for an apply (Locking).
	cmu    sync.Mutex
	counts map[[2]uint16]int // (source, type) → entities
	cnames []string          // copy of names for readers of counts
	n      int
	loaded bool
	held   map[string]map[string]int // source → type → deletes held back by the brake

	fps fpCache // hashes of fingerprinted entities (fingerprint.go)

	// Ownership (ownership.go): the configured sources (nil: all count),
	// the sources seen applying reference snapshots, and per source the
	// keys of its last listing that another source keeps. refs and
	// shadowed are guarded by mu (Locking).
	sources  atomic.Pointer[map[string]bool]
	refs     map[uint16]bool
	shadowed map[uint16]map[string]shadow

	// tombs are the recent deletes (tombstone.go); guarded by mu (Locking).
	tombs tombstones

	// floor, when set, bounds pruning: changes after it are kept (a
	// publisher has not sent them yet).
	floor atomic.Pointer[func() int64]
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
		counts: make(map[[2]uint16]int),

		refs:     make(map[uint16]bool),
		shadowed: make(map[uint16]map[string]shadow),
		tombs:    tombstones{ttl: tombstoneTTL, max: tombstoneMax},
	}
	last, _, err := st.LogBounds(ctx)
	if err != nil {
		return nil, err
	}
	e.lastSeq = last
	if !o.DeferLoad {
		if err := e.Load(ctx); err != nil {
			return nil, err
		}
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

// internBytes interns without allocating for names already known.
func (e *Engine) internBytes(b []byte) uint16 {
	if id, ok := e.nameID[string(b)]; ok {
		return id
	}
	return e.intern(string(b))
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
// fn runs under e.mu (Engine: Locking).
func (e *Engine) Locked(fn func(lastSeq int64)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn(e.lastSeq)
}

// Counts returns the number of baseline entities per source and type. It
// does not wait for an apply in progress (status must answer at once): the
// figures are those of the last commit.
func (e *Engine) Counts() map[string]map[string]int {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	out := map[string]map[string]int{}
	for k, n := range e.counts {
		if n == 0 {
			continue
		}
		src, typ := e.cnames[k[0]], e.cnames[k[1]]
		if out[src] == nil {
			out[src] = map[string]int{}
		}
		out[src][typ] = n
	}
	return out
}

// Len returns the number of entities in the baseline as of the last commit,
// without waiting for an apply in progress.
func (e *Engine) Len() int {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	return e.n
}

// Loaded reports whether the baseline index has been loaded.
func (e *Engine) Loaded() bool {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	return e.loaded
}

// count moves one entity between (source, type) cells of the counts;
// from or to may be nil. Caller holds e.mu (Engine: Locking); takes cmu.
func (e *Engine) count(from, to *rec) {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	if from != nil {
		e.counts[[2]uint16{from.source, from.typ}]--
		e.n--
	}
	if to != nil {
		e.counts[[2]uint16{to.source, to.typ}]++
		e.n++
	}
	if len(e.cnames) != len(e.names) {
		e.cnames = append([]string(nil), e.names...)
	}
}
