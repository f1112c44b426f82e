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
	"sync"
	"sync/atomic"
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
	hvOnce sync.Once
	// active is the set of entity types anyone wants (nil: all); the
	// others are not listed at all, sparing the cloud's APIs.
	active atomic.Pointer[map[string]bool]
}

// SetActiveTypes limits the listings to the given types (empty: all
// configured types) from the next poll on. It implements
// collectors.TypeFilter.
func (c *Collector) SetActiveTypes(types []string) {
	var set map[string]bool
	if len(types) > 0 {
		set = make(map[string]bool, len(types))
		for _, t := range types {
			set[t] = true
		}
	}
	c.active.Store(&set)
}

// listed returns the configured types that are active.
func (c *Collector) listed() []string {
	p := c.active.Load()
	if p == nil || *p == nil {
		return c.opts.Types
	}
	var out []string
	for _, t := range c.opts.Types {
		if (*p)[t] {
			out = append(out, t)
		}
	}
	return out
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
	types := c.listed()
	if len(types) == 0 {
		// Nothing of this cloud is wanted: an empty, partial snapshot
		// (no Types) that deletes nothing.
		return &entity.Snapshot{}, nil
	}
	results := make([]result, len(types))
	var wg sync.WaitGroup
	for i, t := range types {
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
	for i, t := range types {
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
