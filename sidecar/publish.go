package sidecar

import (
	"context"
	"errors"
	"fmt"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/publishers"
)

// fanout tells several engine publishers about each commit, in order.
type fanout []engine.Publisher

func (f fanout) Publish(p []engine.Published) {
	for _, x := range f {
		x.Publish(p)
	}
}

// startPublishers makes the configured publishers, hooks them to the engine
// (wake-ups after commits, the prune floor) and runs them until lc stops
// them (their cursor saved). The set is hooked even when empty: a reload
// may add publishers (Set.Apply).
func (sc *Sidecar) startPublishers(lc *lifecycle) error {
	cfg := sc.o.Config
	set, err := publishers.NewSet(cfg.Publishers, cfg.Dir, sc.store, sc.log.With("component", "publisher"))
	if err != nil {
		return err
	}
	sc.pubs = set
	sc.engine.SetPublisher(fanout{sc.rpc, set})
	sc.engine.SetPruneFloor(set.Floor)
	lc.run(func(ctx context.Context) error { set.Run(ctx); return nil })
	return nil
}

// checkPublishers validates publishers: as serve would build them, without
// a store (check-config).
func checkPublishers(cfg *config.Config) error {
	var errs []error
	for i, p := range cfg.Publishers {
		if _, err := publishers.New(p, publishers.Settings{Name: p.Name, Node: p.Node, Dir: cfg.Dir}); err != nil {
			errs = append(errs, fmt.Errorf("%s: line %d: publishers[%d] (%s): %w", cfg.Path, p.Node.Line, i, p.Name, err))
		}
	}
	return errors.Join(errs...)
}
