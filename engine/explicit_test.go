package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// A snapshot's Present keys count as listed for a complete type, and its
// Deletes remove what the source owns, whatever Types says: what an
// incremental poll (the changes plus an id listing, or a change listing with
// DELETED rows) needs, without deleting by absence from the changes.
func TestPresentAndDeletes(t *testing.T) {
	all := []string{"nova.instance"}
	abc := snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil), inst("c", "ACTIVE", nil))
	created := []string{"create nova.instance:a", "create nova.instance:b", "create nova.instance:c"}
	cases := []struct {
		name string
		snap *entity.Snapshot
		src  string
		want []string
	}{
		{"present keys of a complete type are kept, unlisted ones deleted",
			&entity.Snapshot{Types: all, Entities: []entity.Entity{inst("a", "SHUTOFF", nil)}, Present: []string{"nova.instance:b"}},
			"cloud", []string{"delete nova.instance:c", "update nova.instance:a"}},
		{"a partial snapshot of changes deletes nothing by absence",
			&entity.Snapshot{Entities: []entity.Entity{inst("a", "SHUTOFF", nil)}},
			"cloud", []string{"update nova.instance:a"}},
		{"explicit deletes of a partial snapshot",
			&entity.Snapshot{Entities: []entity.Entity{inst("a", "SHUTOFF", nil)}, Deletes: []string{"nova.instance:b", "nova.instance:b", "nova.instance:zz"}},
			"cloud", []string{"delete nova.instance:b", "update nova.instance:a"}},
		{"a key both listed and deleted is kept",
			&entity.Snapshot{Entities: []entity.Entity{inst("a", "ACTIVE", nil)}, Deletes: []string{"nova.instance:a"}},
			"cloud", nil},
		{"another source's deletes delete nothing",
			&entity.Snapshot{Deletes: []string{"nova.instance:a"}},
			"other", nil},
		{"explicit deletes of a complete type follow the absence rules",
			&entity.Snapshot{Types: all, Present: []string{"nova.instance:a", "nova.instance:b", "nova.instance:c"}, Deletes: []string{"nova.instance:c"}},
			"cloud", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, rec, _ := newEngine(t)
			ctx := context.Background()
			if _, err := e.ApplySnapshot(ctx, abc, SnapshotOptions{Source: "cloud"}); err != nil {
				t.Fatal(err)
			}
			if got := actions(rec.pubs); !slices.Equal(got, created) {
				t.Fatalf("setup: %v", got)
			}
			rec.pubs = nil
			if _, err := e.ApplySnapshot(ctx, tc.snap, SnapshotOptions{Source: tc.src}); err != nil {
				t.Fatal(err)
			}
			if got := actions(rec.pubs); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// An explicit delete does not remove an entity a push event observed after
// the poll began: the event is newer than the poll's listing.
func TestExplicitDeleteYieldsToNewerEvent(t *testing.T) {
	e, rec, _ := newEngine(t)
	ctx := context.Background()
	start := time.Now().Add(-time.Minute)
	if _, err := e.ApplySnapshot(ctx, snapOf([]string{"nova.instance"}, inst("a", "ACTIVE", nil)), SnapshotOptions{Source: "cloud", StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	ev := inst("a", "SHUTOFF", nil)
	ev.Source, ev.Timestamp = "cloud", time.Now()
	if _, err := e.ApplyEvents(ctx, "cloud", []entity.Event{{Action: entity.Update, Entity: ev}}); err != nil {
		t.Fatal(err)
	}
	rec.pubs = nil
	res, err := e.ApplySnapshot(ctx, &entity.Snapshot{Deletes: []string{"nova.instance:a"}}, SnapshotOptions{Source: "cloud", StartedAt: start.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.pubs) != 0 || res.Ignored != 1 {
		t.Errorf("published %v, result %+v; want nothing and one ignored", actions(rec.pubs), res)
	}
}
