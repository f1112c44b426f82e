package openstacktest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Mode is how an injected failure answers.
type Mode string

// Failure modes.
const (
	Fail500      Mode = "500"  // 500 Internal Server Error
	Hang         Mode = "hang" // no answer until the client gives up
	Unauthorized Mode = "401"  // 401, whatever the token
	NotFound     Mode = "404"  // 404 Not Found
	// Restart answers a page as if no marker had been given: the listing
	// starts over and its links go round, as Nova's do when a booting
	// server used as marker moves from the build requests into a cell.
	Restart Mode = "restart"
)

// Failure makes requests to a target fail.
type Failure struct {
	Mode Mode `json:"mode"`
	// Page limits the failure to that 1-based page of a listing; 0 is every
	// page.
	Page int `json:"page,omitempty"`
	// Times is how many matching requests fail; 0 is until cleared.
	Times int `json:"times,omitempty"`
}

// Fail makes requests to target fail. target is a collection (Servers,
// Networks, ..., Keystone, "versions" for the Nova version document,
// Resources for every stack's resource list or Resources+"/"+<stack id> for
// one stack's) or a whole service by its catalog type ("compute", "network",
// "volumev3", "orchestration").
func (s *Server) Fail(target string, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[target] = append(s.failures[target], &f)
}

// ClearFailures removes every injected failure.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = map[string][]*Failure{}
}

// inject answers the request with a matching failure and reports whether it
// did.
func (s *Server) inject(w http.ResponseWriter, r *http.Request, targets []string, page int) bool {
	s.mu.Lock()
	var hit *Failure
	for _, t := range targets {
		for _, f := range s.failures[t] {
			if f.Times < 0 || (f.Page != 0 && f.Page != page) {
				continue
			}
			hit = f
			if f.Times > 0 {
				if f.Times--; f.Times == 0 {
					f.Times = -1 // used up
				}
			}
			break
		}
		if hit != nil {
			break
		}
	}
	s.mu.Unlock()
	if hit == nil {
		return false
	}
	switch hit.Mode {
	case Restart:
		q := r.URL.Query()
		q.Del("marker")
		r.URL.RawQuery = q.Encode()
		return false
	case Hang:
		s.hang(r.Context())
		return true
	case Unauthorized:
		writeJSON(w, http.StatusUnauthorized, unauthorized)
	case NotFound:
		writeJSON(w, http.StatusNotFound, map[string]any{"itemNotFound": map[string]any{"code": 404, "message": "injected"}})
	default:
		writeJSON(w, http.StatusInternalServerError, map[string]any{"computeFault": map[string]any{"code": 500, "message": "injected failure"}})
	}
	return true
}

// serveAuth is Keystone's POST /v3/auth/tokens: the token id in the
// X-Subject-Token header, the sample body with its catalog pointed here.
func (s *Server) serveAuth(w http.ResponseWriter, r *http.Request) {
	if s.inject(w, r, []string{Keystone}, 1) {
		return
	}
	var req struct {
		Auth struct {
			Identity struct {
				Password struct {
					User struct {
						Password string `json:"password"`
					} `json:"user"`
				} `json:"password"`
			} `json:"identity"`
		} `json:"auth"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "message": "malformed request"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Password != "" && req.Auth.Identity.Password.User.Password != s.opts.Password {
		writeJSON(w, http.StatusUnauthorized, unauthorized)
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := "gAAAAAB" + hex.EncodeToString(b[:])
	now := time.Now().UTC()
	s.tokens[tok] = now.Add(s.opts.TokenTTL)
	s.nTokens++
	s.issued = append(s.issued, tok)
	s.requests[Keystone]++

	body := deepCopy(s.keystone).(map[string]any)
	t := body["token"].(map[string]any)
	t["issued_at"] = now.Format("2006-01-02T15:04:05.000000Z")
	t["expires_at"] = now.Add(s.opts.TokenTTL).Format("2006-01-02T15:04:05.000000Z")
	catalog := t["catalog"].([]any)
	for _, e := range catalog {
		svc := e.(map[string]any)
		for _, ep := range svc["endpoints"].([]any) {
			ep := ep.(map[string]any)
			ep["url"] = s.rewrite(svc["type"].(string), ep["url"].(string))
		}
	}
	if !s.opts.NoVolumeV3 {
		catalog = append(catalog, s.volumeV3())
	}
	t["catalog"] = catalog
	w.Header().Set("X-Subject-Token", tok)
	writeJSON(w, http.StatusCreated, body)
}

// rewrite points a sample endpoint at this server under /<service type>.
func (s *Server) rewrite(typ, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return s.URL + "/" + typ + "/"
	}
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return s.URL + "/" + typ + p
}

// volumeV3 is our own catalog entry (the keystone sample has none), shaped
// like the sample's "volumev2" entry.
func (s *Server) volumeV3() map[string]any {
	var eps []any
	for _, iface := range []string{"public", "internal", "admin"} {
		eps = append(eps, map[string]any{
			"id": "volumev3-" + iface, "interface": iface, "region": "RegionOne", "region_id": "RegionOne",
			"url": s.URL + "/volumev3/v3/" + ProjectID,
		})
	}
	return map[string]any{"endpoints": eps, "id": "volumev3", "type": "volumev3", "name": "cinderv3"}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

// ControlRequest is the body of POST /_control. Op is one of
// set_status {id, status}, remove {collection, id}, add_servers {n},
// add_stacks {n}, add_resource {id (the stack's), resource_type,
// physical_resource_id, name}, fail {target, mode, page, times},
// clear_failures, expire_tokens, max_microversion {version}, page_size {n},
// ids {collection}, add {collection, n}, soft_delete {id}, archive,
// advance_clock {n seconds}, neutron_changed_since {n: 1 accepts, 0
// refuses}, cinder_max_microversion {version}.
type ControlRequest struct {
	Op         string `json:"op"`
	Collection string `json:"collection,omitempty"`
	ID         string `json:"id,omitempty"`
	Status     string `json:"status,omitempty"`
	N          int    `json:"n,omitempty"`
	Target     string `json:"target,omitempty"`
	Version    string `json:"version,omitempty"`
	// add_resource: the copy of Heat's sample resource gets these
	// resource_type and physical_resource_id, and name as its
	// resource_name and logical_resource_id.
	ResourceType string `json:"resource_type,omitempty"`
	PhysicalID   string `json:"physical_resource_id,omitempty"`
	Name         string `json:"name,omitempty"`
	Failure
}

// serveControl lets a process outside Go (a Python test) drive the server.
// It answers {"ok": true, ...} or 400 with {"error": "..."}.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "auth_url": s.AuthURL(), "tokens_issued": s.AuthCount()})
		return
	}
	var c ControlRequest
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	res := map[string]any{"ok": true}
	ok := true
	switch c.Op {
	case "set_status":
		ok = s.SetServerStatus(c.ID, c.Status)
	case "remove":
		ok = s.Remove(c.Collection, c.ID)
	case "add_servers":
		res["ids"] = s.AddServers(c.N)
	case "add_stacks":
		res["ids"] = s.AddStacks(c.N)
	case "add_resource":
		ok = s.AddStackResource(c.ID, func(o map[string]any) {
			o["resource_type"] = c.ResourceType
			o["physical_resource_id"] = c.PhysicalID
			if c.Name != "" {
				o["resource_name"], o["logical_resource_id"] = c.Name, c.Name
			}
		})
	case "fail":
		s.Fail(c.Target, c.Failure)
	case "clear_failures":
		s.ClearFailures()
	case "expire_tokens":
		s.ExpireTokens()
	case "max_microversion":
		s.SetMaxMicroversion(c.Version)
	case "page_size":
		s.SetPageSize(c.N)
	case "ids":
		res["ids"] = s.IDs(c.Collection)
	case "add":
		res["ids"] = s.Add(c.Collection, c.N)
	case "soft_delete":
		ok = s.SoftDelete(c.ID)
	case "archive":
		res["archived"] = s.Archive()
	case "advance_clock":
		s.Advance(time.Duration(c.N) * time.Second)
	case "neutron_changed_since":
		s.SetNeutronChangedSince(c.N != 0)
	case "cinder_max_microversion":
		s.SetCinderMaxMicroversion(c.Version)
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unknown op " + c.Op})
		return
	}
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "no such item"})
		return
	}
	writeJSON(w, http.StatusOK, res)
}
