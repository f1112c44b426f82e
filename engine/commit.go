package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/store"
)

func fmtTime(t time.Time) string { return t.UTC().Format(store.TimeFormat) }

// commit writes changes in batches of BatchSize, one transaction each, and
// publishes each batch after its commit. Encoding the next batch overlaps
// with committing this one: SQLite's single writer is the limit of a large
// apply, so the JSON work is kept off its path. Caller holds e.mu (Engine: Locking).
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

// commitBatch commits one batch with the touches, then updates the index
// and the counts and publishes the batch. Caller holds e.mu (Engine:
// Locking).
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
// the entity as last stored, so consumers know what went away. It runs on
// commit's goroutine while commit's caller holds e.mu, and reads no field
// that e.mu guards.
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

// PartialError is an apply that committed some of its changes before a
// write failed: the baseline holds exactly the committed ones, and the next
// apply of the same source completes the rest.
type PartialError struct {
	Committed, Total int
	FirstSeq         int64
	LastSeq          int64
	Err              error
}

func (p *PartialError) Error() string {
	return fmt.Sprintf("partially applied: %d of %d changes committed (seq %d..%d), then: %v",
		p.Committed, p.Total, p.FirstSeq, p.LastSeq, p.Err)
}

func (p *PartialError) Unwrap() error { return p.Err }
