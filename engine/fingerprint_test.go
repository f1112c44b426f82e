package engine

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// An entity with the fingerprint it had last time hashes as it did last
// time; another fingerprint, other volatile fields or no fingerprint hash
// it again.
func TestFingerprintReusesHashes(t *testing.T) {
	e, rec, _ := newEngine(t)
	ctx := context.Background()
	all := []string{"nova.instance"}
	F, G := [16]byte{1}, [16]byte{2}
	steps := []struct {
		name     string
		fp       [16]byte
		data     map[string]any
		volatile []string
		want     []string
	}{
		{"new", F, map[string]any{"x": 1, "y": 1}, nil, []string{"create nova.instance:a"}},
		// Not something a collector does (same bytes, other entity): it
		// shows the hashes were reused rather than computed.
		{"same fingerprint", F, map[string]any{"x": 2, "y": 1}, nil, nil},
		{"other fingerprint", G, map[string]any{"x": 2, "y": 1}, nil, []string{"update nova.instance:a"}},
		{"same again", G, map[string]any{"x": 2, "y": 1}, nil, nil},
		{"volatile fields changed", G, map[string]any{"x": 2, "y": 1}, []string{"x"}, []string{"update nova.instance:a"}},
		{"no fingerprint", [16]byte{}, map[string]any{"x": 3, "y": 1}, []string{"x"}, nil},
		{"no fingerprint, changed", [16]byte{}, map[string]any{"x": 3, "y": 2}, []string{"x"}, []string{"update nova.instance:a"}},
	}
	for _, s := range steps {
		rec.pubs = nil
		en := inst("a", "ACTIVE", s.data)
		en.Fingerprint = s.fp
		o := SnapshotOptions{Source: "cloud", Volatile: map[string][]string{"nova.instance": s.volatile}}
		if _, err := e.ApplySnapshot(ctx, &entity.Snapshot{Types: all, Entities: []entity.Entity{en}}, o); err != nil {
			t.Fatal(err)
		}
		if got := actions(rec.pubs); !slices.Equal(got, s.want) {
			t.Fatalf("%s: published %v, want %v", s.name, got, s.want)
		}
	}
}

// On a fresh database the cache holds a whole first listing, so that the
// second listing of the same items is not hashed again.
func TestFingerprintCacheHoldsFirstListing(t *testing.T) {
	e, _, _ := newEngine(t)
	ctx := context.Background()
	const n = 5000
	ents := make([]entity.Entity, n)
	for i := range ents {
		ents[i] = inst(fmt.Sprintf("vm%d", i), "ACTIVE", nil)
		ents[i].Fingerprint = [16]byte{1, byte(i), byte(i >> 8)}
	}
	if _, err := e.ApplySnapshot(ctx, &entity.Snapshot{Types: []string{"nova.instance"}, Entities: ents}, SnapshotOptions{Source: "cloud"}); err != nil {
		t.Fatal(err)
	}
	e.fps.mu.Lock()
	cached := len(e.fps.m)
	e.fps.mu.Unlock()
	if cached != n {
		t.Fatalf("%d of %d first-listing hashes cached", cached, n)
	}
}

// A collector whose fingerprints do not cover the content (it enriched an
// entity after listing it) is caught by the sampled check: logged, counted,
// and the sampled entities compared on their real hashes.
func TestFingerprintBrokenPromiseIsCaught(t *testing.T) {
	e, rec, _ := newEngine(t)
	ctx := context.Background()
	const n = 2 * checkEvery
	snap := func(state string) *entity.Snapshot {
		ents := make([]entity.Entity, n)
		for i := range ents {
			ents[i] = inst(fmt.Sprintf("vm%d", i), state, nil)
			ents[i].Fingerprint = [16]byte{1, byte(i)} // the same whatever the state
		}
		return &entity.Snapshot{Types: []string{"nova.instance"}, Entities: ents}
	}
	if _, err := e.ApplySnapshot(ctx, snap("ACTIVE"), SnapshotOptions{Source: "cloud"}); err != nil {
		t.Fatal(err)
	}
	rec.pubs = nil
	if _, err := e.ApplySnapshot(ctx, snap("SHUTOFF"), SnapshotOptions{Source: "cloud"}); err != nil {
		t.Fatal(err)
	}
	if got := e.fps.broken.Load(); got == 0 || len(rec.pubs) != int(got) {
		t.Fatalf("%d broken fingerprints caught, %d updates published", got, len(rec.pubs))
	}
}
