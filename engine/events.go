package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/store"
)

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
// (prev), or else the stored ones; and hashes it again.
// Caller holds e.mu (Engine: Locking).
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
