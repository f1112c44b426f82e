package engine

import (
	"context"
	"time"
)

// Prune applies the change-log retention.
func (e *Engine) Prune(ctx context.Context) (int64, error) {
	floor := int64(-1)
	if f := e.floor.Load(); f != nil {
		floor = (*f)()
	}
	return e.st.PruneAbove(ctx, e.o.RetainCount, e.o.RetainAge, e.o.Now(), floor)
}

// SetPruneFloor sets the function that says through which seq the log may
// be pruned at most (< 0: no floor); nil removes it.
func (e *Engine) SetPruneFloor(f func() int64) {
	if f == nil {
		e.floor.Store(nil)
		return
	}
	e.floor.Store(&f)
}

// RunPruner prunes the change log every interval until ctx ends.
func (e *Engine) RunPruner(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := e.Prune(ctx); err != nil {
			if ctx.Err() == nil {
				e.log.Error("prune change log", "err", err)
			}
		} else if n > 0 {
			e.log.Info("pruned change log", "changes", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
