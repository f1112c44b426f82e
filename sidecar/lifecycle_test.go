package sidecar

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestLifecycle: stops run last registered first, once; a run's context
// ends at its stop and the stop waits for it; errors are returned; Run's
// context ending does not stop anything.
func TestLifecycle(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	lc := newLifecycle(parent)
	var order []string
	lc.onStop(func() error { order = append(order, "database"); return nil })
	lc.run(func(ctx context.Context) error {
		<-ctx.Done()
		order = append(order, "server")
		return errors.New("server: closed")
	})
	unitsCtx := lc.scope(func() { order = append(order, "units") })
	lc.onStop(func() error { order = append(order, "notifier"); return nil })

	cancelParent()
	if unitsCtx.Err() != nil {
		t.Fatal("the units' context ended with Run's")
	}
	err := lc.stop()
	if want := []string{"notifier", "units", "server", "database"}; !slices.Equal(order, want) {
		t.Errorf("stopped %v, want %v", order, want)
	}
	if unitsCtx.Err() == nil {
		t.Error("the units' context did not end at their stop")
	}
	if err == nil || err.Error() != "server: closed" {
		t.Errorf("stop: %v", err)
	}
	if lc.stop(); len(order) != 4 {
		t.Errorf("a second stop ran the stops again: %v", order)
	}
}
