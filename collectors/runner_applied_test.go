package collectors

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

// failingApplier refuses every snapshot, as an engine whose commit failed.
type failingApplier struct{ fakeApplier }

func (a *failingApplier) ApplySnapshot(ctx context.Context, s *entity.Snapshot, o engine.SnapshotOptions) (engine.Result, error) {
	a.fakeApplier.ApplySnapshot(ctx, s, o)
	return engine.Result{}, errors.New("disk full")
}

// TestAppliedOnlyAfterCommit: a snapshot's Applied runs once the engine has
// applied it and never when the engine failed, so an incremental collector
// never moves its watermark past changes that were not committed. Present
// and Deletes reach the engine, limited to the active types.
func TestAppliedOnlyAfterCommit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		app         Applier
		active      []string
		wantApplied int
		wantPresent string
		wantDeletes string
	}{
		{"committed", &fakeApplier{}, nil, 1, "[t:1 u:1]", "[t:2 u:2]"},
		{"committed, one type active", &fakeApplier{}, []string{"t"}, 1, "[t:1]", "[t:2]"},
		{"engine failed", &failingApplier{}, nil, 0, "[t:1 u:1]", "[t:2 u:2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			applied := 0
			col := &fakeCollector{fn: func(context.Context, int) (*entity.Snapshot, error) {
				return &entity.Snapshot{Present: []string{"t:1", "u:1"}, Deletes: []string{"t:2", "u:2"}, Applied: func() { applied++ }}, nil
			}}
			r := NewRunner(common(time.Hour, time.Second, time.Hour), col, tc.app, quiet)
			r.SetActiveTypes(tc.active)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); r.Run(ctx) }()
			_, err := r.Collect(ctx, false)
			cancel()
			<-done
			if (err != nil) != (tc.wantApplied == 0) {
				t.Fatalf("err = %v", err)
			}
			var polls []*entity.Snapshot // the first poll may run before Collect's
			switch a := tc.app.(type) {
			case *fakeApplier:
				polls = a.snaps
			case *failingApplier:
				polls = a.snaps
			}
			if applied != tc.wantApplied*len(polls) {
				t.Errorf("Applied called %d times in %d polls, want %d per poll", applied, len(polls), tc.wantApplied)
			}
			got := polls[0]
			if fmt.Sprint(got.Present) != tc.wantPresent || fmt.Sprint(got.Deletes) != tc.wantDeletes {
				t.Errorf("engine got present %v deletes %v, want %s %s", got.Present, got.Deletes, tc.wantPresent, tc.wantDeletes)
			}
		})
	}
}
