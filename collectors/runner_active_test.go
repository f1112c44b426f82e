package collectors

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

// typeFilterCollector records the active types the runner hands it.
type typeFilterCollector struct {
	fakeCollector
	active []string
}

var _ TypeFilter = (*typeFilterCollector)(nil)

func (c *typeFilterCollector) SetActiveTypes(types []string) { c.active = types }

// TestActiveTypesFilter: inactive types never reach the engine, and are left
// out of the complete listings so that their entities are not deleted.
func TestActiveTypesFilter(t *testing.T) {
	ents := []entity.Entity{{Type: "nova.host", ID: "h"}, {Type: "nova.instance", ID: "i"}, {Type: "cinder.volume", ID: "v"}}
	for _, tc := range []struct {
		name      string
		active    []string
		snap      entity.Snapshot
		wantTypes []string
		wantAll   bool
		wantEnts  int
	}{
		{"all active, all types", nil, entity.Snapshot{AllTypes: true, Entities: ents}, nil, true, 3},
		{"all active, listed types", nil, entity.Snapshot{Types: []string{"nova.host"}, Entities: ents}, []string{"nova.host"}, false, 3},
		{"some active, all types", []string{"nova.instance", "nova.host"}, entity.Snapshot{AllTypes: true, Entities: ents},
			[]string{"nova.host", "nova.instance"}, false, 2},
		{"some active, listed types", []string{"nova.instance", "cinder.volume"}, entity.Snapshot{Types: []string{"nova.host", "nova.instance"}, Entities: ents},
			[]string{"nova.instance"}, false, 2},
		{"none listed active", []string{"heat.stack"}, entity.Snapshot{Types: []string{"nova.host"}, Entities: ents}, nil, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &fakeApplier{}
			snap := tc.snap
			c := &typeFilterCollector{fakeCollector: fakeCollector{fn: func(context.Context, int) (*entity.Snapshot, error) { return &snap, nil }}}
			r := NewRunner(common(time.Hour, time.Second, time.Hour), c, app, quiet)
			r.SetActiveTypes(tc.active)
			if fmt.Sprint(c.active) != fmt.Sprint(tc.active) {
				t.Errorf("collector told %v, want %v", c.active, tc.active)
			}
			var observed []engine.Result
			r.SetObserver(func(_ time.Duration, res engine.Result, err error) { observed = append(observed, res) })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); r.Run(ctx) }()
			if _, err := r.Collect(ctx, false); err != nil {
				t.Fatal(err)
			}
			cancel()
			<-done
			got := app.snaps[len(app.snaps)-1]
			if fmt.Sprint(got.Types) != fmt.Sprint(tc.wantTypes) || got.AllTypes != tc.wantAll || len(got.Entities) != tc.wantEnts {
				t.Errorf("engine got types %v all %v %d entities; want %v %v %d", got.Types, got.AllTypes, len(got.Entities), tc.wantTypes, tc.wantAll, tc.wantEnts)
			}
			if len(observed) != app.count() {
				t.Errorf("observer saw %d polls, engine %d", len(observed), app.count())
			}
			if st := r.Status(); st.AvgDurationMS == nil {
				t.Errorf("status lacks durations: %v", st)
			}
		})
	}
}
