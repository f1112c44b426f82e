package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// listType runs the listing of one entity type.
func (c *Collector) listType(ctx context.Context, typ string) ([]entity.Entity, int, error) {
	var out []entity.Entity
	// add maps each item. An entity made from its item and nothing else
	// (single) carries the item's fingerprint, so that the engine need not
	// hash it again while the item's bytes stay the same.
	add := func(m func(map[string]any) entity.Entity, single bool) func(map[string]any, [16]byte) error {
		return func(o map[string]any, fp [16]byte) error {
			e := m(o)
			if e.ID == "" {
				return fmt.Errorf("%s without an id", typ)
			}
			stripVolatile(&e)
			if single {
				e.Fingerprint = fp
			}
			out = append(out, e)
			return nil
		}
	}
	limit := limitQuery(c.opts.PageSize)
	switch typ {
	case TypeInstance, TypeHost, TypeZone:
		ep, err := c.sess.endpoint("compute")
		if err != nil {
			return nil, 0, fmt.Errorf("nova: %w", err)
		}
		c.nova.negotiate(ctx, ep)
		switch typ {
		case TypeInstance:
			ls := c.nova.spec(ep, "servers/detail", "servers", true, append([]string{"all_tenants", "1"}, limit...)...)
			n, err := c.sess.list(ctx, ls, add(mapServer, true))
			return out, n, err
		case TypeZone:
			ls := c.nova.spec(ep, "os-availability-zone/detail", "availabilityZoneInfo", false)
			ls.what = "availability zones"
			n, err := c.sess.list(ctx, ls, func(o map[string]any, fp [16]byte) error {
				if str(o, "zoneName") == "internal" {
					return nil // nova's own services, not a zone for instances
				}
				return add(mapZone, true)(o, fp)
			})
			return out, n, err
		default:
			return c.listHosts(ctx, ep, limit)
		}
	case TypeNetwork, TypePort:
		ep, err := c.sess.endpoint("network")
		if err != nil {
			return nil, 0, fmt.Errorf("neutron: %w", err)
		}
		if !strings.HasSuffix(ep, "v2.0/") {
			ep += "v2.0/"
		}
		key, m := "networks", mapNetwork
		if typ == TypePort {
			key, m = "ports", mapPort
		}
		ls := listSpec{service: "neutron", what: key, url: withQuery(ep+key, limit...), key: key, links: true, paged: true}
		n, err := c.sess.list(ctx, ls, add(m, true))
		return out, n, err
	case TypeVolume:
		ep, err := c.sess.endpoint("block-storage", "volumev3")
		if err != nil {
			return nil, 0, fmt.Errorf("cinder: %w", err)
		}
		ls := listSpec{service: "cinder", what: "volumes", url: withQuery(ep+"volumes/detail", append([]string{"all_tenants", "1"}, limit...)...), key: "volumes", links: true, paged: true}
		n, err := c.sess.list(ctx, ls, add(mapVolume, true))
		return out, n, err
	case TypeStack:
		ep, err := c.sess.endpoint("orchestration")
		if err != nil {
			return nil, 0, fmt.Errorf("heat: %w", err)
		}
		ls := listSpec{service: "heat", what: "stacks", url: withQuery(ep+"stacks", append([]string{"global_tenant", "true"}, limit...)...), key: "stacks", paged: true}
		n, err := c.sess.list(ctx, ls, add(mapStack, false)) // resources are added below
		if err != nil {
			return out, n, err
		}
		rn, err := c.addStackResources(ctx, ep, out)
		return out, n + rn, err
	}
	return nil, 0, fmt.Errorf("unknown type %q", typ)
}

// listHosts lists the nova-compute services and merges the hypervisors each
// one runs into it; a failure of either fails nova.host.
func (c *Collector) listHosts(ctx context.Context, ep string, limit []string) ([]entity.Entity, int, error) {
	hvs := map[string][]any{}
	hn, err := c.sess.list(ctx, c.nova.spec(ep, "os-hypervisors/detail", "hypervisors", true, limit...), func(o map[string]any, _ [16]byte) error {
		host := str(o, "hypervisor_hostname")
		if svc, ok := o["service"].(map[string]any); ok && str(svc, "host") != "" {
			host = str(svc, "host")
		}
		hvs[host] = append(hvs[host], o)
		return nil
	})
	var he *HTTPError
	if errors.As(err, &he) && (he.Status == http.StatusForbidden || he.Status == http.StatusNotFound) {
		// Policy may deny the hypervisor API to our role; hosts without
		// hypervisor details beat no hosts (every instance's parent).
		c.hvOnce.Do(func() { c.log.Warn("nova hypervisors unavailable, listing hosts without them", "err", err) })
		hvs, err = nil, nil
	}
	if err != nil {
		return nil, hn, err
	}
	var out []entity.Entity
	seen := map[string]bool{}
	sn, err := c.sess.list(ctx, c.nova.spec(ep, "os-services", "services", false, "binary", "nova-compute"), func(o map[string]any, _ [16]byte) error {
		if str(o, "binary") != "nova-compute" {
			return nil // the filter is a hint to nova, not a promise
		}
		h := str(o, "host")
		if h == "" || seen[h] {
			return nil
		}
		seen[h] = true
		e := mapHost(o, hvs[h])
		stripVolatile(&e)
		out = append(out, e)
		return nil
	})
	return out, hn + sn, err
}
