// Package openstack polls OpenStack services (Nova, Neutron, Cinder, Heat)
// through gophercloud and turns what they list into entities: auth the way
// the OpenStack client does it (clouds.yaml, OS_* variables, inline auth),
// one listing per entity type followed to its last page, per-request
// time-outs, retries, re-authentication and Nova microversion negotiation.
// A type whose listing failed is left out of the snapshot's Types, so it
// never causes deletes; the other types are unaffected.
package openstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// Collector lists the configured entity types of one cloud. It is safe for
// one Collect at a time (the poll loop's contract) and Status may be called
// concurrently with it.
type Collector struct {
	opts Options
	log  *slog.Logger
	sess *session
	nova *nova

	mu     sync.Mutex
	status map[string]*TypeStatus
}

// TypeStatus is the outcome of the listings of one entity type. It never
// holds a secret: errors are redacted before they are stored.
type TypeStatus struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Duration is that of the last listing, successful or not, in seconds.
	Duration float64 `json:"duration_seconds"`
	// Count and Pages are those of the last successful listing.
	Count int `json:"count"`
	Pages int `json:"pages"`
	// Failing is true while the last listing failed.
	Failing bool `json:"failing"`
}

// New validates the options and builds a collector. It does not contact the
// cloud; it does read clouds.yaml so that a missing cloud is a config
// error. dir resolves relative paths (clouds_file, cacert).
func New(o Options, dir string, log *slog.Logger) (*Collector, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if _, err := resolveCloud(o, dir); err != nil {
		return nil, err
	}
	c := &Collector{opts: o, log: log, status: map[string]*TypeStatus{}}
	c.sess = &session{opts: o, dir: dir, log: log}
	c.nova = &nova{s: c.sess, want: o.NovaMicroversion}
	for _, t := range o.Types {
		c.status[t] = &TypeStatus{}
	}
	return c, nil
}

// Collect lists every configured type, concurrently. The snapshot's Types
// holds the types listed completely; an error is returned only when none
// was (authentication failed, or every listing did).
func (c *Collector) Collect(ctx context.Context) (*entity.Snapshot, error) {
	if err := c.sess.ensure(ctx); err != nil {
		for _, t := range c.opts.Types {
			c.record(t, 0, 0, 0, err, false)
		}
		c.log.Warn("openstack authentication failed", "err", err)
		return nil, fmt.Errorf("openstack: %w", err)
	}
	type result struct {
		ents  []entity.Entity
		pages int
		err   error
		took  time.Duration
	}
	results := make([]result, len(c.opts.Types))
	var wg sync.WaitGroup
	for i, t := range c.opts.Types {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ents, pages, err := c.listType(ctx, t)
			results[i] = result{ents, pages, c.sess.redact(err), time.Since(start)}
		}()
	}
	wg.Wait()

	snap := &entity.Snapshot{}
	var errs []error
	for i, t := range c.opts.Types {
		r := results[i]
		c.record(t, r.took, len(r.ents), r.pages, r.err, true)
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		snap.Types = append(snap.Types, t)
		snap.Entities = append(snap.Entities, r.ents...)
	}
	if len(snap.Types) == 0 {
		return nil, fmt.Errorf("openstack: nothing listed: %w", errors.Join(errs...))
	}
	return snap, nil
}

// listType runs the listing of one entity type.
func (c *Collector) listType(ctx context.Context, typ string) ([]entity.Entity, int, error) {
	var out []entity.Entity
	add := func(m func(map[string]any) entity.Entity) func(map[string]any) error {
		return func(o map[string]any) error {
			e := m(o)
			if e.ID == "" {
				return fmt.Errorf("%s without an id", typ)
			}
			stripVolatile(&e)
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
			n, err := c.sess.list(ctx, ls, add(mapServer))
			return out, n, err
		case TypeZone:
			ls := c.nova.spec(ep, "os-availability-zone/detail", "availabilityZoneInfo", false)
			ls.what = "availability zones"
			n, err := c.sess.list(ctx, ls, func(o map[string]any) error {
				if str(o, "zoneName") == "internal" {
					return nil // nova's own services, not a zone for instances
				}
				return add(mapZone)(o)
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
		n, err := c.sess.list(ctx, ls, add(m))
		return out, n, err
	case TypeVolume:
		ep, err := c.sess.endpoint("block-storage", "volumev3")
		if err != nil {
			return nil, 0, fmt.Errorf("cinder: %w", err)
		}
		ls := listSpec{service: "cinder", what: "volumes", url: withQuery(ep+"volumes/detail", append([]string{"all_tenants", "1"}, limit...)...), key: "volumes", links: true, paged: true}
		n, err := c.sess.list(ctx, ls, add(mapVolume))
		return out, n, err
	case TypeStack:
		ep, err := c.sess.endpoint("orchestration")
		if err != nil {
			return nil, 0, fmt.Errorf("heat: %w", err)
		}
		ls := listSpec{service: "heat", what: "stacks", url: withQuery(ep+"stacks", append([]string{"global_tenant", "true"}, limit...)...), key: "stacks", paged: true}
		n, err := c.sess.list(ctx, ls, add(mapStack))
		return out, n, err
	}
	return nil, 0, fmt.Errorf("unknown type %q", typ)
}

// listHosts lists the nova-compute services and merges the hypervisors each
// one runs into it; a failure of either fails nova.host.
func (c *Collector) listHosts(ctx context.Context, ep string, limit []string) ([]entity.Entity, int, error) {
	hvs := map[string][]any{}
	hn, err := c.sess.list(ctx, c.nova.spec(ep, "os-hypervisors/detail", "hypervisors", true, limit...), func(o map[string]any) error {
		host := str(o, "hypervisor_hostname")
		if svc, ok := o["service"].(map[string]any); ok && str(svc, "host") != "" {
			host = str(svc, "host")
		}
		hvs[host] = append(hvs[host], o)
		return nil
	})
	if err != nil {
		return nil, hn, err
	}
	var out []entity.Entity
	seen := map[string]bool{}
	sn, err := c.sess.list(ctx, c.nova.spec(ep, "os-services", "services", false, "binary", "nova-compute"), func(o map[string]any) error {
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

// record stores the outcome of one listing and, with logIt, logs failures
// once per distinct error, with a "recovered" line when a failing type
// succeeds.
func (c *Collector) record(typ string, took time.Duration, count, pages int, err error, logIt bool) {
	c.mu.Lock()
	st := c.status[typ]
	if st == nil {
		st = &TypeStatus{}
		c.status[typ] = st
	}
	st.Duration = took.Seconds()
	wasFailing, lastErr := st.Failing, st.LastError
	if err != nil {
		st.Failing, st.LastError, st.LastErrorAt = true, err.Error(), time.Now().UTC()
	} else {
		st.Failing, st.LastSuccess, st.Count, st.Pages = false, time.Now().UTC(), count, pages
	}
	c.mu.Unlock()
	switch {
	case !logIt:
	case err != nil && (!wasFailing || lastErr != err.Error()):
		c.log.Warn("openstack listing failed", "type", typ, "err", err)
	case err == nil && wasFailing:
		c.log.Info("openstack listing recovered", "type", typ, "count", count)
	case err == nil:
		c.log.Debug("openstack listing done", "type", typ, "count", count, "pages", pages, "duration", took)
	}
}

// Status reports per type the last success, last error, duration and
// counts, the Nova microversion in use and the tokens obtained. It holds no
// secret.
func (c *Collector) Status() map[string]any {
	c.mu.Lock()
	types := make(map[string]TypeStatus, len(c.status))
	for t, st := range c.status {
		types[t] = *st
	}
	c.mu.Unlock()
	return map[string]any{
		"types":             types,
		"nova_microversion": c.nova.microversion(),
		"tokens_obtained":   c.sess.tokenCount(),
	}
}

// Close releases idle connections.
func (c *Collector) Close() error {
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	if c.sess.pc != nil {
		c.sess.pc.HTTPClient.CloseIdleConnections()
	}
	return nil
}
