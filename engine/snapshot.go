package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/store"
)

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

// logDuplicates reports the keys listed more than once in one listing (extra
// counts the listings beyond the first per key) and returns their total.
func (e *Engine) logDuplicates(source string, extra map[string]int) int {
	if len(extra) == 0 {
		return 0
	}
	total := 0
	keys := make([]string, 0, len(extra))
	for k, n := range extra {
		total += n
		keys = append(keys, k)
	}
	sort.Strings(keys)
	shown := keys[:min(len(keys), 5)]
	parts := make([]string, len(shown))
	for i, k := range shown {
		parts[i] = fmt.Sprintf("%s ×%d", k, extra[k]+1)
	}
	e.log.Warn("duplicate keys in one listing: the first listing of each key is applied, the others are dropped",
		"source", source, "keys", len(keys), "dropped", total, "example", strings.Join(parts, ", "))
	return total
}
