package engine

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/store/storetest"
)

// clock is a settable engine clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// A deleted key is not brought back by what was true before its delete: a
// late bus event, or a listing that began before the delete was committed.
// Something newer brings it back (tombstone.go).
func TestTombstones(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	all := []string{"nova.instance"}
	ev := func(action, state string, at time.Duration) entity.Event {
		en := inst("a", state, nil)
		en.Source, en.Timestamp = "bus", t0.Add(at)
		return entity.Event{Action: action, Entity: en}
	}
	// Each step runs at t0 + at on the engine's clock.
	type step struct {
		at     time.Duration
		events []entity.Event            // applied as one batch, or
		snap   *entity.Snapshot          // applied with StartedAt t0 + started
		start  time.Duration             // the snapshot's StartedAt
		setup  func(e *Engine, c *clock) // before the step
	}
	at := func(at time.Duration, evs ...entity.Event) step { return step{at: at, events: evs} }
	// Most cases begin with a created at 1 s and deleted by an event at 3 s.
	afterEventDelete := func(more ...step) []step {
		return append([]step{
			at(1*time.Second, ev(entity.Update, "ACTIVE", 1*time.Second)),
			at(3*time.Second, ev(entity.Delete, "DELETED", 3*time.Second)),
		}, more...)
	}
	created := []string{"create nova.instance:a"}
	deleted := []string{"delete nova.instance:a"}
	cases := []struct {
		name  string
		steps []step
		want  [][]string // published per step
	}{
		{"late event after an event delete is ignored",
			afterEventDelete(at(4*time.Second, ev(entity.Update, "ACTIVE", 2*time.Second))),
			[][]string{created, deleted, nil}},
		{"an event of the delete's own time is ignored",
			afterEventDelete(at(4*time.Second, ev(entity.Update, "ACTIVE", 3*time.Second))),
			[][]string{created, deleted, nil}},
		{"a newer event recreates",
			afterEventDelete(
				at(4*time.Second, ev(entity.Update, "ACTIVE", 4*time.Second)),
				// and its tombstone is gone: an older event updates nothing
				// but is judged as any event of a present key
				at(5*time.Second, ev(entity.Update, "SHUTOFF", 2*time.Second)),
			),
			[][]string{created, deleted, created, nil}},
		{"late event in the delete's batch is ignored",
			[]step{
				at(1*time.Second, ev(entity.Update, "ACTIVE", 1*time.Second)),
				at(3*time.Second, ev(entity.Delete, "DELETED", 3*time.Second), ev(entity.Update, "ACTIVE", 2*time.Second)),
			},
			[][]string{created, deleted}},
		{"late event after a poll's delete (absence) is ignored",
			[]step{
				{at: 1 * time.Second, start: 1 * time.Second, snap: snapOf(all, inst("a", "ACTIVE", nil))},
				{at: 10 * time.Second, start: 10 * time.Second, snap: snapOf(all)},
				at(11*time.Second, ev(entity.Update, "ACTIVE", 9*time.Second)),
			},
			[][]string{created, deleted, nil}},
		{"late event after a poll's explicit delete is ignored",
			[]step{
				{at: 1 * time.Second, start: 1 * time.Second, snap: snapOf(all, inst("a", "ACTIVE", nil))},
				{at: 10 * time.Second, start: 10 * time.Second, snap: &entity.Snapshot{Deletes: []string{"nova.instance:a"}}},
				at(11*time.Second, ev(entity.Update, "ACTIVE", 9*time.Second)),
			},
			[][]string{created, deleted, nil}},
		{"a listing begun before an event delete does not recreate",
			// a delta poll that read Nova at 2 s, applied at 4 s
			afterEventDelete(step{at: 4 * time.Second, start: 2 * time.Second, snap: &entity.Snapshot{Entities: []entity.Entity{inst("a", "ACTIVE", nil)}}}),
			[][]string{created, deleted, nil}},
		{"a listing begun after the delete recreates",
			afterEventDelete(step{at: 5 * time.Second, start: 4 * time.Second, snap: &entity.Snapshot{Entities: []entity.Entity{inst("a", "ACTIVE", nil)}}}),
			[][]string{created, deleted, created}},
		{"tombstones expire",
			afterEventDelete(at(3*time.Second+tombstoneTTL+time.Second, ev(entity.Update, "ACTIVE", 2*time.Second))),
			[][]string{created, deleted, created}},
		{"the oldest tombstones go beyond the count",
			// two more deletes with a bound of two push a's out
			afterEventDelete(step{at: 4 * time.Second, setup: func(e *Engine, c *clock) {
				e.tombs.max = 2
				for _, id := range []string{"b", "c"} {
					en := inst(id, "ACTIVE", nil)
					en.Source, en.Timestamp = "bus", c.now()
					ctx := context.Background()
					check(t)(e.ApplyEvents(ctx, "bus", []entity.Event{{Action: entity.Update, Entity: en}}))
					check(t)(e.ApplyEvents(ctx, "bus", []entity.Event{{Action: entity.Delete, Entity: en}}))
				}
				if n := e.tombs.len(); n != 2 {
					t.Errorf("%d tombstones, want 2", n)
				}
			}, events: []entity.Event{ev(entity.Update, "ACTIVE", 2*time.Second)}}),
			[][]string{created, deleted, created}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: t0}
			st := storetest.Open(t, t.TempDir())
			t.Cleanup(func() { st.Close() })
			e, err := New(context.Background(), st, Options{Now: c.now})
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			e.SetPublisher(rec)
			ctx := context.Background()
			for i, s := range tc.steps {
				c.set(t0.Add(s.at))
				if s.setup != nil {
					s.setup(e, c)
				}
				rec.pubs = nil
				var res Result
				if s.snap != nil {
					res, err = e.ApplySnapshot(ctx, s.snap, SnapshotOptions{Source: "cloud", StartedAt: t0.Add(s.start)})
				} else {
					res, err = e.ApplyEvents(ctx, "bus", s.events)
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := actions(rec.pubs); !slices.Equal(got, tc.want[i]) {
					t.Fatalf("step %d: published %v, want %v (result %+v)", i, got, tc.want[i], res)
				}
				if tc.want[i] == nil && res.Ignored == 0 {
					t.Errorf("step %d: nothing counted as ignored: %+v", i, res)
				}
			}
		})
	}
}

// Revived and re-deleted keys leave stale entries in the expiry order;
// they are dropped in turn and never evict a live tombstone.
func TestTombstonesBounded(t *testing.T) {
	tb := tombstones{ttl: time.Minute, max: 3}
	now := int64(0)
	for i := range 1000 {
		now += int64(time.Millisecond)
		tb.add("k"+string(rune('a'+i%5)), now, now)
		if i%7 == 0 {
			tb.revive("ka")
		}
	}
	if tb.len() > 3 {
		t.Fatalf("%d tombstones, bound 3", tb.len())
	}
	if live := len(tb.order) - tb.head; live > 4*3+1024 {
		t.Fatalf("%d entries kept in order", live)
	}
	// The newest keys are the ones kept.
	for _, k := range []string{"kb", "kc", "kd", "ke"} {
		if _, ok := tb.get(k, now); !ok && k != "kb" {
			t.Errorf("%s: no tombstone", k)
		}
	}
	now += int64(2 * time.Minute)
	tb.prune(now)
	if tb.len() != 0 {
		t.Errorf("%d tombstones after the ttl", tb.len())
	}
}
