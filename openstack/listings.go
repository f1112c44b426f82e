package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// listing is the outcome of one type's listing in one poll.
type listing struct {
	ents  []entity.Entity
	pages int
	// complete: every entity of the type is in ents or present, so the
	// engine may delete the others (a full listing, or changes plus an id
	// listing).
	complete bool
	present  []string // keys listed by id only
	deletes  []string // keys the change listing reports deleted
	mode     string   // modeFull or modeDelta
	// mark is the watermark this listing earns once applied (zero: keep
	// the old one); full is the local start of a full listing.
	mark time.Time
	full time.Time
	// unavailable says why the type was listed in full although it has a
	// change filter ("" when it was not, or when it has none).
	unavailable string
	// gen is the generation of the type's state the listing was planned
	// in (deltaState.gen): a reset since makes its mark void.
	gen int
	// revs are the revisions of a Neutron type's resources as listed (nil:
	// keep the known ones).
	revs map[string]string
}

// Listing modes, as status shows them.
const (
	modeFull  = "full"
	modeDelta = "delta"
)

// listType runs the listing of one entity type, in full or, when the type's
// API has a change filter and a watermark is known, of the changes since.
func (c *Collector) listType(ctx context.Context, typ string) (*listing, error) {
	l := &listing{mode: modeFull}
	// add maps each item. An entity made from its item and nothing else
	// (single) carries the item's fingerprint, so that the engine need not
	// hash it again while the item's bytes stay the same.
	add := func(m func(map[string]any) entity.Entity, single bool) func(map[string]any, [16]byte) error {
		return func(o map[string]any, fp [16]byte) error {
			dropSecrets(typ, o)
			e := m(o)
			if e.ID == "" {
				return fmt.Errorf("%s without an id", typ)
			}
			stripVolatile(&e)
			if single {
				e.Fingerprint = fp
			}
			l.ents = append(l.ents, e)
			return nil
		}
	}
	limit := limitQuery(c.opts.PageSize)
	p := c.plan(typ)
	since, delta := p.since, p.delta
	l.gen, l.unavailable = p.gen, p.why
	switch typ {
	case TypeInstance, TypeHost, TypeZone:
		ep, err := c.sess.endpoint("compute")
		if err != nil {
			return nil, fmt.Errorf("nova: %w", err)
		}
		c.nova.negotiate(ctx, ep)
		switch typ {
		case TypeInstance:
			return c.listServers(ctx, ep, l, add(mapServer, true), since, delta)
		case TypeZone:
			ls := c.nova.spec(ep, "os-availability-zone/detail", "availabilityZoneInfo", false)
			ls.what = "availability zones"
			var err error
			l.pages, err = c.sess.list(ctx, ls, func(o map[string]any, fp [16]byte) error {
				if str(o, "zoneName") == "internal" {
					return nil // nova's own services, not a zone for instances
				}
				return add(mapZone, true)(o, fp)
			})
			l.complete = true
			return l, err
		default:
			var err error
			l.ents, l.pages, err = c.listHosts(ctx, ep, limit)
			l.complete = true
			return l, err
		}
	case TypeNetwork, TypePort:
		ep, err := c.sess.endpoint("network")
		if err != nil {
			return nil, fmt.Errorf("neutron: %w", err)
		}
		if !strings.HasSuffix(ep, "v2.0/") {
			ep += "v2.0/"
		}
		key, m := "networks", mapNetwork
		if typ == TypePort {
			key, m = "ports", mapPort
		}
		base := listSpec{service: "neutron", what: key, key: key, links: true, paged: true}
		q := changeQueries{
			full:  withQuery(ep+key, limit...),
			delta: withQuery(ep+key, append([]string{"changed_since", since.UTC().Format(time.RFC3339)}, limit...)...),
			ids:   withQuery(ep+key, append([]string{"fields", "id"}, limit...)...),
			spec:  base,
		}
		if p.revisions {
			return c.listRevisions(ctx, typ, l, add(m, true), p.revs, q, ep+key)
		}
		l, err = c.listChanged(ctx, typ, l, add(m, true), since, delta, q)
		if err == nil && l.mode == modeFull {
			l.revs = revisionsOf(l.ents)
		}
		return l, err
	case TypeVolume:
		ep, err := c.sess.endpoint("block-storage", "volumev3")
		if err != nil {
			return nil, fmt.Errorf("cinder: %w", err)
		}
		c.cinder.negotiate(ctx, ep)
		base := listSpec{service: "cinder", what: "volumes", key: "volumes", links: true, paged: true, header: c.cinder.header}
		all := append([]string{"all_tenants", "1"}, limit...)
		q := changeQueries{
			full: withQuery(ep+"volumes/detail", all...),
			// Cinder's DATETIME columns compare with a time without zone.
			delta: withQuery(ep+"volumes/detail", append([]string{"updated_at", "gte:" + since.UTC().Format("2006-01-02T15:04:05")}, all...)...),
			// Cinder inserts a volume with a null updated_at, which no
			// updated_at filter passes: new volumes are asked for apart.
			created: withQuery(ep+"volumes/detail", append([]string{"created_at", "gte:" + since.UTC().Format("2006-01-02T15:04:05")}, all...)...),
			ids:     withQuery(ep+"volumes", all...),
			spec:    base,
		}
		if why := c.cinder.noDelta(); why != "" && delta {
			delta, l.unavailable = false, why
		}
		return c.listChanged(ctx, typ, l, add(mapVolume, true), since, delta, q)
	case TypeStack:
		ep, err := c.sess.endpoint("orchestration")
		if err != nil {
			return nil, fmt.Errorf("heat: %w", err)
		}
		ls := listSpec{service: "heat", what: "stacks", url: withQuery(ep+"stacks", append([]string{"global_tenant", "true"}, limit...)...), key: "stacks", paged: true}
		n, err := c.sess.list(ctx, ls, add(mapStack, false)) // resources are added below
		l.pages, l.complete = n, true
		if err != nil {
			return l, err
		}
		rn, err := c.addStackResources(ctx, ep, l.ents)
		l.pages += rn
		return l, err
	}
	return nil, fmt.Errorf("unknown type %q", typ)
}

// listServers lists Nova's servers: in full, or with changes-since, whose
// DELETED and SOFT_DELETED rows are the deletes (a full listing shows
// neither).
func (c *Collector) listServers(ctx context.Context, ep string, l *listing, add func(map[string]any, [16]byte) error, since time.Time, delta bool) (*listing, error) {
	all := append([]string{"all_tenants", "1"}, limitQuery(c.opts.PageSize)...)
	if delta && minorOf(c.nova.microversion()) < novaDeltaMinor {
		delta, l.unavailable = false, fmt.Sprintf("nova microversion %s < 2.%d", c.nova.microversion(), novaDeltaMinor)
	}
	if delta {
		ls := c.nova.spec(ep, "servers/detail", "servers", true, append([]string{"changes-since", since.UTC().Format(time.RFC3339)}, all...)...)
		l.mode = modeDelta
		clock := c.watch(&ls)
		n, err := c.sess.list(ctx, ls, func(o map[string]any, fp [16]byte) error {
			clock.note(o)
			if ignoredFilter(o, since, false) {
				return errFilterIgnored
			}
			switch str(o, "status") {
			case "DELETED", "SOFT_DELETED":
				if id := str(o, "id"); id != "" {
					l.deletes = append(l.deletes, entity.MakeKey(TypeInstance, id))
				}
				return nil
			}
			return add(o, fp)
		})
		l.pages, l.mark = n, clock.mark()
		if !c.refused(TypeInstance, err, l) {
			return l, err
		}
	}
	ls := c.nova.spec(ep, "servers/detail", "servers", true, all...)
	return c.fullListing(ctx, ls, l, add)
}

// changeQueries are the URLs of a type whose API hard-deletes: the full
// listing, the change listing and the id listing that tells the deletes;
// created, when set, lists the items created since (those the change
// listing cannot see).
type changeQueries struct {
	full, delta, ids, created string
	spec                      listSpec
}

// listChanged lists a Neutron or Cinder type: in full, or its changes plus
// the ids of all its items (the API forgets deleted items, so deletes are
// what the id listing no longer has).
func (c *Collector) listChanged(ctx context.Context, typ string, l *listing, add func(map[string]any, [16]byte) error, since time.Time, delta bool, q changeQueries) (*listing, error) {
	if delta {
		ls := q.spec
		ls.url, l.mode = q.delta, modeDelta
		clock := c.watch(&ls)
		n, err := c.sess.list(ctx, ls, func(o map[string]any, fp [16]byte) error {
			clock.note(o)
			// A row never updated has a null updated_at, which no
			// updated_at filter lets through.
			if ignoredFilter(o, since, true) {
				return errFilterIgnored
			}
			return add(o, fp)
		})
		l.pages, l.mark = n, clock.mark()
		if c.refused(typ, err, l) {
			return c.fullListing(ctx, withURL(q.spec, q.full), l, add)
		}
		if err != nil {
			return l, err
		}
		if q.created != "" {
			listed := make(map[string]bool, len(l.ents))
			for _, e := range l.ents {
				listed[e.ID] = true
			}
			cs := q.spec
			cs.url, cs.what = q.created, q.spec.what+" (created)"
			n, err := c.sess.list(ctx, cs, func(o map[string]any, fp [16]byte) error {
				if t := timeField(o, "created_at"); t.IsZero() || t.Before(since.Add(-time.Second)) {
					return errFilterIgnored
				}
				if listed[str(o, "id")] {
					return nil
				}
				return add(o, fp)
			})
			l.pages += n
			if c.refused(typ, err, l) {
				return c.fullListing(ctx, withURL(q.spec, q.full), l, add)
			}
			if err != nil {
				return l, err
			}
		}
		ids := q.spec
		ids.url, ids.what = q.ids, q.spec.what+" (ids)"
		n, err = c.sess.list(ctx, ids, func(o map[string]any, _ [16]byte) error {
			id := str(o, "id")
			if id == "" {
				return fmt.Errorf("%s without an id", typ)
			}
			l.present = append(l.present, entity.MakeKey(typ, id))
			return nil
		})
		l.pages += n
		l.complete = err == nil
		return l, err
	}
	return c.fullListing(ctx, withURL(q.spec, q.full), l, add)
}

// revisionChunk is how many ids one request of details asks for
// (id=A&id=B...: about 40 bytes of URL each).
const revisionChunk = 50

// listRevisions lists a Neutron type that refuses changed_since by its
// resources' revision_number, which Neutron moves at every change (tags
// included): the ids and revisions of all (fields=id&fields=revision_number,
// which is also the id listing that tells deletes), then the details of
// those whose revision moved or that are new (id=A&id=B...).
func (c *Collector) listRevisions(ctx context.Context, typ string, l *listing, add func(map[string]any, [16]byte) error, known map[string]string, q changeQueries, collURL string) (*listing, error) {
	l.mode = modeDelta
	ls := q.spec
	ls.url = withQuery(q.ids, "fields", "id")
	u, _ := url.Parse(ls.url)
	qs := u.Query()
	qs.Add("fields", "revision_number")
	u.RawQuery = qs.Encode()
	ls.url, ls.what = u.String(), q.spec.what+" (revisions)"
	clock := c.watch(&ls)
	revs := make(map[string]string, len(known))
	var changed []string
	n, err := c.sess.list(ctx, ls, func(o map[string]any, _ [16]byte) error {
		id := str(o, "id")
		rev, ok := revision(o)
		if id == "" || !ok {
			return fmt.Errorf("%s without an id or a revision_number", typ)
		}
		l.present = append(l.present, entity.MakeKey(typ, id))
		revs[id] = rev
		if old, ok := known[id]; !ok || old != rev {
			changed = append(changed, id)
		}
		return nil
	})
	l.pages, l.mark = n, clock.mark()
	if err != nil {
		return l, err
	}
	for len(changed) > 0 {
		chunk := changed[:min(revisionChunk, len(changed))]
		changed = changed[len(chunk):]
		u, err := url.Parse(collURL)
		if err != nil {
			return l, err
		}
		qs := url.Values{"id": chunk}
		u.RawQuery = qs.Encode()
		ds := q.spec
		ds.url, ds.what = u.String(), q.spec.what+" (changed)"
		n, err := c.sess.list(ctx, ds, func(o map[string]any, fp [16]byte) error {
			// The details may be newer than the revision listed.
			if rev, ok := revision(o); ok {
				revs[str(o, "id")] = rev
			}
			return add(o, fp)
		})
		l.pages += n
		if err != nil {
			return l, err
		}
	}
	l.revs, l.complete = revs, true
	return l, nil
}

// revisionsOf reads the revision_number of listed Neutron resources (nil
// when one has none: revisions cannot tell changes then).
func revisionsOf(ents []entity.Entity) map[string]string {
	revs := make(map[string]string, len(ents))
	for _, e := range ents {
		rev, ok := revision(e.Data)
		if !ok {
			return nil
		}
		revs[e.ID] = rev
	}
	return revs
}

// revision reads a resource's revision_number as the text of the number.
func revision(o map[string]any) (string, bool) {
	switch v := o["revision_number"].(type) {
	case json.Number:
		return v.String(), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

func withURL(ls listSpec, u string) listSpec {
	ls.url = u
	return ls
}

// fullListing lists every item of a type; its first page's Date is the
// watermark of the changes that follow.
func (c *Collector) fullListing(ctx context.Context, ls listSpec, l *listing, add func(map[string]any, [16]byte) error) (*listing, error) {
	l.ents, l.present, l.deletes, l.mode, l.mark = nil, nil, nil, modeFull, time.Time{}
	l.full = time.Now()
	clock := c.watch(&ls)
	n, err := c.sess.list(ctx, ls, func(o map[string]any, fp [16]byte) error {
		clock.note(o)
		return add(o, fp)
	})
	l.pages += n
	l.complete, l.mark = err == nil, clock.mark()
	return l, err
}

// clockReader makes a listing's watermark from the service's clock: the
// Date of its first page, less the overlap; without a Date header, the
// newest updated time of the items listed, less the overlap.
type clockReader struct {
	date, newest time.Time
	overlap      time.Duration
}

// watch makes ls record its first page's Date for the watermark.
func (c *Collector) watch(ls *listSpec) *clockReader {
	r := &clockReader{overlap: c.opts.DeltaOverlap.D()}
	ls.date = &r.date
	return r
}

func (r *clockReader) note(o map[string]any) {
	if t := updatedAt(o); t.After(r.newest) {
		r.newest = t
	}
}

// mark is the watermark (zero when the listing told no time).
func (r *clockReader) mark() time.Time {
	switch {
	case !r.date.IsZero():
		return r.date.Add(-r.overlap)
	case !r.newest.IsZero():
		return r.newest.Add(-r.overlap)
	}
	return time.Time{}
}

// updatedAt reads an item's updated time (Nova "updated", Neutron and
// Cinder "updated_at"; Cinder's has no zone and is UTC).
func updatedAt(o map[string]any) time.Time {
	if t := timeField(o, "updated"); !t.IsZero() {
		return t
	}
	return timeField(o, "updated_at")
}

// timeField reads a time field, with or without zone (UTC); zero when
// null, missing or malformed.
func timeField(o map[string]any, k string) time.Time {
	v := str(o, k)
	if v == "" {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t
		}
	}
	return time.Time{}
}

// errFilterIgnored stops a change listing that lists an item the filter
// excludes: the service ignored the filter (Cinder without its
// resource_query_filters_file, Neutron without its timestamp extension and
// filter_validation off) and is listing everything.
var errFilterIgnored = errors.New("change filter ignored: an item older than the filter's time was listed")

// ignoredFilter reports whether an item of a change listing since since
// shows that the filter was ignored: updated before since (a second's
// leeway for the database's rounding), or, with nullIgnored, no updated
// time at all.
func ignoredFilter(o map[string]any, since time.Time, nullIgnored bool) bool {
	t := updatedAt(o)
	if t.IsZero() {
		return nullIgnored
	}
	return t.Before(since.Add(-time.Second))
}

// refused reports whether err is the service refusing the change filter
// (400: Neutron's filter_validation, an unknown parameter) or ignoring it,
// and if so remembers it, so that the type is listed in full until
// full_every has passed, and clears what the change listing gathered.
func (c *Collector) refused(typ string, err error, l *listing) bool {
	var he *HTTPError
	var why string
	switch {
	case errors.Is(err, errFilterIgnored):
		why = errFilterIgnored.Error()
	case errors.As(err, &he) && he.Status == http.StatusBadRequest:
		why = fmt.Sprintf("change filter refused: HTTP %d: %s", he.Status, he.Message)
	default:
		return false
	}
	c.mu.Lock()
	d := c.delta(typ)
	first := d.refusedAt.IsZero()
	d.refusedAt, d.refused = time.Now(), why
	c.mu.Unlock()
	lvl := c.log.Debug
	if first {
		lvl = c.log.Info
	}
	lvl("openstack change filter refused, listing in full", "type", typ, "err", c.sess.redact(err), "retry_after", c.opts.FullEvery.D())
	l.unavailable = why
	l.ents, l.deletes, l.present = nil, nil, nil
	return true
}

// listHosts lists the nova-compute services and merges the hypervisors each
// one runs into it; a failure of either fails nova.host.
func (c *Collector) listHosts(ctx context.Context, ep string, limit []string) ([]entity.Entity, int, error) {
	hvs := map[string][]any{}
	hn, err := c.sess.list(ctx, c.nova.specMax(ep, "os-hypervisors/detail", "hypervisors", true, hypervisorMaxMinor, limit...), func(o map[string]any, _ [16]byte) error {
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
	if minorOf(c.nova.microversion()) > hypervisorMaxMinor {
		// Listed at 2.87 in place of the microversion in use: the host
		// shows what that one would, uptime aside.
		for _, l := range hvs {
			for _, o := range l {
				for _, f := range hypervisorOnlyFields {
					delete(o.(map[string]any), f)
				}
			}
		}
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
