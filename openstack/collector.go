// Package openstack polls OpenStack services (Nova, Neutron, Cinder, Heat)
// through gophercloud and turns what they list into entities: auth the way
// the OpenStack client does it (clouds.yaml, OS_* variables, inline auth),
// one listing per entity type followed to its last page, per-request
// time-outs, retries, re-authentication and Nova microversion negotiation.
// A type whose listing failed is left out of the snapshot's Types, so it
// never causes deletes; the other types are unaffected. Where the API has a
// change filter (Nova, Neutron, Cinder) a type is listed incrementally
// between full listings (listings.go, delta.go): only the changes since a
// watermark taken from the service's own clock, with deletes told
// explicitly or by an id listing, never by absence from the changes.
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
	opts   Options
	log    *slog.Logger
	sess   *session
	nova   *nova
	cinder *cinder

	mu     sync.Mutex
	status map[string]*TypeStatus
	deltas map[string]*deltaState
	hvOnce sync.Once
	// active is the set of entity types anyone wants (nil: all); the
	// others are not listed at all, sparing the cloud's APIs.
	active atomic.Pointer[map[string]bool]
}

// SetActiveTypes limits the listings to the given types (empty: all
// configured types) from the next poll on. It implements
// collectors.TypeFilter.
func (c *Collector) SetActiveTypes(types []string) {
	set := entity.ActiveSet(types)
	old := c.active.Swap(&set)
	// A type that was off missed its changes (the poll loop drops an
	// inactive type's entities even from a listing made while it was on):
	// list it in full again.
	if old != nil && *old != nil {
		for _, t := range c.opts.Types {
			if !(*old)[t] && (set == nil || set[t]) {
				c.reset(t)
			}
		}
	}
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
	// Count and Pages are those of the last successful listing: in delta
	// mode, the changed items, and the pages of the change and id
	// listings.
	Count int `json:"count"`
	Pages int `json:"pages"`
	// Failing is true while the last listing failed.
	Failing bool `json:"failing"`
	// Mode is how the last listing ran: "full", or "delta" (the changes
	// since Watermark, through the API's change filter).
	Mode string `json:"mode,omitempty"`
	// Watermark is the service's clock, less the overlap, at the start of
	// the last applied listing: the next change listing starts there.
	Watermark time.Time `json:"watermark,omitzero"`
	// LastFull is when the last applied full listing began.
	LastFull time.Time `json:"last_full_listing,omitzero"`
	// DeltaUnavailable says why a type with a change filter was listed in
	// full by the last listing (the filter refused, an old microversion).
	DeltaUnavailable string `json:"delta_unavailable,omitempty"`
	// Requests and Bytes are those of the last listing: HTTP requests
	// made and response body bytes read.
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`
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
	c := &Collector{opts: o, log: log, status: map[string]*TypeStatus{}, deltas: map[string]*deltaState{}}
	c.sess = &session{opts: o, dir: dir, log: log}
	c.nova = &nova{s: c.sess, want: o.NovaMicroversion}
	c.cinder = &cinder{s: c.sess}
	for _, t := range o.Types {
		c.status[t] = &TypeStatus{}
	}
	return c, nil
}

// A listing whose pages went round (errPagesRepeat) is started over up to
// listRestarts times in all, restartPause, then twice that, apart: the
// collection usually settles within a second or two (servers booting).
const listRestarts = 3

var restartPause = time.Second

// Collect lists every configured type, concurrently. The snapshot's Types
// holds the types listed completely; an error is returned only when none
// was (authentication failed, or every listing did). A type listed
// incrementally brings its changes, the keys it still has (Present) and
// the keys it deleted (Deletes); its watermark moves when the snapshot is
// applied (Applied).
func (c *Collector) Collect(ctx context.Context) (*entity.Snapshot, error) {
	if err := c.sess.ensure(ctx); err != nil {
		for _, t := range c.opts.Types {
			c.record(t, nil, 0, &meter{}, err, false)
		}
		c.log.Warn("openstack authentication failed", "err", err)
		return nil, fmt.Errorf("openstack: %w", err)
	}
	type result struct {
		l    *listing
		err  error
		took time.Duration
		m    *meter
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
			m := &meter{}
			l, err := c.listType(withMeter(ctx, m), t)
			for try := 1; try < listRestarts && errors.Is(err, errPagesRepeat) && ctx.Err() == nil; try++ {
				c.log.Info("openstack listing started over: its pages went round while the collection changed", "type", t, "try", try+1, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(try) * restartPause):
				}
				l, err = c.listType(withMeter(ctx, m), t)
			}
			results[i] = result{l, c.sess.redact(err), time.Since(start), m}
		}()
	}
	wg.Wait()

	snap := &entity.Snapshot{}
	var errs []error
	marks := map[string]pendingMark{}
	for i, t := range types {
		r := results[i]
		c.record(t, r.l, r.took, r.m, r.err, true)
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if r.l.complete {
			snap.Types = append(snap.Types, t)
		}
		snap.Entities = append(snap.Entities, r.l.ents...)
		snap.Present = append(snap.Present, r.l.present...)
		snap.Deletes = append(snap.Deletes, r.l.deletes...)
		if deltaCapable[t] {
			marks[t] = pendingMark{gen: r.l.gen, mark: r.l.mark, full: r.l.full, revs: r.l.revs}
		}
	}
	if len(snap.Types) == 0 && len(marks) == 0 {
		return nil, fmt.Errorf("openstack: nothing listed: %w", errors.Join(errs...))
	}
	if len(marks) > 0 {
		snap.Applied = func() { c.applied(marks) }
	}
	return snap, nil
}

// record stores the outcome of one listing and, with logIt, logs failures
// once per distinct error, with a "recovered" line when a failing type
// succeeds.
func (c *Collector) record(typ string, l *listing, took time.Duration, m *meter, err error, logIt bool) {
	count, pages := 0, 0
	if l != nil {
		count, pages = len(l.ents), l.pages
	}
	c.mu.Lock()
	st := c.status[typ]
	if st == nil {
		st = &TypeStatus{}
		c.status[typ] = st
	}
	st.Duration = took.Seconds()
	st.Requests, st.Bytes = m.requests.Load(), m.bytes.Load()
	wasFailing, lastErr := st.Failing, st.LastError
	if err != nil {
		st.Failing, st.LastError, st.LastErrorAt = true, err.Error(), time.Now().UTC()
	} else {
		st.Failing, st.LastSuccess, st.Count, st.Pages = false, time.Now().UTC(), count, pages
		st.Mode, st.DeltaUnavailable = l.mode, l.unavailable
	}
	c.mu.Unlock()
	switch {
	case !logIt:
	case err != nil && (!wasFailing || lastErr != err.Error()):
		c.log.Warn("openstack listing failed", "type", typ, "err", err)
	case err == nil && wasFailing:
		c.log.Info("openstack listing recovered", "type", typ, "count", count)
	case err == nil:
		c.log.Debug("openstack listing done", "type", typ, "mode", l.mode, "count", count, "pages", pages,
			"deletes", len(l.deletes), "present", len(l.present), "requests", st.Requests, "bytes", st.Bytes, "duration", took)
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
	reqs, bytes := c.Traffic()
	return map[string]any{
		"types":             types,
		"nova_microversion": c.nova.microversion(),
		// Hypervisors are listed at most at 2.87 (hypervisorMaxMinor).
		"nova_hypervisors_microversion": c.nova.capped(hypervisorMaxMinor),
		"cinder_microversion":           c.cinder.microversion(),
		"tokens_obtained":               c.sess.tokenCount(),
		"requests_total":                reqs,
		"response_bytes_total":          bytes,
		"incremental":                   *c.opts.Incremental,
		"full_every":                    c.opts.FullEvery.D().String(),
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
