package sidecar

import (
	"context"
	"errors"
	"sync"
)

// lifecycle stops what Run started, in the reverse order of starting: each
// component registers its stop as it starts, so an early return stops
// exactly what was started, and adding a component is one line. Components
// run on contexts of their own, not on Run's: a signal ends Run's context,
// and then the components stop one by one in order (sources before the
// socket, the socket before the database), not all at once.
type lifecycle struct {
	base  context.Context // values of Run's context, never cancelled
	stops []func() error
	once  sync.Once
	err   error
}

func newLifecycle(ctx context.Context) *lifecycle {
	return &lifecycle{base: context.WithoutCancel(ctx)}
}

// onStop registers the stop of a component that has started.
func (l *lifecycle) onStop(stop func() error) { l.stops = append(l.stops, stop) }

// run starts fn on a context of its own; its stop cancels that context and
// waits for fn, returning fn's error.
func (l *lifecycle) run(fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(l.base)
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	l.onStop(func() error {
		cancel()
		return <-done
	})
}

// scope returns a context for components that start and stop on their own
// (the collectors and listeners, which reloads change); its stop cancels
// the context, then calls wait.
func (l *lifecycle) scope(wait func()) context.Context {
	ctx, cancel := context.WithCancel(l.base)
	l.onStop(func() error {
		cancel()
		wait()
		return nil
	})
	return ctx
}

// stop runs the stops, last registered first, once, and returns their
// errors.
func (l *lifecycle) stop() error {
	l.once.Do(func() {
		var errs []error
		for i := len(l.stops) - 1; i >= 0; i-- {
			errs = append(errs, l.stops[i]())
		}
		l.err = errors.Join(errs...)
	})
	return l.err
}
