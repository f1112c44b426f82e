package engine

import (
	"fmt"
	"sort"
	"strings"
)

// Ownership rule (README "Ownership"): every baseline entity has one owner,
// the source that created it or took it over. A snapshot's entity whose key
// another source owns is applied only when the snapshot's source may take
// the key over:
//
//   - the owner is no longer a configured source (a removed or renamed
//     collector, or a listener that is not a collector): anyone takes over;
//   - the owner is a reference source (static) and the claimant is not: the
//     real owner's data replaces the placeholder;
//   - otherwise the owner keeps it. A reference source's entry stands as a
//     reference (it neither overwrites nor takes over the entity); between two
//     collectors that both list the key it is an ownership conflict: the first
//     to list it keeps it until its own complete listing no longer has it (it
//     is then deleted, and the next poll of the other creates it again).
//
// Events (listeners) are not subject to the rule: they update the key under
// the owner they name.

// SetSources tells the engine which sources are configured collectors, and
// for each whether it is a reference source (a static topology whose entries
// of other sources' entities are references). Until it is called every
// source counts as configured, and a source counts as a reference source once
// it applied a snapshot with SnapshotOptions.Reference.
func (e *Engine) SetSources(sources map[string]bool) {
	m := make(map[string]bool, len(sources))
	for k, v := range sources {
		m[k] = v
	}
	e.sources.Store(&m)
}

// ownerKind reports whether the owner id is a configured source, and
// whether it is a reference source. Caller holds e.mu (Engine: Locking).
func (e *Engine) ownerKind(src map[string]bool, id uint16) (configured, reference bool) {
	if src == nil {
		return true, e.refs[id]
	}
	ref, ok := src[e.names[id]]
	return ok, ref
}

// mayTake reports whether a snapshot of a (reference) source may take over a
// key the owner id holds. Caller holds e.mu (Engine: Locking).
func (e *Engine) mayTake(src map[string]bool, owner uint16, claimantRef bool) bool {
	configured, ownerRef := e.ownerKind(src, owner)
	return !configured || (ownerRef && !claimantRef)
}

// shadow is one key of a listing that another source keeps.
type shadow struct {
	owner uint16
	ref   bool // the claimant's entry is a reference, not a conflict
	links int  // links and parent of the claimant's entry, not shown while the owner holds the key
}

// noteShadowed records the keys of one listing that other sources keep and
// logs the ones that were not kept the last time, so that a lasting conflict
// is logged once. It returns how many conflicts are new.
// Caller holds e.mu (Engine: Locking).
func (e *Engine) noteShadowed(source string, srcID uint16, cur map[string]shadow) (newConflicts int) {
	prev := e.shadowed[srcID]
	var newRefs, hidden int
	var conflictKeys, refKeys []string
	owners := map[string]bool{}
	for k, s := range cur {
		if _, ok := prev[k]; ok {
			continue
		}
		if s.ref {
			newRefs++
			hidden += s.links
			refKeys = append(refKeys, k)
			continue
		}
		newConflicts++
		conflictKeys = append(conflictKeys, k)
		owners[e.names[s.owner]] = true
	}
	if len(cur) == 0 {
		delete(e.shadowed, srcID)
	} else {
		e.shadowed[srcID] = cur
	}
	if newConflicts > 0 {
		e.log.Warn("ownership conflict: keys this collector lists are owned by another collector, which keeps them until its own listing drops them",
			"source", source, "owners", sortedKeys(owners), "keys", newConflicts, "example", sample(conflictKeys))
	}
	if newRefs > 0 {
		e.log.Info("reference entries stand for entities another source owns: they link, and never overwrite the owner's entity",
			"source", source, "keys", newRefs, "example", sample(refKeys))
		if hidden > 0 {
			e.log.Warn("links and parents carried by reference entries are not shown while another source owns the entity; declare the relationship from the static entity",
				"source", source, "links", hidden)
		}
	}
	return newConflicts
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sample returns a few of keys, sorted, for a log line.
func sample(keys []string) string {
	sort.Strings(keys)
	if len(keys) > 5 {
		return strings.Join(keys[:5], ", ") + fmt.Sprintf(", … (%d more)", len(keys)-5)
	}
	return strings.Join(keys, ", ")
}
