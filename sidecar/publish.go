package sidecar

import (
	"context"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

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
// them (their cursor saved). Publishers are not reloaded: a change of
// publishers: takes a restart.
func (sc *Sidecar) startPublishers(lc *lifecycle) error {
	cfg := sc.o.Config
	set, err := publishers.NewSet(cfg.Publishers, cfg.Dir, sc.store, sc.log.With("component", "publisher"))
	if err != nil {
		return err
	}
	sc.pubs = set
	if set.Len() == 0 {
		return nil
	}
	sc.engine.SetPublisher(fanout{sc.rpc, set})
	sc.engine.SetPruneFloor(set.Floor)
	lc.run(func(ctx context.Context) error { set.Run(ctx); return nil })
	return nil
}

// publishersDiffer says whether publishers: changed (any key of any entry):
// publishers are not reloaded, so a change is reported as needing a restart.
func publishersDiffer(a, b []config.Publisher) bool {
	if len(a) != len(b) {
		return true
	}
	for i := range a {
		x, _ := yaml.Marshal(a[i].Node)
		y, _ := yaml.Marshal(b[i].Node)
		if string(x) != string(y) {
			return true
		}
	}
	return false
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
