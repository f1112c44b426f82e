package openstacktest

import (
	"bufio"
	"crypto/rand"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed testdata
var fixtures embed.FS

// Collection names, usable as failure targets and in Requests.
const (
	Servers     = "servers"
	Services    = "services"
	Hypervisors = "hypervisors"
	Zones       = "zones"
	Networks    = "networks"
	Ports       = "ports"
	Volumes     = "volumes"
	Stacks      = "stacks"
	Keystone    = "keystone"
	// Resources is every stack's resource list (GET
	// .../stacks/{name}/{id}/resources); as a failure target,
	// Resources+"/"+<stack id> is one stack's.
	Resources = "resources"
	// VolumeSummaries is Cinder's non-detail volume list (GET .../volumes:
	// id, name and links of each volume), served from Volumes.
	VolumeSummaries = "volume_summaries"
	// VolumeVersions is Cinder's version document (GET /v3/).
	VolumeVersions = "volume_versions"
)

// resourcesFile is Heat's resource list sample, served for the fixture
// stacks; added resources are copies of its first item.
const resourcesFile = "heat/resources-list-response.json"

// A listing as one service serves it.
type listing struct {
	file   string // fixture under testdata/
	key    string // top-level key of the item list
	idKey  string // item field that is the id and the marker
	links  bool   // whether pages carry <key>_links "next" links
	paged  bool   // whether limit/marker apply at all
	filter string // query parameter filtering on the item field of that name
	// updated is the item field the service sets to its clock when the
	// item changes ("" for none), in updatedFormat.
	updated, updatedFormat string
}

// Time formats of the services' updated fields.
const (
	novaTime    = "2006-01-02T15:04:05Z"
	neutronTime = "2006-01-02T15:04:05Z"
	cinderTime  = "2006-01-02T15:04:05.000000"
)

var listings = map[string]listing{
	Servers:     {file: "nova/servers/v2.100/servers-details-resp.json", key: "servers", idKey: "id", links: true, paged: true, updated: "updated", updatedFormat: novaTime},
	Hypervisors: {file: "nova/os-hypervisors/v2.88/hypervisors-detail-resp.json", key: "hypervisors", idKey: "id", links: true, paged: true},
	Services:    {file: "nova/os-services/v2.53/services-list-get-resp.json", key: "services", idKey: "id", filter: "binary"},
	Zones:       {file: "nova/os-availability-zone/availability-zone-detail-resp.json", key: "availabilityZoneInfo", idKey: "zoneName"},
	Networks:    {file: "neutron/networks-list-response.json", key: "networks", idKey: "id", links: true, paged: true, updated: "updated_at", updatedFormat: neutronTime},
	Ports:       {file: "neutron/ports-list-response.json", key: "ports", idKey: "id", links: true, paged: true, updated: "updated_at", updatedFormat: neutronTime},
	Volumes:     {file: "cinder/volumes/v3.69/volumes-list-detailed-response.json", key: "volumes", idKey: "id", links: true, paged: true, updated: "updated_at", updatedFormat: cinderTime},
	// Heat's stack list has no links: clients page with marker until a
	// page comes back empty.
	Stacks: {file: "heat/stacks-list-response.json", key: "stacks", idKey: "id", paged: true},
}

type item struct {
	id  string
	raw json.RawMessage
	obj map[string]any // decoded, for filters and mutations
	// changed is the service's updated_at of the item's row, to the second
	// (MySQL's DATETIME), which the change filters compare with.
	changed time.Time
	// created is the row's created_at (Cinder's created_at filter).
	created time.Time
	// deleted marks a Nova server row deleted or soft-deleted: only a
	// changes-since listing shows it, with its DELETED or SOFT_DELETED
	// status, until the rows are archived.
	deleted bool
}

type collection struct {
	items []item
}

func (s *Server) load() error {
	s.colls = map[string]*collection{}
	for name, l := range listings {
		b, err := fixtures.ReadFile("testdata/" + l.file)
		if err != nil {
			return fmt.Errorf("openstacktest: %w", err)
		}
		var body map[string][]map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			return fmt.Errorf("openstacktest: %s: %w", l.file, err)
		}
		c := &collection{}
		for _, obj := range body[l.key] {
			it, err := newItem(obj, l.idKey)
			if err != nil {
				return err
			}
			// The sample's own updated time (null: never updated, which no
			// updated_at filter lets through).
			it.changed = sampleTime(obj[l.updated])
			it.created = sampleTime(obj["created_at"])
			c.items = append(c.items, it)
		}
		s.colls[name] = c
	}
	res, err := sampleResources()
	if err != nil {
		return err
	}
	s.resources = map[string][]item{}
	for _, st := range s.colls[Stacks].items {
		s.resources[st.id] = res
	}
	b, err := fixtures.ReadFile("testdata/keystone/auth-password-project-scoped-response.json")
	if err != nil {
		return fmt.Errorf("openstacktest: %w", err)
	}
	return json.Unmarshal(b, &s.keystone)
}

func newItem(obj map[string]any, idKey string) (item, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return item{}, fmt.Errorf("openstacktest: encode item: %w", err)
	}
	id, _ := obj[idKey].(string)
	return item{id: id, raw: raw, obj: obj}, nil
}

// sampleTime reads a sample's time field (zero when null or malformed).
func sampleTime(v any) time.Time {
	str, _ := v.(string)
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, str); err == nil {
			return t
		}
	}
	return time.Time{}
}

// IDs returns the ids of a collection's listed items in listing order
// (deleted servers left out).
func (s *Server) IDs(coll string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[coll]
	if c == nil {
		return nil
	}
	ids := []string{}
	for _, it := range c.items {
		if !it.deleted {
			ids = append(ids, it.id)
		}
	}
	return ids
}

// Update changes one item with f, as an API call does: the row's updated_at
// (and the item's updated field) move to the server's clock. It reports
// whether the item exists.
func (s *Server) Update(coll, id string, f func(obj map[string]any)) bool {
	return s.update(coll, id, true, f)
}

// UpdateQuiet changes one item with f without moving its updated_at, as a
// tag-only change in Nova does (tags live in a table of their own): change
// filters do not see it.
func (s *Server) UpdateQuiet(coll, id string, f func(obj map[string]any)) bool {
	return s.update(coll, id, false, f)
}

func (s *Server) update(coll, id string, stamp bool, f func(obj map[string]any)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[coll]
	if c == nil {
		return false
	}
	l := listings[coll]
	for i, it := range c.items {
		if it.id == id && !it.deleted {
			// A copy: a page being written holds the old object.
			obj := deepCopy(it.obj).(map[string]any)
			f(obj)
			changed := it.changed
			if stamp {
				changed = s.stamp()
				if l.updated != "" {
					obj[l.updated] = changed.Format(l.updatedFormat)
				}
			}
			// Neutron bumps a resource's revision_number at every change,
			// tags included.
			if n, ok := obj["revision_number"].(float64); ok {
				obj["revision_number"] = n + 1
			}
			n, err := newItem(obj, l.idKey)
			if err != nil {
				return false
			}
			n.changed, n.created = changed, it.created
			c.items[i] = n
			return true
		}
	}
	return false
}

// SetServerStatus sets a server's status and reports whether it exists.
func (s *Server) SetServerStatus(id, status string) bool {
	return s.Update(Servers, id, func(o map[string]any) { o["status"] = status })
}

// Remove deletes an item from a collection and reports whether it existed.
// Neutron and Cinder forget it at once (a hard delete, as far as their APIs
// tell); a Nova server's row stays, status DELETED, for changes-since
// listings until Archive.
func (s *Server) Remove(coll, id string) bool {
	if coll == Servers {
		return s.novaDelete(id, "DELETED", "deleted")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[coll]
	if c == nil {
		return false
	}
	for i, it := range c.items {
		if it.id == id {
			c.items = append(c.items[:i], c.items[i+1:]...)
			return true
		}
	}
	return false
}

// SoftDelete soft-deletes a server (Nova with reclaim_instance_interval):
// gone from listings, SOFT_DELETED in changes-since listings.
func (s *Server) SoftDelete(id string) bool {
	return s.novaDelete(id, "SOFT_DELETED", "soft-delete")
}

func (s *Server) novaDelete(id, status, vmState string) bool {
	ok := s.Update(Servers, id, func(o map[string]any) {
		o["status"], o["OS-EXT-STS:vm_state"] = status, vmState
	})
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.colls[Servers].items {
		if it := &s.colls[Servers].items[i]; it.id == id {
			it.deleted = true
		}
	}
	return true
}

// Archive drops the rows of deleted servers, as nova-manage db
// archive_deleted_rows does: changes-since no longer shows them.
func (s *Server) Archive() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[Servers]
	kept := c.items[:0:0]
	for _, it := range c.items {
		if !it.deleted {
			kept = append(kept, it)
		}
	}
	n := len(c.items) - len(kept)
	c.items = kept
	return n
}

// AddServers appends n copies of the first fixture server, each with a new
// random UUID and the name "server-<n>", and returns their ids.
func (s *Server) AddServers(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[Servers]
	var tmpl map[string]any
	b, _ := fixtures.ReadFile("testdata/" + listings[Servers].file)
	var body map[string][]map[string]any
	_ = json.Unmarshal(b, &body)
	tmpl = body["servers"][0]
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		obj := make(map[string]any, len(tmpl))
		for k, v := range tmpl {
			obj[k] = v
		}
		obj["id"] = newUUID()
		obj["name"] = "server-" + strconv.Itoa(len(c.items))
		now := s.stamp()
		obj["updated"] = now.Format(novaTime)
		it, _ := newItem(obj, "id")
		it.changed = now
		c.items = append(c.items, it)
		ids = append(ids, it.id)
	}
	return ids
}

// Add appends n copies of the first fixture item of a collection
// (networks, ports, volumes, ...), each with a new random UUID, and returns
// their ids.
func (s *Server) Add(coll string, n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, l := s.colls[coll], listings[coll]
	if c == nil {
		return nil
	}
	b, _ := fixtures.ReadFile("testdata/" + l.file)
	var body map[string][]map[string]any
	_ = json.Unmarshal(b, &body)
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		obj := deepCopy(body[l.key][0]).(map[string]any)
		obj[l.idKey] = newUUID()
		now := s.stamp()
		var changed time.Time
		switch {
		case coll == Volumes:
			// Cinder's rows are inserted with a null updated_at: the
			// first update sets it.
			obj["created_at"], obj["updated_at"] = now.Format(cinderTime), nil
		case l.updated != "":
			obj[l.updated] = now.Format(l.updatedFormat)
			changed = now
		}
		it, _ := newItem(obj, l.idKey)
		it.changed, it.created = changed, now
		c.items = append(c.items, it)
		ids = append(ids, it.id)
	}
	return ids
}

// AddStacks appends n copies of the first fixture stack, each with a new
// random UUID and the name "stack-<n>" and no resources, and returns their
// ids.
func (s *Server) AddStacks(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[Stacks]
	b, _ := fixtures.ReadFile("testdata/" + listings[Stacks].file)
	var body map[string][]map[string]any
	_ = json.Unmarshal(b, &body)
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		obj := deepCopy(body["stacks"][0]).(map[string]any)
		obj["id"] = newUUID()
		obj["stack_name"] = "stack-" + strconv.Itoa(len(c.items))
		it, _ := newItem(obj, "id")
		it.changed = s.stamp()
		c.items = append(c.items, it)
		s.resources[it.id] = nil
		ids = append(ids, it.id)
	}
	return ids
}

// sampleResources reads the items of Heat's resource list sample.
func sampleResources() ([]item, error) {
	b, err := fixtures.ReadFile("testdata/" + resourcesFile)
	if err != nil {
		return nil, fmt.Errorf("openstacktest: %w", err)
	}
	var body map[string][]map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("openstacktest: %s: %w", resourcesFile, err)
	}
	var out []item
	for _, obj := range body["resources"] {
		it, err := newItem(obj, "physical_resource_id")
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// AddStackResource appends to a stack's resource list a copy of the first
// resource of Heat's sample, changed by f (a test sets resource_type,
// physical_resource_id, ...), and reports whether the stack exists.
func (s *Server) AddStackResource(stackID string, f func(obj map[string]any)) bool {
	res, err := sampleResources()
	if err != nil || len(res) == 0 {
		return false
	}
	obj := res[0].obj
	if f != nil {
		f(obj)
	}
	it, err := newItem(obj, "physical_resource_id")
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.resources[stackID]
	if !ok {
		return false
	}
	// A new slice: a page being written holds the old one.
	s.resources[stackID] = append(append([]item(nil), cur...), it)
	return true
}

// UpdateStackResources changes every resource of a stack with f and reports
// whether the stack exists.
func (s *Server) UpdateStackResources(stackID string, f func(obj map[string]any)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.resources[stackID]
	if !ok {
		return false
	}
	next := make([]item, 0, len(cur))
	for _, it := range cur {
		obj := deepCopy(it.obj).(map[string]any)
		f(obj)
		n, err := newItem(obj, "physical_resource_id")
		if err != nil {
			return false
		}
		next = append(next, n)
	}
	s.resources[stackID] = next
	return true
}

// serveResources is Heat's GET /v1/{project}/stacks/{name}/{id}/resources:
// the stack's resources in one unpaged list, or Heat's 404 when no listed
// stack has that name and id. Query parameters (nested_depth, ...) are
// accepted and ignored: the fake stacks have no nested stacks.
func (s *Server) serveResources(w http.ResponseWriter, name, id string) {
	s.mu.Lock()
	known := false
	for _, st := range s.colls[Stacks].items {
		if st.id == id && st.obj["stack_name"] == name {
			known = true
			break
		}
	}
	items := s.resources[id]
	s.mu.Unlock()
	if !known {
		// Heat's HeatAPIException body for EntityNotFound.
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404, "title": "Not Found", "explanation": "The resource could not be found.",
			"error": map[string]any{"type": "EntityNotFound", "message": "The Stack (" + name + ") could not be found.", "traceback": nil}})
		return
	}
	bw := writeItems(w, "resources", items)
	bw.WriteByte('}')
	_ = bw.Flush()
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// listQuery is a listing request as the service understands it.
type listQuery struct {
	q url.Values
	// since is the change filter's time (zero: none): items whose row
	// changed at or after it.
	since time.Time
	// createdSince is Cinder's created_at=gte: filter (zero: none).
	createdSince time.Time
	// deleted: Nova's changes-since also lists deleted rows.
	deleted bool
	// fields projects each item to these fields (Neutron's fields=,
	// Cinder's summary list).
	fields []string
	// ids keeps the items of these ids (Neutron's id=A&id=B).
	ids []string
}

// apiError is a refusal in the service's own error format.
type apiError struct {
	code int
	body map[string]any
}

// parseQuery reads the filters of a listing request as the service does,
// refusing what it refuses.
func (s *Server) parseQuery(coll string, r *http.Request) (listQuery, *apiError) {
	q := r.URL.Query()
	lq := listQuery{q: q}
	switch coll {
	case Servers:
		if v := q.Get("changes-since"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return lq, &apiError{http.StatusBadRequest, map[string]any{"badRequest": map[string]any{"code": 400,
					"message": fmt.Sprintf("Invalid input for query parameters changes-since. Value: %s. '%s' is not a 'date-time'", v, v)}}}
			}
			lq.since, lq.deleted = t, true
		}
	case Networks, Ports:
		lq.fields, lq.ids = q["fields"], q["id"]
		if v, ok := q["changed_since"]; ok {
			s.mu.Lock()
			accept := s.opts.NeutronChangedSince
			s.mu.Unlock()
			if !accept {
				// neutron's filter_validation = true (the default): the
				// timestamp extension's filter is not a known attribute.
				return lq, &apiError{http.StatusBadRequest, map[string]any{"NeutronError": map[string]any{"type": "HTTPBadRequest",
					"message": "['changed_since'] is invalid attribute for filtering", "detail": ""}}}
			}
			t, err := time.Parse(time.RFC3339, v[0])
			if err != nil {
				return lq, &apiError{http.StatusBadRequest, map[string]any{"NeutronError": map[string]any{"type": "InvalidInput",
					"message": "Invalid input for operation: The input changed_since must be in the following format: YYYY-MM-DDTHH:MM:SSZ.", "detail": ""}}}
			}
			lq.since = t
		}
	case Volumes, VolumeSummaries:
		if coll == VolumeSummaries {
			lq.fields = []string{"id", "name", "links"}
		}
		// Generic filters need 3.31; below, cinder ignores them.
		s.mu.Lock()
		ignore := s.opts.CinderIgnoresFilters
		s.mu.Unlock()
		for _, f := range []struct {
			name string
			to   *time.Time
		}{{"updated_at", &lq.since}, {"created_at", &lq.createdSince}} {
			if v := q.Get(f.name); v != "" && minor(volumeMicroversion(r), "3") >= 31 && !ignore {
				op, ts, _ := strings.Cut(v, ":")
				t, err := parseCinderTime(ts)
				if op != "gte" || err != nil {
					return lq, &apiError{http.StatusBadRequest, map[string]any{"badRequest": map[string]any{"code": 400,
						"message": "Invalid filter " + f.name + "=" + v}}}
				}
				*f.to = t
			}
		}
	}
	return lq, nil
}

// parseCinderTime reads an ISO 8601 time with or without a zone (UTC).
func parseCinderTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Parse("2006-01-02T15:04:05", v)
}

// window returns the items of the page a request asks for, the 1-based page
// number and the page size in force.
func (s *Server) window(coll string, lq listQuery) (items []item, page, size int, err error) {
	data := coll
	if coll == VolumeSummaries {
		data = Volumes
	}
	l := listings[data]
	q := lq.q
	var all []item
	for _, it := range s.colls[data].items {
		if it.deleted && !lq.deleted {
			continue
		}
		// A null time (zero) never passes a filter, as NULL >= T in SQL.
		if !lq.since.IsZero() && (it.changed.IsZero() || it.changed.Before(lq.since)) {
			continue
		}
		if !lq.createdSince.IsZero() && (it.created.IsZero() || it.created.Before(lq.createdSince)) {
			continue
		}
		if len(lq.ids) > 0 && !slices.Contains(lq.ids, it.id) {
			continue
		}
		if l.filter != "" {
			if want := q.Get(l.filter); want != "" {
				if v, _ := it.obj[l.filter].(string); v != want {
					continue
				}
			}
		}
		all = append(all, it)
	}
	if !l.paged {
		return all, 1, len(all), nil
	}
	size = s.opts.PageSize
	if v, err := strconv.Atoi(q.Get("limit")); err == nil && v > 0 && v < size {
		size = v
	}
	start := 0
	if m := q.Get("marker"); m != "" {
		start = -1
		for i, it := range all {
			if it.id == m {
				start = i + 1
				break
			}
		}
		if start < 0 {
			return nil, 0, 0, fmt.Errorf("marker [%s] not found", m)
		}
	}
	end := min(start+size, len(all))
	return all[start:end], start/size + 1, size, nil
}

// pageOf is the page number a request asks for (1 when unknown).
func (s *Server) pageOf(coll string, r *http.Request) int {
	if _, ok := listings[coll]; !ok && coll != VolumeSummaries {
		return 1
	}
	lq, aerr := s.parseQuery(coll, r)
	if aerr != nil {
		return 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, page, _, err := s.window(coll, lq)
	if err != nil {
		return 1
	}
	return page
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, coll string) {
	key := coll
	if coll == VolumeSummaries {
		key = Volumes
	}
	l := listings[key]
	lq, aerr := s.parseQuery(coll, r)
	if aerr != nil {
		writeJSON(w, aerr.code, aerr.body)
		return
	}
	q := lq.q
	s.mu.Lock()
	items, _, size, err := s.window(coll, lq)
	// Items are immutable once made (Update replaces them), so the page can
	// be written after the lock is released.
	items = append([]item(nil), items...)
	s.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"badRequest": map[string]any{"code": 400, "message": err.Error()}})
		return
	}
	if len(lq.fields) > 0 {
		for i, it := range items {
			o := map[string]any{}
			for _, f := range lq.fields {
				if v, ok := it.obj[f]; ok {
					o[f] = v
				}
			}
			items[i].raw, _ = json.Marshal(o)
		}
	}
	bw := writeItems(w, l.key, items)
	// Like nova, neutron and cinder: a full page has a next link, so a
	// listing whose size is a multiple of the page ends on an empty page.
	if l.links && len(items) > 0 && len(items) == size {
		q.Set("limit", strconv.Itoa(size))
		q.Set("marker", items[len(items)-1].id)
		next := s.URL + r.URL.Path + "?" + q.Encode()
		link, _ := json.Marshal([]map[string]string{{"href": next, "rel": "next"}})
		bw.WriteString(`, "` + l.key + `_links": `)
		bw.Write(link)
	}
	bw.WriteByte('}')
	_ = bw.Flush()
}

// writeItems starts a JSON answer {"<key>": [items...] from the items'
// stored bytes; the caller adds any other member and the closing brace.
func writeItems(w http.ResponseWriter, key string, items []item) *bufio.Writer {
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"` + key + `": [`)
	for i, it := range items {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(it.raw)
	}
	bw.WriteByte(']')
	return bw
}
