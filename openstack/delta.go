package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// novaDeltaMinor is the least Nova microversion changes-since is used at:
// the one it was tried at with all_tenants=1 on a real Nova (servers
// without networks need it too).
const novaDeltaMinor = 37

// cinderDeltaVersion is the Cinder microversion of the change listings:
// updated_at=gte: with time comparison operators. Below 3.31 Cinder
// ignores the filter silently and lists everything; its changes-since
// answers an empty list: neither is ever trusted.
const cinderDeltaVersion = "3.60"

// deltaCapable are the types whose API has a change filter.
var deltaCapable = map[string]bool{TypeInstance: true, TypeNetwork: true, TypePort: true, TypeVolume: true}

// deltaState is what a type listed incrementally remembers between polls.
// It moves only when a snapshot is applied (Snapshot.Applied).
type deltaState struct {
	// watermark is the service's clock, less the overlap, when the last
	// applied listing began; zero: the next listing is full.
	watermark time.Time
	// lastFull is the local start of the last applied full listing.
	lastFull time.Time
	// refusedAt is when the service last refused the change filter;
	// refused says how. The type is listed in full until full_every has
	// passed, then the filter is tried again.
	refusedAt time.Time
	refused   string
	// gen changes when the state is reset, so that a snapshot listed
	// before the reset cannot set it again.
	gen int
	// revs are the revision_number of each Neutron resource as last
	// listed (nil: unknown): while Neutron refuses changed_since, the
	// resources whose revision moved are the changes.
	revs map[string]string
}

// delta returns typ's state; c.mu must be held.
func (c *Collector) delta(typ string) *deltaState {
	d := c.deltas[typ]
	if d == nil {
		d = &deltaState{}
		c.deltas[typ] = d
	}
	return d
}

// planned is how a type is listed in one poll.
type planned struct {
	// since is the watermark of a change listing (delta).
	since time.Time
	delta bool
	// revisions: Neutron refused changed_since and the revisions of its
	// resources are known: compare them instead (revs).
	revisions bool
	revs      map[string]string
	// gen is the state's generation the listing belongs to; why says what
	// keeps a type that could be listed incrementally from its change
	// filter (a refusal not yet retried).
	gen int
	why string
}

// plan decides how typ is listed now.
func (c *Collector) plan(typ string) planned {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.delta(typ)
	p := planned{gen: d.gen}
	every := c.opts.FullEvery.D()
	switch {
	case !*c.opts.Incremental, !deltaCapable[typ]:
	case d.watermark.IsZero(), time.Since(d.lastFull) >= every:
	case !d.refusedAt.IsZero() && time.Since(d.refusedAt) < every:
		if (typ == TypeNetwork || typ == TypePort) && d.revs != nil {
			p.revisions, p.revs = true, d.revs
		} else {
			p.why = d.refused
		}
	default:
		p.since, p.delta = d.watermark, true
	}
	return p
}

// applied moves the states of the types listed in one poll, once the engine
// has applied their snapshot.
func (c *Collector) applied(marks map[string]pendingMark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for typ, m := range marks {
		d := c.delta(typ)
		if d.gen != m.gen {
			continue
		}
		if !m.mark.IsZero() {
			d.watermark = m.mark
		}
		if !m.full.IsZero() {
			d.lastFull = m.full
		}
		if m.revs != nil {
			d.revs = m.revs
		}
		if st := c.status[typ]; st != nil {
			st.Watermark, st.LastFull = d.watermark, d.lastFull
		}
	}
}

// pendingMark is a listing's watermark and full-listing time, waiting for
// the engine.
type pendingMark struct {
	gen        int
	mark, full time.Time
	revs       map[string]string
}

// reset forgets typ's watermark: its next listing is full.
func (c *Collector) reset(typ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.delta(typ)
	d.gen++
	d.watermark, d.lastFull, d.revs = time.Time{}, time.Time{}, nil
}

// cinder reads Cinder's maximum microversion from its version document, to
// list volumes at cinderDeltaVersion where the cloud has it (full listings
// too, so that an item looks the same in either).
type cinder struct {
	s *session

	mu  sync.Mutex
	neg bool
	mv  string // "" below cinderDeltaVersion: no header, no change filter
	max string
}

// negotiate reads the version document once it succeeds; until then the
// volumes are listed at Cinder's default microversion, in full.
func (cv *cinder) negotiate(ctx context.Context, endpoint string) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.neg {
		return
	}
	root, err := versionRoot(endpoint)
	if err != nil {
		return
	}
	// GET /v3/ answers {"versions": [{...}]}; some deployments answer
	// {"version": {...}} as Nova does.
	type version struct {
		ID      string `json:"id"`
		Version string `json:"version"`
	}
	var doc struct {
		Versions []version `json:"versions"`
		Version  *version  `json:"version"`
	}
	err = cv.s.get(ctx, root, nil, 1, func(r io.Reader) error { return json.NewDecoder(r).Decode(&doc) })
	if err != nil {
		cv.s.log.Debug("cinder version document unavailable, listing volumes in full", "err", err)
		return
	}
	if doc.Version != nil {
		doc.Versions = append(doc.Versions, *doc.Version)
	}
	for _, v := range doc.Versions {
		if v.ID == "v3.0" || len(doc.Versions) == 1 {
			cv.max = v.Version
		}
	}
	cv.neg = true
	if major(cv.max) == 3 && minorOf2(cv.max) >= minorOf2(cinderDeltaVersion) {
		cv.mv = cinderDeltaVersion
	}
}

func (cv *cinder) header() map[string]string {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.mv == "" {
		return nil
	}
	return map[string]string{"OpenStack-API-Version": "volume " + cv.mv}
}

// noDelta says why volumes cannot be listed incrementally ("" when they
// can).
func (cv *cinder) noDelta() string {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	switch {
	case cv.mv != "":
		return ""
	case !cv.neg:
		return "cinder version document not read yet"
	}
	return fmt.Sprintf("cinder maximum microversion %q < %s", cv.max, cinderDeltaVersion)
}

// microversion is the one volumes are listed at ("" for Cinder's default).
func (cv *cinder) microversion() string {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	return cv.mv
}

// versionRoot cuts an endpoint after its version segment
// (http://h/volume/v3/<project> → http://h/volume/v3/). Unlike gophercloud's
// BaseVersionedEndpoint it matches whole path segments only, so that a
// prefix such as /volumev3/ is not taken for the version.
func versionRoot(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	u.RawQuery, u.Fragment = "", ""
	parts := strings.Split(u.Path, "/")
	for i, p := range parts {
		if versionSegment.MatchString(p) {
			u.Path = strings.Join(parts[:i+1], "/") + "/"
			return u.String(), nil
		}
	}
	return "", fmt.Errorf("no version in endpoint %s", endpoint)
}

var versionSegment = regexp.MustCompile(`^v[0-9]+(\.[0-9]+)?$`)

// major and minorOf2 read "M.N" microversions (-1 when malformed).
func major(v string) int {
	var a, b int
	if _, err := fmt.Sscanf(v, "%d.%d", &a, &b); err != nil {
		return -1
	}
	return a
}

func minorOf2(v string) int {
	var a, b int
	if _, err := fmt.Sscanf(v, "%d.%d", &a, &b); err != nil {
		return -1
	}
	return b
}

// Traffic is the number of requests made and response body bytes read
// since the collector was built, for the metrics.
func (c *Collector) Traffic() (requests, bytes int64) {
	return c.sess.requests.Load(), c.sess.bytes.Load()
}
