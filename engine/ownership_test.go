package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/logbuf"
	"github.com/openstack-synchronizer/synchronizer/store/storetest"
)

func newLoggedEngine(t *testing.T, o Options) (*Engine, *recorder, *logbuf.Buffer) {
	t.Helper()
	st := storetest.Open(t, t.TempDir())
	t.Cleanup(func() { st.Close() })
	logs := &logbuf.Buffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	e, err := New(context.Background(), st, o)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	e.SetPublisher(rec)
	return e, rec, logs
}

// stored returns the baseline's entity of key (nil when absent).
func stored(t *testing.T, e *Engine, key string) *entity.Entity {
	t.Helper()
	b, err := e.st.Entity(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if b == nil {
		return nil
	}
	var en entity.Entity
	if err := json.Unmarshal(b, &en); err != nil {
		t.Fatal(err)
	}
	return &en
}

// staticSnap is Vitrage's switch_to_host pattern: a switch attached to a
// host that the cloud collector owns.
func staticSnap() *entity.Snapshot {
	return &entity.Snapshot{AllTypes: true, Entities: []entity.Entity{
		{Type: "switch", ID: "sw-1", Name: "sw-1", State: "available", Data: map[string]any{"static_id": "s1"},
			Links: []entity.Link{{Key: "nova.host:host1", Relation: "attached"}}},
		{Type: "nova.host", ID: "host1", Name: "host1", Data: map[string]any{"static_id": "h1"}},
	}}
}

func cloudSnap(hosts ...string) *entity.Snapshot {
	s := &entity.Snapshot{Types: []string{"nova.host"}}
	for _, h := range hosts {
		s.Entities = append(s.Entities, entity.Entity{Type: "nova.host", ID: h, Name: h, State: "available",
			ParentKey: "nova.zone:nova", Data: map[string]any{"host": h, "hypervisors": []any{map[string]any{"vcpus": json.Number("8")}}}})
	}
	return s
}

var (
	staticOpts = SnapshotOptions{Source: "topology", Reference: true}
	cloudOpts  = SnapshotOptions{Source: "cloud"}
)

// TestStaticReferenceDoesNotFlap: a static entry of a key another source
// owns is a reference. It stands as a placeholder until the owner lists the
// key, never overwrites the owner's entity, and comes back as a placeholder
// when the owner deletes it. Polled in turns, nothing changes after the
// first cycle (on main the host changed owner and content on every poll).
func TestStaticReferenceDoesNotFlap(t *testing.T) {
	for _, first := range []string{"static", "cloud"} {
		t.Run(first+" first", func(t *testing.T) {
			e, rec, logs := newLoggedEngine(t, Options{})
			e.SetSources(map[string]bool{"topology": true, "cloud": false})
			ctx := context.Background()
			poll := func(who string) Result {
				t.Helper()
				var res Result
				var err error
				if who == "static" {
					res, err = e.ApplySnapshot(ctx, staticSnap(), staticOpts)
				} else {
					res, err = e.ApplySnapshot(ctx, cloudSnap("host1", "host2"), cloudOpts)
				}
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			order := []string{"static", "cloud"}
			if first == "cloud" {
				order = []string{"cloud", "static"}
			}
			for _, who := range order {
				poll(who)
			}
			after := len(rec.pubs)
			for i := 0; i < 5; i++ {
				for _, who := range order {
					res := poll(who)
					if who == "static" && (res.References != 1 || res.Conflicts != 0) {
						t.Fatalf("static poll: %+v", res)
					}
				}
			}
			if n := len(rec.pubs) - after; n != 0 {
				t.Fatalf("%d changes after the first cycle: %v", n, actions(rec.pubs[after:]))
			}
			h := stored(t, e, "nova.host:host1")
			if h.Source != "cloud" || h.ParentKey != "nova.zone:nova" || h.Data["host"] != "host1" || h.Data["static_id"] != nil {
				t.Fatalf("host is not the cloud's: %+v", h)
			}
			sw := stored(t, e, "switch:sw-1")
			if sw.Source != "topology" || len(sw.Links) != 1 || sw.Links[0].Key != "nova.host:host1" {
				t.Fatalf("switch: %+v", sw)
			}
			if c := e.Counts(); c["cloud"]["nova.host"] != 2 || c["topology"]["switch"] != 1 || c["topology"]["nova.host"] != 0 {
				t.Fatalf("counts %v", c)
			}
			if n := strings.Count(logs.String(), "ownership conflict"); n != 0 {
				t.Fatalf("a reference is logged as a conflict:\n%s", logs)
			}
			if n := strings.Count(logs.String(), "reference entries stand for"); n != 1 {
				t.Fatalf("reference logged %d times, want once:\n%s", n, logs)
			}

			// The cloud deletes the host: it goes, and the static entry
			// stands as a placeholder again at the static's next poll.
			rec.pubs = nil
			check(t)(e.ApplySnapshot(ctx, cloudSnap("host2"), cloudOpts))
			if got := actions(rec.pubs); !slices.Equal(got, []string{"delete nova.host:host1"}) {
				t.Fatalf("cloud delete published %v", got)
			}
			rec.pubs = nil
			if res := poll("static"); res.Created != 1 || res.References != 0 {
				t.Fatalf("placeholder poll: %+v", res)
			}
			if h := stored(t, e, "nova.host:host1"); h.Source != "topology" || h.Data["static_id"] != "h1" {
				t.Fatalf("placeholder: %+v", h)
			}
			// The cloud lists it again: its data wins in one update.
			rec.pubs = nil
			poll("cloud")
			if got := actions(rec.pubs); !slices.Equal(got, []string{"update nova.host:host1"}) {
				t.Fatalf("cloud relisting published %v", got)
			}
			if h := stored(t, e, "nova.host:host1"); h.Source != "cloud" || h.Data["static_id"] != nil {
				t.Fatalf("host after relisting: %+v", h)
			}
			// The operator removes the host from the static file: the
			// cloud's entity stays.
			rec.pubs = nil
			snap := staticSnap()
			snap.Entities = snap.Entities[:1]
			check(t)(e.ApplySnapshot(ctx, snap, staticOpts))
			if len(rec.pubs) != 0 || stored(t, e, "nova.host:host1") == nil {
				t.Fatalf("static removal touched the cloud's host: %v", actions(rec.pubs))
			}
		})
	}
}

// TestOwnershipConflict: two collectors that both list a key do not flap:
// the first keeps it until its own listing drops it; the conflict is
// counted at every poll and logged once.
func TestOwnershipConflict(t *testing.T) {
	e, rec, logs := newLoggedEngine(t, Options{})
	e.SetSources(map[string]bool{"a": false, "b": false})
	ctx := context.Background()
	all := []string{"nova.instance"}
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("x", "ACTIVE", nil)), SnapshotOptions{Source: "a"}))
	rec.pubs = nil
	for i := 0; i < 4; i++ {
		res, err := e.ApplySnapshot(ctx, snapOf(all, inst("x", "ERROR", nil), inst("y", "ACTIVE", nil)), SnapshotOptions{Source: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Conflicts != 1 || res.NewConflicts != map[bool]int{true: 1, false: 0}[i == 0] {
			t.Fatalf("poll %d of b: %+v", i, res)
		}
		check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("x", "ACTIVE", nil)), SnapshotOptions{Source: "a"}))
	}
	if got := actions(rec.pubs); !slices.Equal(got, []string{"create nova.instance:y"}) {
		t.Fatalf("published %v", got)
	}
	if x := stored(t, e, "nova.instance:x"); x.Source != "a" || x.State != "ACTIVE" {
		t.Fatalf("x: %+v", x)
	}
	if n := strings.Count(logs.String(), "ownership conflict"); n != 1 {
		t.Fatalf("conflict logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "example=nova.instance:x") {
		t.Fatalf("the log does not name the key:\n%s", logs)
	}
	// a stops listing x: it goes, and b's next poll creates it as b's.
	rec.pubs = nil
	check(t)(e.ApplySnapshot(ctx, snapOf(all), SnapshotOptions{Source: "a"}))
	res, err := e.ApplySnapshot(ctx, snapOf(all, inst("x", "ERROR", nil), inst("y", "ACTIVE", nil)), SnapshotOptions{Source: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Conflicts != 0 || !slices.Equal(actions(rec.pubs), []string{"create nova.instance:x", "delete nova.instance:x"}) {
		t.Fatalf("handover: %+v %v", res, actions(rec.pubs))
	}
	if x := stored(t, e, "nova.instance:x"); x.Source != "b" || x.State != "ERROR" {
		t.Fatalf("x after handover: %+v", x)
	}
	// A conflict that comes back is logged again.
	check(t)(e.ApplySnapshot(ctx, snapOf(all, inst("x", "ACTIVE", nil)), SnapshotOptions{Source: "a"}))
	if n := strings.Count(logs.String(), "ownership conflict"); n != 2 {
		t.Fatalf("new conflict logged %d times in all, want 2:\n%s", n, logs)
	}
}

// TestDuplicateKeys: a key listed twice in one listing is applied from its
// first listing, every time, and reported once per poll with its count.
func TestDuplicateKeys(t *testing.T) {
	e, rec, logs := newLoggedEngine(t, Options{})
	ctx := context.Background()
	all := []string{"nova.instance"}
	for i := 1; i <= 3; i++ {
		res, err := e.ApplySnapshot(ctx, snapOf(all, inst("x", "ACTIVE", nil), inst("y", "ACTIVE", nil),
			inst("x", "ERROR", nil), inst("x", "SHUTOFF", nil)), SnapshotOptions{Source: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Duplicates != 2 {
			t.Fatalf("poll %d: %+v", i, res)
		}
		if n := strings.Count(logs.String(), "duplicate keys in one listing"); n != i {
			t.Fatalf("after %d polls the duplicates were logged %d times", i, n)
		}
	}
	if !strings.Contains(logs.String(), "nova.instance:x ×3") {
		t.Fatalf("the log does not name the key and its count:\n%s", logs)
	}
	if got := actions(rec.pubs); !slices.Equal(got, []string{"create nova.instance:x", "create nova.instance:y"}) {
		t.Fatalf("published %v", got)
	}
	if x := stored(t, e, "nova.instance:x"); x.State != "ACTIVE" {
		t.Fatalf("x is %s, want the first listing's ACTIVE", x.State)
	}
}

// cancelAfter cancels a context after the first n publishes: the commit of
// the next batch then fails in the store, as a write error would.
type cancelAfter struct {
	recorder
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Publish(p []Published) {
	c.recorder.Publish(p)
	if c.n--; c.n == 0 {
		c.cancel()
	}
}

// TestPartialApply: a write failure after some batches are committed is a
// PartialError naming what was committed, the baseline holds exactly that,
// and the next apply completes the snapshot.
func TestPartialApply(t *testing.T) {
	e, _, _ := newLoggedEngine(t, Options{BatchSize: 100})
	ctx, cancel := context.WithCancel(context.Background())
	pub := &cancelAfter{n: 3, cancel: cancel}
	e.SetPublisher(pub)
	var ents []entity.Entity
	for i := 0; i < 1000; i++ {
		ents = append(ents, inst(fmt.Sprint(i), "ACTIVE", nil))
	}
	snap := func() *entity.Snapshot {
		return snapOf([]string{"nova.instance"}, append([]entity.Entity(nil), ents...)...)
	}
	res, err := e.ApplySnapshot(ctx, snap(), SnapshotOptions{Source: "a"})
	var p *PartialError
	if !errors.As(err, &p) {
		t.Fatalf("err %v, want a PartialError", err)
	}
	want := "partially applied: 300 of 1000 changes committed (seq 1..300), then: engine: snapshot of a: "
	if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %q, want prefix %q", err, want)
	}
	if res.Created != 300 || res.Seq != 300 || e.Len() != 300 || e.LastSeq() != 300 {
		t.Fatalf("result %+v, baseline %d, seq %d", res, e.Len(), e.LastSeq())
	}
	res, err = e.ApplySnapshot(context.Background(), snap(), SnapshotOptions{Source: "a"})
	if err != nil || res.Created != 700 || res.Unchanged != 300 || e.Len() != 1000 || res.Seq != 1000 {
		t.Fatalf("next apply: %+v %v", res, err)
	}
	if len(pub.pubs) != 1000 {
		t.Fatalf("%d published, want 1000", len(pub.pubs))
	}
	// Nothing committed: a plain error, not a partial one.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	ents[0].State = "ERROR"
	if _, err := e.ApplySnapshot(ctx, snap(), SnapshotOptions{Source: "a"}); err == nil || errors.As(err, &p) {
		t.Fatalf("err %v, want a failure that committed nothing", err)
	}
}

// TestReferenceLinksLogged: a reference entry that carries links or a
// parent, which cannot be shown while another source owns the entity, is
// logged once.
func TestReferenceLinksLogged(t *testing.T) {
	e, _, logs := newLoggedEngine(t, Options{})
	e.SetSources(map[string]bool{"topology": true, "cloud": false})
	ctx := context.Background()
	check(t)(e.ApplySnapshot(ctx, cloudSnap("host1"), cloudOpts))
	for i := 0; i < 3; i++ {
		snap := staticSnap()
		snap.Entities[1].ParentKey = "nova.zone:static-zone"
		snap.Entities[1].Links = []entity.Link{{Key: "switch:sw-1", Relation: "uplink"}}
		check(t)(e.ApplySnapshot(ctx, snap, staticOpts))
	}
	if n := strings.Count(logs.String(), "links and parents carried by reference entries are not shown"); n != 1 || strings.Count(logs.String(), "links=2") != 1 {
		t.Fatalf("hidden links logged %d times, want once with links=2:\n%s", n, logs)
	}
	if h := stored(t, e, "nova.host:host1"); h.ParentKey != "nova.zone:nova" || len(h.Links) != 0 {
		t.Fatalf("host: %+v", h)
	}
}
