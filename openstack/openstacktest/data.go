package openstacktest

import (
	"bufio"
	"crypto/rand"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
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
}

var listings = map[string]listing{
	Servers:     {file: "nova/servers/v2.100/servers-details-resp.json", key: "servers", idKey: "id", links: true, paged: true},
	Hypervisors: {file: "nova/os-hypervisors/v2.88/hypervisors-detail-resp.json", key: "hypervisors", idKey: "id", links: true, paged: true},
	Services:    {file: "nova/os-services/v2.53/services-list-get-resp.json", key: "services", idKey: "id", filter: "binary"},
	Zones:       {file: "nova/os-availability-zone/availability-zone-detail-resp.json", key: "availabilityZoneInfo", idKey: "zoneName"},
	Networks:    {file: "neutron/networks-list-response.json", key: "networks", idKey: "id", links: true, paged: true},
	Ports:       {file: "neutron/ports-list-response.json", key: "ports", idKey: "id", links: true, paged: true},
	Volumes:     {file: "cinder/volumes/v3.69/volumes-list-detailed-response.json", key: "volumes", idKey: "id", links: true, paged: true},
	// Heat's stack list has no links: clients page with marker until a
	// page comes back empty.
	Stacks: {file: "heat/stacks-list-response.json", key: "stacks", idKey: "id", paged: true},
}

type item struct {
	id  string
	raw json.RawMessage
	obj map[string]any // decoded, for filters and mutations
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

// IDs returns the ids of a collection's items in listing order.
func (s *Server) IDs(coll string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[coll]
	if c == nil {
		return nil
	}
	ids := []string{}
	for _, it := range c.items {
		ids = append(ids, it.id)
	}
	return ids
}

// Update changes one item with f and reports whether the item exists.
func (s *Server) Update(coll, id string, f func(obj map[string]any)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.colls[coll]
	if c == nil {
		return false
	}
	for i, it := range c.items {
		if it.id == id {
			f(it.obj)
			n, err := newItem(it.obj, listings[coll].idKey)
			if err != nil {
				return false
			}
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
func (s *Server) Remove(coll, id string) bool {
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
		it, _ := newItem(obj, "id")
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

// window returns the items of the page a request asks for, the 1-based page
// number and the page size in force.
func (s *Server) window(coll string, q url.Values) (items []item, page, size int, err error) {
	l := listings[coll]
	all := s.colls[coll].items
	if l.filter != "" {
		if want := q.Get(l.filter); want != "" {
			var kept []item
			for _, it := range all {
				if v, _ := it.obj[l.filter].(string); v == want {
					kept = append(kept, it)
				}
			}
			all = kept
		}
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
	if _, ok := listings[coll]; !ok {
		return 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, page, _, err := s.window(coll, r.URL.Query())
	if err != nil {
		return 1
	}
	return page
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, coll string) {
	l := listings[coll]
	q := r.URL.Query()
	s.mu.Lock()
	items, _, size, err := s.window(coll, q)
	// Items are immutable once made (Update replaces them), so the page can
	// be written after the lock is released.
	items = append([]item(nil), items...)
	s.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"badRequest": map[string]any{"code": 400, "message": err.Error()}})
		return
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
