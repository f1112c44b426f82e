package openstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// stackResourceWorkers bounds the resource lists in flight: one request per
// stack, and a cloud may have hundreds of stacks.
const stackResourceWorkers = 4

// stackNestedDepth is what Vitrage's heat driver asks for
// (resources.list(stack_id, nested_depth=10)): the servers of a
// ResourceGroup or an autoscaling group live in nested stacks, and the top
// stack comprises them.
const stackNestedDepth = "10"

// comprisedTypes are the Heat resource types Vitrage's heat.stack
// transformer draws "comprised" edges to (HeatStackTransformer.RESOURCE_TYPE),
// with the entity type of each. Other resources are left out of data: the
// transformer raises a KeyError on any other type.
var comprisedTypes = map[string]string{
	"OS::Nova::Server":   TypeInstance,
	"OS::Cinder::Volume": TypeVolume,
	"OS::Neutron::Net":   TypeNetwork,
	"OS::Neutron::Port":  TypePort,
}

// addStackResources lists the resources of every stack, a few stacks at a
// time, and puts them into each stack's data.resources and links. Any
// failed list fails them all (the caller fails the heat.stack listing),
// except a 404: that stack was deleted after the stack list, and is kept
// without resources. It returns the number of resource lists read.
func (c *Collector) addStackResources(ctx context.Context, ep string, stacks []entity.Entity) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next, done, pages atomic.Int64
		wg                sync.WaitGroup
		once              sync.Once
		first             error
	)
	for w := 0; w < min(stackResourceWorkers, len(stacks)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(stacks) {
					return
				}
				n, err := c.stackResources(ctx, ep, &stacks[i])
				pages.Add(int64(n))
				if err != nil {
					// The first failure decides; the others only see
					// its cancellation.
					once.Do(func() { first = err; cancel() })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if first == nil && int(done.Load()) < len(stacks) {
		first = fmt.Errorf("heat: list stack resources: %w", ctx.Err())
	}
	return int(pages.Load()), first
}

// stackResources fetches one stack's resource list (GET
// stacks/{name}/{id}/resources, as heatclient's resources.list does after
// resolving the id) and sets e's data.resources and links.
func (c *Collector) stackResources(ctx context.Context, ep string, e *entity.Entity) (int, error) {
	u := ep + "stacks/" + url.PathEscape(e.Name) + "/" + url.PathEscape(e.ID) + "/resources"
	ls := listSpec{service: "heat", what: "resources of stack " + e.ID, url: withQuery(u, "nested_depth", stackNestedDepth), key: "resources"}
	var res []map[string]any
	n, err := c.sess.list(ctx, ls, func(o map[string]any, _ [16]byte) error {
		res = append(res, o)
		return nil
	})
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusNotFound {
		c.log.Debug("heat stack gone before its resources were listed", "stack", e.ID, "err", err)
		return n, nil
	}
	if err != nil {
		return n, err
	}
	setStackResources(e, res)
	return n, nil
}

// setStackResources puts the mapped resources into e's data.resources,
// sorted so that Heat's order never looks like a change, and links e to
// each one's entity as "comprised", sorted and without duplicates (a
// resource may appear at several nesting levels). Resources not created
// yet (no physical id) and types Vitrage does not map are skipped.
func setStackResources(e *entity.Entity, res []map[string]any) {
	kept := make([]map[string]any, 0, len(res))
	var links []entity.Link
	for _, r := range res {
		typ, pid := comprisedTypes[str(r, "resource_type")], str(r, "physical_resource_id")
		if typ == "" || pid == "" {
			continue
		}
		kept = append(kept, r)
		links = append(links, entity.Link{Key: entity.MakeKey(typ, pid), Relation: "comprised"})
	}
	slices.SortStableFunc(kept, func(a, b map[string]any) int {
		return cmp.Or(
			cmp.Compare(str(a, "physical_resource_id"), str(b, "physical_resource_id")),
			cmp.Compare(str(a, "resource_type"), str(b, "resource_type")),
			cmp.Compare(str(a, "parent_resource"), str(b, "parent_resource")),
			cmp.Compare(str(a, "resource_name"), str(b, "resource_name")),
		)
	})
	slices.SortFunc(links, func(a, b entity.Link) int { return cmp.Compare(a.Key, b.Key) })
	links = slices.Compact(links)
	list := make([]any, len(kept))
	for i, r := range kept {
		list[i] = r
	}
	if e.Data == nil {
		e.Data = map[string]any{}
	}
	e.Data["resources"] = list
	e.Links = links
	stripVolatile(e)
}
