package engine

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/store"
)

// ErrInvalidEntity is wrapped by errors about entities that cannot be
// stored (no type, no id, a key that does not start with the type).
var ErrInvalidEntity = errors.New("invalid entity")

// SnapshotOptions describe the poll a snapshot came from.
type SnapshotOptions struct {
	// Source is the collector's name: it owns the entities it creates, and
	// only its own entities are deleted by its snapshots.
	Source string
	// StartedAt is when the poll began. An entity observed after that (by
	// a push event) is neither reverted nor deleted by this snapshot.
	StartedAt time.Time
	// Volatile names, per type, the data fields dropped before hashing.
	Volatile map[string][]string
	// MaxDeleteRatio holds back the deletes of a type when they would
	// remove more than this share of the source's entities of that type,
	// until the next snapshot confirms them (0: no brake).
	MaxDeleteRatio float64
	// Force applies held-back deletes at once.
	Force bool
	// Reference says the source is a reference source (a static
	// topology): its entries of keys another source owns are references
	// that never overwrite or take over the owner's entity, and the
	// entries it creates are placeholders that any other source's listing
	// takes over (ownership.go).
	Reference bool
}

// Result counts what an apply did.
type Result struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Deleted   int `json:"deleted"`
	Unchanged int `json:"unchanged"`
	// Ignored counts events older than the baseline and snapshot entities
	// that a newer push event had already updated.
	Ignored int `json:"ignored"`
	// Held maps a type to the number of deletes the brake held back.
	Held map[string]int `json:"held,omitempty"`
	// Seq is the last committed seq after the apply.
	Seq int64 `json:"seq"`
	// Conflicts counts the keys of the listing that another collector
	// owns and keeps (ownership.go); NewConflicts those of them that were
	// not kept from this source at its previous listing.
	Conflicts    int `json:"conflicts,omitempty"`
	NewConflicts int `json:"-"`
	// References counts the reference entries of a reference source that
	// stand for an entity another source owns.
	References int `json:"references,omitempty"`
	// Duplicates counts the listings of a key beyond its first in one
	// snapshot: they are dropped.
	Duplicates int `json:"duplicates,omitempty"`
}

// prepared is an entity ready to compare: normalized in place, hashed.
type prepared struct {
	ent  *entity.Entity
	hash [16]byte
	core [16]byte
}

// pending is one change waiting for commit.
type pending struct {
	action string
	p      *prepared // nil for deletes of entities not in hand
	// prev is, for a delete, the entity as an earlier change of the same
	// apply left it: the store does not have it yet.
	prev   *prepared
	key    string
	typ    string
	source string
	obs    time.Time
	json   []byte
}

// prepareAll normalizes and hashes entities on all cores: canonical hashing
// is the main CPU cost of comparing a large snapshot.
func (e *Engine) prepareAll(ents []entity.Entity, source string, observed time.Time, volatile map[string][]string) ([]prepared, error) {
	out := make([]prepared, len(ents))
	e.fps.expect(len(ents))
	workers := runtime.GOMAXPROCS(0)
	if len(ents) < 256 {
		workers = 1
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	chunk := (len(ents) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(ents))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func(w, lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				if err := e.prepare(&out[i], &ents[i], source, observed, volatile); err != nil {
					errs[w] = fmt.Errorf("entity %d: %w", i, err)
					return
				}
			}
		}(w, lo, hi)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// prepare normalizes src in place (the snapshot is the engine's once handed
// over) and hashes it.
func (e *Engine) prepare(p *prepared, src *entity.Entity, source string, observed time.Time, volatile map[string][]string) error {
	p.ent = src
	en := src
	if en.Type == "" || strings.Contains(en.Type, ":") {
		return fmt.Errorf("%w: type %q (key %q): must be non-empty and contain no ':'", ErrInvalidEntity, en.Type, en.Key)
	}
	if en.Key == "" {
		if en.ID == "" {
			return fmt.Errorf("%w: %s entity %q has neither key nor id", ErrInvalidEntity, en.Type, en.Name)
		}
		en.Key = entity.MakeKey(en.Type, en.ID)
	} else if !strings.HasPrefix(en.Key, en.Type+":") || len(en.Key) == len(en.Type)+1 {
		return fmt.Errorf("%w: key %q must be \"%s:<id>\"", ErrInvalidEntity, en.Key, en.Type)
	}
	if en.ID == "" {
		_, en.ID = entity.SplitKey(en.Key)
	}
	if en.Source == "" {
		en.Source = source
	}
	if en.Timestamp.IsZero() {
		en.Timestamp = observed
	}
	en.Timestamp = en.Timestamp.UTC()
	if en.Data == nil {
		en.Data = map[string]any{}
	}
	for _, f := range volatile[en.Type] {
		entity.DropField(en.Data, f)
	}
	e.hashPrepared(p, volatile[en.Type])
	return nil
}

// ApplySnapshot compares a collector's snapshot with the baseline and commits
// the differences. Deletes are limited to snap.Types and to entities owned by
// o.Source. An error leaves the baseline as the last committed batch left it;
// an invalid entity fails the whole snapshot before anything is written.
func (e *Engine) ApplySnapshot(ctx context.Context, snap *entity.Snapshot, o SnapshotOptions) (Result, error) {
	now := e.o.Now().UTC()
	if o.StartedAt.IsZero() {
		o.StartedAt = now
	}
	preps, err := e.prepareAll(snap.Entities, o.Source, now, o.Volatile)
	if err != nil {
		return Result{}, fmt.Errorf("engine: snapshot of %s: %w", o.Source, err)
	}
	started := o.StartedAt.UnixNano()

	e.mu.Lock()
	defer e.mu.Unlock()
	var res Result
	srcID := e.intern(o.Source)
	if o.Reference {
		e.refs[srcID] = true
	} else {
		delete(e.refs, srcID)
	}
	var sources map[string]bool
	if p := e.sources.Load(); p != nil {
		sources = *p
	}
	seen := make(map[string]struct{}, len(preps))
	var dups map[string]int
	var shadowed map[string]shadow
	var changes []pending
	var touches []store.Touch
	for i := range preps {
		p := &preps[i]
		key := p.ent.Key
		if _, dup := seen[key]; dup {
			// The first listing of a key wins, whatever the others say.
			if dups == nil {
				dups = map[string]int{}
			}
			dups[key]++
			continue
		}
		seen[key] = struct{}{}
		r, ok := e.idx[key]
		if ok && r.source != srcID && !e.mayTake(sources, r.source, o.Reference) {
			// Another source keeps the key: this listing neither
			// changes nor takes it over.
			if shadowed == nil {
				shadowed = map[string]shadow{}
			}
			_, ownerRef := e.ownerKind(sources, r.source)
			s := shadow{owner: r.source, ref: o.Reference && !ownerRef, links: len(p.ent.Links)}
			if p.ent.ParentKey != "" {
				s.links++
			}
			shadowed[key] = s
			if s.ref {
				res.References++
			} else {
				res.Conflicts++
			}
			continue
		}
		switch {
		case !ok:
			if tb, dead := e.tombs.get(key, now.UnixNano()); dead && started <= tb.committed {
				// Listed before its delete was committed (tombstone.go).
				res.Ignored++
				continue
			}
			changes = append(changes, pending{action: entity.Create, p: p})
		case r.observed > started:
			res.Ignored++
		case r.hash == p.hash:
			res.Unchanged++
			if r.source != srcID {
				touches = append(touches, store.Touch{Key: key, Source: o.Source, ObservedAt: fmtTime(now)})
			}
		default:
			changes = append(changes, pending{action: entity.Update, p: p})
		}
	}

	markPresent(snap, seen)
	complete := map[string]bool{}
	for _, t := range snap.Types {
		complete[t] = true
	}
	if len(complete) > 0 || snap.AllTypes {
		owned := map[string]int{}
		missing := map[string][]string{}
		for key, r := range e.idx {
			if r.source != srcID {
				continue
			}
			typ := e.names[r.typ]
			if !complete[typ] && !snap.AllTypes {
				continue
			}
			owned[typ]++
			if _, ok := seen[key]; ok {
				continue
			}
			if r.observed > started {
				res.Ignored++
				continue
			}
			missing[typ] = append(missing[typ], key)
		}
		for typ, keys := range missing {
			if e.brake(o, typ, len(keys), owned[typ]) {
				if res.Held == nil {
					res.Held = map[string]int{}
				}
				res.Held[typ] = len(keys)
				continue
			}
			for _, k := range keys {
				changes = append(changes, pending{action: entity.Delete, key: k, typ: typ, source: o.Source})
			}
		}
		// A type whose listing no longer wants a mass delete releases the brake.
		e.cmu.Lock()
		for typ := range e.held[o.Source] {
			if (complete[typ] || snap.AllTypes) && len(missing[typ]) == 0 {
				delete(e.held[o.Source], typ)
			}
		}
		e.cmu.Unlock()
	}
	changes = append(changes, e.explicitDeletes(snap, srcID, started, seen, complete, &res)...)
	res.Duplicates = e.logDuplicates(o.Source, dups)
	res.NewConflicts = e.noteShadowed(o.Source, srcID, shadowed)
	if err := e.commit(ctx, changes, touches, now, &res); err != nil {
		return res, e.applyError("snapshot of "+o.Source, err)
	}
	return res, nil
}

// applyError wraps a commit error; a commit that got some batches in
// before it failed is a PartialError.
func (e *Engine) applyError(what string, err error) error {
	var p *PartialError
	if errors.As(err, &p) {
		p.Err = fmt.Errorf("engine: %s: %w", what, p.Err)
		return p
	}
	return fmt.Errorf("engine: %s: %w", what, err)
}

// brake reports whether the deletes of typ must be held back, and records
// or clears the hold. Caller holds e.mu.
func (e *Engine) brake(o SnapshotOptions, typ string, deletes, owned int) bool {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	held := e.held[o.Source]
	if o.Force || o.MaxDeleteRatio <= 0 || owned == 0 || float64(deletes)/float64(owned) <= o.MaxDeleteRatio {
		delete(held, typ)
		return false
	}
	if _, confirmed := held[typ]; confirmed {
		// The previous complete listing wanted the same mass delete: it is
		// real, not a glitch of one poll.
		e.log.Warn("applying mass delete confirmed by a second listing", "source", o.Source, "type", typ, "deletes", deletes, "of", owned)
		delete(held, typ)
		return false
	}
	if held == nil {
		held = map[string]int{}
		e.held[o.Source] = held
	}
	held[typ] = deletes
	e.log.Warn("holding back mass delete until the next listing confirms it",
		"source", o.Source, "type", typ, "deletes", deletes, "of", owned, "max_delete_ratio", o.MaxDeleteRatio)
	return true
}

// Held returns the deletes held back by the brake, per source and type.
func (e *Engine) Held() map[string]map[string]int {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	out := map[string]map[string]int{}
	for s, m := range e.held {
		if len(m) == 0 {
			continue
		}
		out[s] = map[string]int{}
		for t, n := range m {
			out[s][t] = n
		}
	}
	return out
}

// ApplyEvents applies pushed changes from source, in order. An event older
// than the baseline's last observation of its key is ignored; an update
// whose type, id, name, parent, state, project and links equal the baseline
// only refreshes the observation time (data from notifications and from
// polls differ in shape; only a poll refreshes data).
func (e *Engine) ApplyEvents(ctx context.Context, source string, evs []entity.Event) (Result, error) {
	now := e.o.Now().UTC()
	ents := make([]entity.Entity, len(evs))
	for i := range evs {
		ents[i] = evs[i].Entity
	}
	preps, err := e.prepareAll(ents, source, now, nil)
	if err != nil {
		return Result{}, fmt.Errorf("engine: events of %s: %w", source, err)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	var res Result
	// overlay holds the state this batch has reached per key, so that
	// several events of one key in a batch compare with each other.
	type state struct {
		r       rec
		present bool
		// deleted: by an event of this batch, at gone.
		deleted bool
		gone    int64
	}
	overlay := map[string]state{}
	// written is the last create or update of each key in this batch, for
	// a later delete of the same key to carry.
	written := map[string]*prepared{}
	var changes []pending
	var touches []store.Touch
	for i := range preps {
		p := &preps[i]
		key, ts := p.ent.Key, p.ent.Timestamp.UnixNano()
		cur, ok := overlay[key]
		if !ok {
			cur.r, cur.present = e.idx[key]
		}
		if cur.present && ts < cur.r.observed {
			res.Ignored++
			continue
		}
		if !cur.present && evs[i].Action != entity.Delete {
			// A key deleted in this batch, or with a tombstone: an event
			// not after the delete does not bring it back (tombstone.go).
			gone, dead := cur.gone, cur.deleted
			if !ok {
				var tb tomb
				tb, dead = e.tombs.get(key, now.UnixNano())
				gone = tb.event
			}
			if dead && ts <= gone {
				res.Ignored++
				continue
			}
		}
		if evs[i].KeepLinks && evs[i].Action != entity.Delete && cur.present {
			if err := e.keepLinks(ctx, p, written[key], source, now); err != nil {
				return res, fmt.Errorf("engine: events of %s: %w", source, err)
			}
		}
		srcID := e.intern(p.ent.Source)
		next := rec{hash: p.hash, core: p.core, observed: ts, source: srcID, typ: e.intern(p.ent.Type)}
		switch {
		case evs[i].Action == entity.Delete:
			if !cur.present {
				res.Ignored++
				continue
			}
			changes = append(changes, pending{action: entity.Delete, key: key, typ: p.ent.Type, source: p.ent.Source,
				obs: p.ent.Timestamp, prev: written[key]})
			delete(written, key)
			overlay[key] = state{deleted: true, gone: ts}
			continue
		case !cur.present:
			changes = append(changes, pending{action: entity.Create, p: p})
			written[key] = p
		case cur.r.core == p.core:
			res.Unchanged++
			touches = append(touches, store.Touch{Key: key, Source: e.names[cur.r.source], ObservedAt: fmtTime(p.ent.Timestamp)})
			next.hash, next.core, next.source = cur.r.hash, cur.r.core, cur.r.source
		default:
			changes = append(changes, pending{action: entity.Update, p: p})
			written[key] = p
		}
		overlay[key] = state{r: next, present: true}
	}
	if err := e.commit(ctx, changes, touches, now, &res); err != nil {
		return res, e.applyError("events of "+source, err)
	}
	return res, nil
}

// keepLinks gives the entity of a KeepLinks event for a present key the
// links it has: those of the batch's last create or update of the key
// (prev), or else the stored ones; and hashes it again. Caller holds e.mu.
func (e *Engine) keepLinks(ctx context.Context, p *prepared, prev *prepared, source string, now time.Time) error {
	var links []entity.Link
	if prev != nil {
		links = prev.ent.Links
	} else {
		stored, err := e.storedLinks(ctx, p.ent.Key)
		if err != nil {
			return err
		}
		links = stored
	}
	p.ent.Links = links
	p.ent.Fingerprint = [16]byte{} // no longer what the source sent
	return e.prepare(p, p.ent, source, now, nil)
}

// storedLinks reads the links of the stored entity of key.
func (e *Engine) storedLinks(ctx context.Context, key string) ([]entity.Link, error) {
	b, err := e.st.WriterEntity(ctx, key)
	if err != nil || b == nil {
		return nil, err
	}
	var en struct {
		Links []entity.Link `json:"links"`
	}
	if err := json.Unmarshal(b, &en); err != nil {
		return nil, fmt.Errorf("read links of %s: %w", key, err)
	}
	return en.Links, nil
}

// DeleteSource deletes every entity owned by source, through the change log
// (used when an operator removes a collector and asks for its entities to go).
func (e *Engine) DeleteSource(ctx context.Context, source string) (Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.nameID[source]
	var res Result
	if !ok {
		res.Seq = e.lastSeq
		return res, nil
	}
	var changes []pending
	for key, r := range e.idx {
		if r.source == id {
			changes = append(changes, pending{action: entity.Delete, key: key, typ: e.names[r.typ], source: source})
		}
	}
	e.cmu.Lock()
	delete(e.held, source)
	e.cmu.Unlock()
	err := e.commit(ctx, changes, nil, e.o.Now().UTC(), &res)
	return res, err
}

func fmtTime(t time.Time) string { return t.UTC().Format(store.TimeFormat) }

// commit writes changes in batches of BatchSize, one transaction each, and
// publishes each batch after its commit. Encoding the next batch overlaps
// with committing this one: SQLite's single writer is the limit of a large
// apply, so the JSON work is kept off its path. Caller holds e.mu.
func (e *Engine) commit(ctx context.Context, changes []pending, touches []store.Touch, now time.Time, res *Result) error {
	var batches [][]pending
	for len(changes) > 0 {
		n := min(len(changes), e.o.BatchSize)
		batches = append(batches, changes[:n])
		changes = changes[n:]
	}
	encoded := make([]chan error, len(batches))
	for i := range encoded {
		encoded[i] = make(chan error, 1)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i, b := range batches {
			select {
			case <-stop:
				return
			default:
			}
			encoded[i] <- e.encode(ctx, b, now)
		}
	}()
	at := fmtTime(now)
	total, done := 0, 0
	for _, b := range batches {
		total += len(b)
	}
	first := e.lastSeq + 1
	// A failure after some batches are in leaves the baseline as they left
	// it: correct, but short of the snapshot; the caller must say so.
	fail := func(err error) error {
		res.Seq = e.lastSeq
		if done == 0 {
			return err
		}
		return &PartialError{Committed: done, Total: total, FirstSeq: first, LastSeq: e.lastSeq, Err: err}
	}
	for i, batch := range batches {
		if err := <-encoded[i]; err != nil {
			return fail(err)
		}
		if err := e.commitBatch(ctx, batch, touches, at, res); err != nil {
			return fail(err)
		}
		// Committed and published: the batch's JSON is garbage now, not
		// kept until the last batch (a large apply held a copy of the
		// whole snapshot's JSON otherwise).
		for j := range batch {
			batch[j].json = nil
		}
		done += len(batch)
		touches = nil
	}
	if len(touches) > 0 {
		if err := e.commitBatch(ctx, nil, touches, at, res); err != nil {
			return err
		}
	}
	res.Seq = e.lastSeq
	return nil
}

func (e *Engine) commitBatch(ctx context.Context, batch []pending, touches []store.Touch, at string, res *Result) error {
	rows := make([]store.Row, len(batch))
	pubs := make([]Published, len(batch))
	seq := e.lastSeq
	for i := range batch {
		c := &batch[i]
		seq++
		row := store.Row{Seq: seq, Action: c.action, At: at, Entity: c.json}
		if c.p != nil {
			row.Key, row.Type, row.Source = c.p.ent.Key, c.p.ent.Type, c.p.ent.Source
			row.Hash, row.CoreHash = hex.EncodeToString(c.p.hash[:]), hex.EncodeToString(c.p.core[:])
			row.ObservedAt = fmtTime(c.p.ent.Timestamp)
		} else {
			row.Key, row.Type, row.Source = c.key, c.typ, c.source
		}
		rows[i] = row
		pubs[i] = Published{Seq: seq, Type: row.Type, JSON: changeJSON(seq, c.action, c.json)}
	}
	if err := e.st.Commit(ctx, rows, touches); err != nil {
		return err
	}
	e.lastSeq = seq
	committed := e.o.Now().UnixNano()
	for i := range batch {
		c := &batch[i]
		old, had := e.idx[c.key]
		if c.p != nil {
			old, had = e.idx[c.p.ent.Key]
		}
		var from *rec
		if had {
			from = &old
		}
		switch c.action {
		case entity.Delete:
			delete(e.idx, c.key)
			e.count(from, nil)
			res.Deleted++
			// encode set obs: the delete event's time, or the apply's.
			e.tombs.add(c.key, c.obs.UnixNano(), committed)
		default:
			e.tombs.revive(c.p.ent.Key)
			r := rec{hash: c.p.hash, core: c.p.core, observed: c.p.ent.Timestamp.UnixNano(),
				source: e.intern(c.p.ent.Source), typ: e.intern(c.p.ent.Type)}
			e.idx[c.p.ent.Key] = r
			e.count(from, &r)
			if c.action == entity.Create {
				res.Created++
			} else {
				res.Updated++
			}
		}
	}
	// Touches change owner and observation time without a change.
	for _, t := range touches {
		r, ok := e.idx[t.Key]
		if !ok {
			continue
		}
		old := r
		r.source = e.intern(t.Source)
		if obs, err := parseTime([]byte(t.ObservedAt)); err == nil && obs > r.observed {
			r.observed = obs
		}
		e.idx[t.Key] = r
		if old.source != r.source {
			e.count(&old, &r)
		}
	}
	if e.pub != nil && len(pubs) > 0 {
		e.pub.Publish(pubs)
	}
	return nil
}

// encode marshals the entities of one batch on all cores. A delete carries
// the entity as last stored, so consumers know what went away.
func (e *Engine) encode(ctx context.Context, changes []pending, now time.Time) error {
	for i := range changes {
		c := &changes[i]
		if c.action != entity.Delete {
			continue
		}
		if c.obs.IsZero() {
			c.obs = now
		}
		if c.prev != nil {
			last := *c.prev.ent
			last.Timestamp = c.obs.UTC()
			c.json = appendEntity(nil, &last)
			continue
		}
		// Through the writer's connection: the engine's lock is held, and
		// slow get_all clients may hold every reader.
		b, err := e.st.WriterEntity(ctx, c.key)
		if err != nil {
			return err
		}
		if b == nil {
			typ, id := entity.SplitKey(c.key)
			b = appendEntity(nil, &entity.Entity{Key: c.key, Type: typ, ID: id, Source: c.source, Data: map[string]any{}})
		}
		if c.obs.IsZero() {
			c.obs = now
		}
		c.json = withTimestamp(b, c.obs)
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(changes); i += workers {
				if c := &changes[i]; c.p != nil {
					c.json = appendEntity(make([]byte, 0, 1024), c.p.ent)
				}
			}
		}(w)
	}
	wg.Wait()
	return nil
}

// withTimestamp sets the timestamp of a stored entity's JSON to when its
// deletion was observed.
func withTimestamp(b []byte, t time.Time) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return b
	}
	ts, _ := json.Marshal(t.UTC())
	m["timestamp"] = ts
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// changeJSON turns an entity's JSON object into the change object by
// prepending seq and action, without decoding it again.
func changeJSON(seq int64, action string, ent []byte) []byte {
	return AppendChangeJSON(make([]byte, 0, len(ent)+40), seq, action, ent)
}

// AppendChangeJSON appends the change object of a stored entity to out.
func AppendChangeJSON(out []byte, seq int64, action string, ent []byte) []byte {
	out = append(out, `{"seq":`...)
	out = strconv.AppendInt(out, seq, 10)
	out = append(out, `,"action":"`...)
	out = append(out, action...)
	out = append(out, '"')
	if len(ent) > 2 {
		out = append(out, ',')
		out = append(out, ent[1:]...)
	} else {
		out = append(out, '}')
	}
	return out
}
