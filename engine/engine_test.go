package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/store"
	"github.com/openstack-synchronizer/synchronizer/store/storetest"
)

type recorder struct {
	mu   sync.Mutex
	pubs []Published
}

func (r *recorder) Publish(p []Published) {
	r.mu.Lock()
	r.pubs = append(r.pubs, p...)
	r.mu.Unlock()
}

func newEngine(t testing.TB) (*Engine, *recorder, *store.Store) {
	t.Helper()
	dir := t.TempDir()
	st := storetest.Open(t, dir)
	t.Cleanup(func() { st.Close() })
	e, err := New(context.Background(), st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	e.SetPublisher(rec)
	return e, rec, st
}

func inst(id, state string, data map[string]any) entity.Entity {
	if data == nil {
		data = map[string]any{}
	}
	return entity.Entity{Type: "nova.instance", ID: id, Name: "vm-" + id, State: state, ParentKey: "nova.host:h1", Data: data}
}

func snapOf(types []string, ents ...entity.Entity) *entity.Snapshot {
	return &entity.Snapshot{Types: types, Entities: ents}
}

func actions(pubs []Published) []string {
	var out []string
	for _, p := range pubs {
		var c struct {
			Action string `json:"action"`
			Key    string `json:"key"`
		}
		json.Unmarshal(p.JSON, &c)
		out = append(out, c.Action+" "+c.Key)
	}
	sort.Strings(out)
	return out
}

func TestApplySnapshot(t *testing.T) {
	all := []string{"nova.instance"}
	type step struct {
		snap    *entity.Snapshot
		opts    SnapshotOptions
		want    []string // actions published by this step
		wantErr bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"create", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil)),
				want: []string{"create nova.instance:a", "create nova.instance:b"}},
		}},
		{"no-op writes nothing", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil)), want: []string{"create nova.instance:a"}},
			{snap: snapOf(all, inst("a", "ACTIVE", nil)), want: nil},
		}},
		{"update on state change", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil)), want: []string{"create nova.instance:a"}},
			{snap: snapOf(all, inst("a", "SHUTOFF", nil)), want: []string{"update nova.instance:a"}},
		}},
		{"update on data change", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", map[string]any{"flavor": "m1"})), want: []string{"create nova.instance:a"}},
			{snap: snapOf(all, inst("a", "ACTIVE", map[string]any{"flavor": "m2"})), want: []string{"update nova.instance:a"}},
		}},
		{"delete when missing from a complete listing", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil), inst("c", "ACTIVE", nil)),
				want: []string{"create nova.instance:a", "create nova.instance:b", "create nova.instance:c"}},
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil)), want: []string{"delete nova.instance:c"}},
		}},
		{"partial listing (type not complete) deletes nothing", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil)),
				want: []string{"create nova.instance:a", "create nova.instance:b"}},
			{snap: snapOf(nil, inst("a", "ACTIVE", nil)), want: nil},
			{snap: snapOf([]string{"nova.host"}, inst("a", "ACTIVE", nil)), want: nil},
		}},
		{"invalid entity fails the whole snapshot", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil)), want: []string{"create nova.instance:a"}},
			{snap: snapOf(all, entity.Entity{Type: "nova.instance"}), wantErr: true},
		}},
		{"volatile fields change no hash", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", map[string]any{"uptime": 1, "x": map[string]any{"t": 1, "k": 1}})),
				opts: SnapshotOptions{Volatile: map[string][]string{"nova.instance": {"uptime", "x.t"}}},
				want: []string{"create nova.instance:a"}},
			{snap: snapOf(all, inst("a", "ACTIVE", map[string]any{"uptime": 2, "x": map[string]any{"t": 2, "k": 1}})),
				opts: SnapshotOptions{Volatile: map[string][]string{"nova.instance": {"uptime", "x.t"}}},
				want: nil},
		}},
		{"mass delete held, then confirmed by the next listing", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil), inst("c", "ACTIVE", nil), inst("d", "ACTIVE", nil)),
				want: []string{"create nova.instance:a", "create nova.instance:b", "create nova.instance:c", "create nova.instance:d"}},
			{snap: snapOf(all, inst("a", "ACTIVE", nil)), opts: SnapshotOptions{MaxDeleteRatio: 0.5}, want: nil},
			{snap: snapOf(all, inst("a", "ACTIVE", nil)), opts: SnapshotOptions{MaxDeleteRatio: 0.5},
				want: []string{"delete nova.instance:b", "delete nova.instance:c", "delete nova.instance:d"}},
		}},
		{"mass delete released when the next listing has them back", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil), inst("c", "ACTIVE", nil)),
				want: []string{"create nova.instance:a", "create nova.instance:b", "create nova.instance:c"}},
			{snap: snapOf(all), opts: SnapshotOptions{MaxDeleteRatio: 0.5}, want: nil},
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil), inst("c", "ACTIVE", nil)), opts: SnapshotOptions{MaxDeleteRatio: 0.5}, want: nil},
			{snap: snapOf(all), opts: SnapshotOptions{MaxDeleteRatio: 0.5}, want: nil},
		}},
		{"forced mass delete", []step{
			{snap: snapOf(all, inst("a", "ACTIVE", nil), inst("b", "ACTIVE", nil)),
				want: []string{"create nova.instance:a", "create nova.instance:b"}},
			{snap: snapOf(all), opts: SnapshotOptions{MaxDeleteRatio: 0.5, Force: true},
				want: []string{"delete nova.instance:a", "delete nova.instance:b"}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, rec, _ := newEngine(t)
			for i, s := range tc.steps {
				rec.pubs = nil
				if s.opts.Source == "" {
					s.opts.Source = "cloud"
				}
				_, err := e.ApplySnapshot(context.Background(), s.snap, s.opts)
				if (err != nil) != s.wantErr {
					t.Fatalf("step %d: err = %v, want error %v", i, err, s.wantErr)
				}
				if got := actions(rec.pubs); !slices.Equal(got, s.want) {
					t.Fatalf("step %d: published %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

// applyEvents applies evs as one batch from source and fails t unless the
// engine published exactly want.
func applyEvents(t testing.TB, e *Engine, rec *recorder, source string, want []string, evs ...entity.Event) {
	t.Helper()
	rec.pubs = nil
	if _, err := e.ApplyEvents(context.Background(), source, evs); err != nil {
		t.Fatal(err)
	}
	if got := actions(rec.pubs); !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
}

func TestSourcesNeverDeleteEachOthersEntities(t *testing.T) {
	e, rec, _ := newEngine(t)
	ctx := context.Background()
	all := []string{"nova.instance"}
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "ACTIVE", nil)), SnapshotOptions{Source: "one"}))
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("b", "ACTIVE", nil)), SnapshotOptions{Source: "two"}))
	rec.pubs = nil
	// "two" lists nothing of the type: only its own b goes.
	check(t)(e.ApplySnapshot(ctx, snapOf(all), SnapshotOptions{Source: "two"}))
	if got := actions(rec.pubs); !slices.Equal(got, []string{"delete nova.instance:b"}) {
		t.Fatalf("published %v", got)
	}
	// An AllTypes snapshot of an unrelated source deletes nothing of "one".
	rec.pubs = nil
	check(t)(e.ApplySnapshot(ctx, &entity.Snapshot{AllTypes: true}, SnapshotOptions{Source: "three"}))
	if len(rec.pubs) != 0 {
		t.Fatalf("published %v", actions(rec.pubs))
	}
	if e.Len() != 1 {
		t.Fatalf("baseline has %d entities, want 1", e.Len())
	}
	// Once "one" is no longer configured, the same content listed by
	// another source changes owner, not content.
	e.SetSources(map[string]bool{"two": false, "three": false, "four": false})
	rec.pubs = nil
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "ACTIVE", nil)), SnapshotOptions{Source: "four"}))
	if len(rec.pubs) != 0 {
		t.Fatalf("owner change published %v", actions(rec.pubs))
	}
	if c := e.Counts(); c["four"]["nova.instance"] != 1 || c["one"]["nova.instance"] != 0 || len(c) != 1 {
		t.Fatalf("counts %v", c)
	}
	// ... and "one" no longer deletes it.
	check(t)(e.ApplySnapshot(ctx, snapOf(all), SnapshotOptions{Source: "one"}))
	if e.Len() != 1 {
		t.Fatalf("previous owner deleted the entity")
	}
}

func check(t testing.TB) func(Result, error) {
	return func(_ Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestEvents(t *testing.T) {
	e, rec, _ := newEngine(t)
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	ev := func(action, state string, at time.Time, data map[string]any) entity.Event {
		en := inst("a", state, data)
		en.Timestamp = at
		return entity.Event{Action: action, Entity: en}
	}
	step := func(want []string, evs ...entity.Event) {
		t.Helper()
		applyEvents(t, e, rec, "bus", want, evs...)
	}
	step([]string{"create nova.instance:a"}, ev(entity.Update, "ACTIVE", t0, nil))
	// Same core, other data: suppressed (notification data never flips
	// poll data back and forth).
	step(nil, ev(entity.Update, "ACTIVE", t0.Add(time.Second), map[string]any{"shape": "notification"}))
	step([]string{"update nova.instance:a"}, ev(entity.Update, "PAUSED", t0.Add(2*time.Second), nil))
	// Older than the baseline's last observation: ignored.
	step(nil, ev(entity.Update, "ACTIVE", t0.Add(time.Second), nil))
	// Several events of one key in one batch compare with each other.
	step([]string{"update nova.instance:a", "update nova.instance:a"},
		ev(entity.Update, "ACTIVE", t0.Add(3*time.Second), nil), ev(entity.Update, "SHUTOFF", t0.Add(4*time.Second), nil))
	step([]string{"delete nova.instance:a"}, ev(entity.Delete, "DELETED", t0.Add(5*time.Second), nil))
	step(nil, ev(entity.Delete, "DELETED", t0.Add(6*time.Second), nil))
}

func TestSnapshotStartedBeforePushDoesNotRevertIt(t *testing.T) {
	e, rec, _ := newEngine(t)
	ctx := context.Background()
	all := []string{"nova.instance"}
	t0 := time.Now().UTC()
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "ACTIVE", nil)), SnapshotOptions{Source: "cloud", StartedAt: t0}))
	// The poll starts, then a notification says PAUSED and another creates b.
	pollStart := t0.Add(time.Second)
	pa, pb := inst("a", "PAUSED", nil), inst("b", "ACTIVE", nil)
	pa.Timestamp, pb.Timestamp = pollStart.Add(time.Second), pollStart.Add(time.Second)
	pa.Source, pb.Source = "cloud", "cloud"
	check(t)(e.ApplyEvents(ctx, "bus", []entity.Event{{Action: entity.Update, Entity: pa}, {Action: entity.Update, Entity: pb}}))
	rec.pubs = nil
	// The poll's listing predates both: it must neither revert a nor delete b.
	res, err := e.ApplySnapshot(ctx, snapOf(all, inst("a", "ACTIVE", nil)), SnapshotOptions{Source: "cloud", StartedAt: pollStart})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.pubs) != 0 || res.Ignored != 2 {
		t.Fatalf("published %v, ignored %d", actions(rec.pubs), res.Ignored)
	}
	// A later poll that sees the same state refreshes data at most once.
	later := pollStart.Add(5 * time.Second)
	rec.pubs = nil
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "PAUSED", map[string]any{"full": true}), pb), SnapshotOptions{Source: "cloud", StartedAt: later}))
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "PAUSED", map[string]any{"full": true}), pb), SnapshotOptions{Source: "cloud", StartedAt: later.Add(time.Second)}))
	if got := actions(rec.pubs); !slices.Equal(got, []string{"update nova.instance:a"}) {
		t.Fatalf("published %v", got)
	}
}

func TestBaselineSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := storetest.Open(t, dir)
	e, err := New(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"nova.instance"}
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "ACTIVE", map[string]any{"n": 1.5})), SnapshotOptions{Source: "cloud"}))
	last := e.LastSeq()
	st.Close()

	st = storetest.Open(t, dir)
	defer st.Close()
	e, err = New(ctx, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e.LastSeq() != last {
		t.Fatalf("last seq %d after restart, want %d", e.LastSeq(), last)
	}
	rec := &recorder{}
	e.SetPublisher(rec)
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "ACTIVE", map[string]any{"n": 1.5})), SnapshotOptions{Source: "cloud"}))
	if len(rec.pubs) != 0 {
		t.Fatalf("unchanged entity after restart published %v", actions(rec.pubs))
	}
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("a", "ERROR", nil)), SnapshotOptions{Source: "cloud"}))
	if len(rec.pubs) != 1 || rec.pubs[0].Seq != last+1 {
		t.Fatalf("after restart: %+v, want one change with seq %d", rec.pubs, last+1)
	}
}

// TestDeleteCarriesEntityUpdatedInSameBatch: a delete that follows an
// update of the same key in one batch carries the updated entity, not the
// one in the database before the batch.
func TestDeleteCarriesEntityUpdatedInSameBatch(t *testing.T) {
	e, rec, _ := newEngine(t)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	mk := func(state string, at time.Time) entity.Entity {
		en := inst("a", state, nil)
		en.Timestamp = at
		return en
	}
	check(t)(e.ApplyEvents(ctx, "bus", []entity.Event{{Action: entity.Update, Entity: mk("ACTIVE", t0)}}))
	rec.pubs = nil
	check(t)(e.ApplyEvents(ctx, "bus", []entity.Event{
		{Action: entity.Update, Entity: mk("SHUTOFF", t0.Add(time.Second))},
		{Action: entity.Delete, Entity: mk("DELETED", t0.Add(2*time.Second))},
	}))
	if len(rec.pubs) != 2 {
		t.Fatalf("published %v", actions(rec.pubs))
	}
	var del struct {
		Action, State string
		Timestamp     time.Time
	}
	json.Unmarshal(rec.pubs[1].JSON, &del)
	if del.Action != "delete" || del.State != "SHUTOFF" || !del.Timestamp.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("delete carries %+v, want the SHUTOFF entity at the delete's time", del)
	}
}

// An event whose source does not know links (a Heat stack notification)
// keeps the links the entity has: a state change is an update with them, the
// same state is no change, and the stored entity never loses them.
func TestEventsKeepLinks(t *testing.T) {
	e, rec, st := newEngine(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	comprised := []entity.Link{{Key: "nova.instance:vm1", Relation: "comprised"}}
	stack := func(state string, links []entity.Link) entity.Entity {
		return entity.Entity{Type: "heat.stack", ID: "s1", Name: "stack", State: state, Links: links, Data: map[string]any{}}
	}
	check(t)(e.ApplySnapshot(ctx, snapOf([]string{"heat.stack"}, stack("CREATE_COMPLETE", comprised)), SnapshotOptions{Source: "cloud", StartedAt: t0}))
	storedLinks := func() string {
		t.Helper()
		b, err := st.Entity(ctx, "heat.stack:s1")
		if err != nil {
			t.Fatal(err)
		}
		var en entity.Entity
		json.Unmarshal(b, &en)
		return fmt.Sprint(en.Links)
	}
	push := func(want []string, evs ...entity.Event) {
		t.Helper()
		applyEvents(t, e, rec, "cloud", want, evs...)
	}
	ev := func(state string, at time.Duration, keep bool, links []entity.Link) entity.Event {
		en := stack(state, links)
		en.Timestamp = t0.Add(at)
		return entity.Event{Action: entity.Update, Entity: en, KeepLinks: keep}
	}
	push(nil, ev("CREATE_COMPLETE", time.Second, true, nil))
	// A stale delete (older than the baseline: ignored) before a newer
	// event does not make the newer one lose the links.
	stale := ev("DELETE_COMPLETE", -time.Second, false, nil)
	stale.Action = entity.Delete
	push(nil, stale, ev("CREATE_COMPLETE", 1500*time.Millisecond, true, nil))
	if got := storedLinks(); got != fmt.Sprint(comprised) {
		t.Fatalf("stored links %s after an ignored delete, want %v", got, comprised)
	}
	push([]string{"update heat.stack:s1"}, ev("UPDATE_IN_PROGRESS", 2*time.Second, true, nil))
	if got := storedLinks(); got != fmt.Sprint(comprised) {
		t.Fatalf("stored links %s after a KeepLinks update, want %v", got, comprised)
	}
	// Within one batch, links an earlier event set are the ones kept.
	other := []entity.Link{{Key: "cinder.volume:v1", Relation: "comprised"}}
	push([]string{"update heat.stack:s1", "update heat.stack:s1"},
		ev("UPDATE_COMPLETE", 3*time.Second, false, other), ev("CHECK_COMPLETE", 4*time.Second, true, nil))
	if got := storedLinks(); got != fmt.Sprint(other) {
		t.Fatalf("stored links %s, want %v", got, other)
	}
	// Without KeepLinks the event's (empty) links win.
	push([]string{"update heat.stack:s1"}, ev("CHECK_COMPLETE", 5*time.Second, false, nil))
	if got := storedLinks(); got != "[]" {
		t.Fatalf("stored links %s, want none", got)
	}
	// A new key has no links to keep.
	ne := ev("CREATE_COMPLETE", 6*time.Second, true, nil)
	ne.Entity.ID = "s2"
	push([]string{"create heat.stack:s2"}, ne)
}

// Keeping a stack's links and carrying a deleted entity read the stored
// entity while the engine's lock is held: they must not wait for the reader
// pool, which slow get_all clients can hold for as long as they like.
func TestLockedReadsDoNotWaitForReaders(t *testing.T) {
	e, _, st := newEngine(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	stack := entity.Entity{Type: "heat.stack", ID: "s1", Name: "stack", State: "CREATE_COMPLETE",
		Links: []entity.Link{{Key: "nova.instance:vm1", Relation: "comprised"}}, Data: map[string]any{}}
	check(t)(e.ApplySnapshot(ctx, snapOf([]string{"heat.stack"}, stack), SnapshotOptions{Source: "cloud", StartedAt: t0}))
	release := make(chan struct{})
	var held sync.WaitGroup
	for range 4 { // the store's default reader pool
		held.Add(1)
		go func() {
			first := true
			st.All(ctx, nil, func([]byte) error {
				if first {
					first = false
					held.Done()
					<-release
				}
				return nil
			})
		}()
	}
	held.Wait()
	defer close(release)
	ev := stack
	ev.Links, ev.State, ev.Timestamp = nil, "UPDATE_COMPLETE", t0.Add(time.Second)
	within := func(what string, apply func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- apply() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s waited for the reader pool", what)
		}
	}
	within("a KeepLinks event", func() error {
		_, err := e.ApplyEvents(ctx, "cloud", []entity.Event{{Action: entity.Update, Entity: ev, KeepLinks: true}})
		return err
	})
	// A delete carries the entity as stored: read the same way.
	within("a delete", func() error {
		_, err := e.ApplySnapshot(ctx, snapOf([]string{"heat.stack"}), SnapshotOptions{Source: "cloud", StartedAt: t0.Add(2 * time.Second)})
		return err
	})
}
