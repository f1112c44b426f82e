package engine

import "time"

// Tombstones keep a deleted key from being brought back by what was true
// before its delete. Without them an absent key accepts anything: a bus
// notification delivered late (an instance.update sent before the
// instance.delete.end, applied after it), or a listing that read the
// source before the delete and is applied after it (a delta poll's overlap
// window, a poll that raced a bus delete), recreates the deleted entity
// until the next poll deletes it again.
//
// The rule, for a key with a tombstone:
//
//   - an event (ApplyEvents) whose timestamp, the source's own time of the
//     change, is not after the delete's is ignored; the delete's time is
//     the delete event's timestamp, or for a delete by a poll the time it
//     was committed (the source had deleted the key by then);
//   - a snapshot (ApplySnapshot) that started (StartedAt) before the delete
//     was committed does not create the key: its listing may have read the
//     source before the delete;
//   - anything newer creates the key as usual (a genuinely new entity with
//     the same key), and the tombstone is gone with it.
//
// Both count in Result.Ignored. Tombstones live in memory only (a restart
// forgets them: the next polls settle the rest), for tombstoneTTL at most,
// and tombstoneMax at most: past that the oldest go first. A late event or
// listing is seconds to a few minutes late (a bus backlog, a poll's
// overlap); older ones are left to the next poll, as before.
const (
	tombstoneTTL = 15 * time.Minute
	tombstoneMax = 100_000
)

// tomb is one deleted key: event is the delete's time as events compare
// with it (unix ns of the source's clock, or of the commit for a poll's
// delete), committed the local time the delete was committed.
type tomb struct {
	event, committed int64
}

// tombstones are the recent deletes, in commit order for expiry. Guarded by
// the engine's mu (Engine: Locking).
type tombstones struct {
	ttl   time.Duration
	max   int
	byKey map[string]tomb
	order []tombEntry // commit order; may hold keys deleted again or revived
	head  int
}

type tombEntry struct {
	key       string
	committed int64
}

// add records the delete of key; now is the local commit time.
func (t *tombstones) add(key string, event, now int64) {
	if t.byKey == nil {
		t.byKey = map[string]tomb{}
	}
	t.byKey[key] = tomb{event: event, committed: now}
	t.order = append(t.order, tombEntry{key: key, committed: now})
	t.prune(now)
}

// revive forgets key's tombstone: the key exists again.
func (t *tombstones) revive(key string) {
	if t.byKey != nil {
		delete(t.byKey, key)
	}
}

// get returns key's tombstone, if it has a live one.
func (t *tombstones) get(key string, now int64) (tomb, bool) {
	tb, ok := t.byKey[key]
	if !ok || now-tb.committed > int64(t.ttl) {
		return tomb{}, false
	}
	return tb, true
}

// prune drops the tombstones older than ttl and the oldest beyond max.
func (t *tombstones) prune(now int64) {
	for t.head < len(t.order) {
		en := t.order[t.head]
		if now-en.committed <= int64(t.ttl) && len(t.byKey) <= t.max {
			break
		}
		if tb, ok := t.byKey[en.key]; ok && tb.committed == en.committed {
			delete(t.byKey, en.key)
		}
		t.order[t.head] = tombEntry{}
		t.head++
	}
	// Entries of revived or re-deleted keys stay in order until their
	// turn: compact when they are most of it, so that memory follows the
	// live tombstones.
	if t.head > 1024 && t.head > len(t.order)/2 {
		t.order = append([]tombEntry(nil), t.order[t.head:]...)
		t.head = 0
	}
	if live := len(t.order) - t.head; live > 4*t.max {
		kept := t.order[:0:0]
		for _, en := range t.order[t.head:] {
			if tb, ok := t.byKey[en.key]; ok && tb.committed == en.committed {
				kept = append(kept, en)
			}
		}
		t.order, t.head = kept, 0
	}
}

// len is the number of live tombstones (for tests and status).
func (t *tombstones) len() int { return len(t.byKey) }
