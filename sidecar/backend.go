package sidecar

import (
	"context"
	"fmt"
	"time"

	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/rpc"
	"github.com/openstack-synchronizer/synchronizer/store"
)

// backend implements rpc.Backend over the engine, the store and the
// supervisor.
type backend struct{ sc *Sidecar }

var _ rpc.Backend = backend{}

func (b backend) GetAll(ctx context.Context, types []string, fn func([]byte) error) (int64, error) {
	return b.sc.store.All(ctx, types, fn)
}

func (b backend) Changes(ctx context.Context, since int64, types []string, limit int, fn func(int64, []byte) error) (int64, error) {
	last, pruned, err := b.sc.store.LogBounds(ctx)
	if err != nil {
		return 0, err
	}
	if since < pruned {
		return 0, fmt.Errorf("%w (since %d, the log starts after %d)", rpc.ErrResyncNeeded, since, pruned)
	}
	if since > last {
		return 0, fmt.Errorf("%w (since %d is ahead of the log's last change %d: the database was replaced)", rpc.ErrResyncNeeded, since, last)
	}
	if err := b.sc.store.CheckSince(since); err != nil {
		return 0, fmt.Errorf("%w (%w)", rpc.ErrResyncNeeded, err)
	}
	var buf []byte
	return b.sc.store.Changes(ctx, since, types, limit, func(r store.LogRow) error {
		buf = engine.AppendChangeJSON(buf[:0], r.Seq, r.Action, r.Entity)
		return fn(r.Seq, buf)
	})
}

func (b backend) Join(fn func(int64)) { b.sc.engine.Locked(fn) }

func (b backend) DatabaseID() string { return b.sc.store.DatabaseID() }

// ActiveTypes intersects the requested types with active_entity_types. nil
// means every type.
func (b backend) ActiveTypes(types []string) []string {
	active := b.sc.activeTypes()
	if len(active) == 0 {
		if len(types) == 0 {
			return nil
		}
		return types
	}
	if len(types) == 0 {
		return active
	}
	set := map[string]bool{}
	for _, t := range active {
		set[t] = true
	}
	out := []string{}
	for _, t := range types {
		if set[t] {
			out = append(out, t)
		}
	}
	return out
}

func (b backend) Collect(ctx context.Context, name string, force bool) (any, error) {
	r := b.sc.runner(name)
	if r == nil {
		return nil, fmt.Errorf("%w: no collector named %q", rpc.ErrNotFound, name)
	}
	start := time.Now()
	res, err := r.Collect(ctx, force)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"name": name, "created": res.Created, "updated": res.Updated, "deleted": res.Deleted,
		"unchanged": res.Unchanged, "ignored": res.Ignored, "held": res.Held, "seq": res.Seq,
		"duration_ms": time.Since(start).Milliseconds(),
	}, nil
}
