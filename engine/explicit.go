package engine

import (
	"github.com/openstack-synchronizer/synchronizer/entity"
)

// markPresent counts a snapshot's Present keys as listed, so that a complete
// type does not lose the entities an incremental poll only named.
func markPresent(snap *entity.Snapshot, seen map[string]struct{}) {
	for _, k := range snap.Present {
		seen[k] = struct{}{}
	}
}

// explicitDeletes turns a snapshot's Deletes into pending deletes, under the
// rules of deletes by absence: only entities the source owns, none that a
// push event observed after the poll began, none the same snapshot lists.
// Keys of a type the snapshot lists completely are left to the absence
// rules (and to the brake): a deleted entity is absent from such a listing
// anyway. Caller holds e.mu (Engine: Locking).
func (e *Engine) explicitDeletes(snap *entity.Snapshot, srcID uint16, started int64, seen map[string]struct{}, complete map[string]bool, res *Result) []pending {
	var out []pending
	queued := map[string]bool{}
	for _, k := range snap.Deletes {
		if _, ok := seen[k]; ok || queued[k] {
			continue
		}
		r, ok := e.idx[k]
		if !ok || r.source != srcID {
			continue
		}
		typ := e.names[r.typ]
		if complete[typ] || snap.AllTypes {
			continue
		}
		if r.observed > started {
			res.Ignored++
			continue
		}
		queued[k] = true
		out = append(out, pending{action: entity.Delete, key: k, typ: typ, source: e.names[srcID]})
	}
	return out
}
