// Package openstacktest serves the upstream OpenStack API samples under
// testdata/ from a local HTTP server that behaves like the real services where
// a client can tell: Keystone issues tokens in X-Subject-Token with the sample
// catalog pointed at this server, and Nova, Neutron, Cinder and Heat page
// their listings the way the real APIs do (limit/marker, *_links "next"
// links; Heat without links), and Heat serves each stack's resource list.
// Tests change the data (status of a server, removal, N more servers or
// stacks, resources of a stack) and make endpoints fail (500, hang, 401, 404)
// through methods or through the JSON control endpoint POST /_control, which
// cmd/fakecloud exposes to tests written in other languages.
//
// Our own test data, not upstream: the catalog gains a "volumev3" entry (the
// keystone sample has none; Options.NoVolumeV3 leaves it out), tokens expire
// TokenTTL after issue instead of the sample's 2015 date, and the Nova version
// document is built from the shape of nova's
// doc/api_samples/versions/v21-version-get-resp.json.
package openstacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ProjectID is the project of the keystone sample's scoped token; it is the
// project id in every catalog URL.
const ProjectID = "a6944d763bf64ee6a275f1263fae0352"

// Options configures a Server. The zero value is usable.
type Options struct {
	// Addr is the address to listen on; default 127.0.0.1:0.
	Addr string
	// PageSize is the largest page a listing returns (the service's
	// max_limit); default 1, so every fixture item is a page of its own.
	PageSize int
	// Password, when set, is the only password Keystone accepts.
	Password string
	// NoVolumeV3 leaves the volumev3 entry out of the catalog, as in the
	// upstream sample.
	NoVolumeV3 bool
	// MaxMicroversion is the highest Nova microversion served; default
	// "2.100". Higher requests get nova's 406.
	MaxMicroversion string
	// TokenTTL is how long an issued token is valid; default one hour.
	TokenTTL time.Duration
	// NeutronChangedSince makes Neutron accept the changed_since filter,
	// as a Neutron with [DEFAULT] filter_validation = false does. By
	// default it refuses it with 400, as Neutron's default does.
	NeutronChangedSince bool
	// CinderMaxMicroversion is the highest Cinder microversion served;
	// default "3.70". Higher requests get 406; below 3.31 the updated_at
	// filter is ignored, as Cinder does.
	CinderMaxMicroversion string
	// CinderIgnoresFilters makes Cinder ignore updated_at, as a Cinder
	// without its resource_query_filters_file does.
	CinderIgnoresFilters bool
	// ClockOffset is how far the cloud's clock (Date headers, updated_at of
	// changes) is ahead of the local one (negative: behind).
	ClockOffset time.Duration
}

// Server is a running fake cloud. All methods are safe for concurrent use.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:40123.
	URL string

	ts      *httptest.Server
	closing chan struct{}
	once    sync.Once

	mu    sync.Mutex
	opts  Options
	colls map[string]*collection
	// resources are the resource lists by stack id; a slice is replaced,
	// never changed in place.
	resources map[string][]item
	tokens    map[string]time.Time // valid token -> expiry
	nTokens   int
	issued    []string
	failures  map[string][]*Failure
	requests  map[string]int
	inflight  map[string]int
	peak      map[string]int
	latency   map[string]time.Duration
	lastMV    string
	mvOf      map[string]string // the last Nova microversion served per target
	keystone  map[string]any    // the sample token body
	bytes     map[string]int64
	// clock is the offset of the cloud's clock from the local one, in
	// nanoseconds; atomic, as items are stamped with the lock held.
	clock atomic.Int64
}

// New starts a server with the fixture data loaded.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1
	}
	if opts.MaxMicroversion == "" {
		opts.MaxMicroversion = "2.100"
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.CinderMaxMicroversion == "" {
		opts.CinderMaxMicroversion = "3.70"
	}
	s := &Server{
		opts:     opts,
		closing:  make(chan struct{}),
		tokens:   map[string]time.Time{},
		failures: map[string][]*Failure{},
		requests: map[string]int{},
		inflight: map[string]int{},
		peak:     map[string]int{},
		latency:  map[string]time.Duration{},
		bytes:    map[string]int64{},
	}
	s.clock.Store(int64(opts.ClockOffset))
	if err := s.load(); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("openstacktest: listen: %w", err)
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.ts.Listener.Close()
	s.ts.Listener = l
	s.ts.Start()
	s.URL = s.ts.URL
	return s, nil
}

// Close stops the server, releasing requests that hang.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closing) })
	s.ts.CloseClientConnections()
	s.ts.Close()
}

// AuthURL is the Keystone URL to put in clouds.yaml (auth_url).
func (s *Server) AuthURL() string { return s.URL + "/v3" }

// CloudsYAML returns a clouds.yaml document with one cloud, name, that
// authenticates against this server with password.
func (s *Server) CloudsYAML(name, password string) string {
	return fmt.Sprintf(`clouds:
  %s:
    auth:
      auth_url: %s
      username: admin
      password: %q
      project_id: %s
      user_domain_name: Default
    region_name: RegionOne
    interface: public
`, name, s.AuthURL(), password, ProjectID)
}

// ExpireTokens invalidates every token issued so far: the next request with
// one of them gets 401, as after a real token expiry.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]time.Time{}
}

// AuthCount is the number of tokens issued so far.
func (s *Server) AuthCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nTokens
}

// IssuedTokens returns every token issued so far, for tests that check no
// token leaks into logs.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// Requests is the number of requests that reached target (a collection
// name such as Servers, or "versions" for the Nova version document).
func (s *Server) Requests(target string) int { return ofTarget(s, &s.requests, target) }

// BytesServed is the number of response body bytes sent for target (as for
// Requests), errors included.
func (s *Server) BytesServed(target string) int64 { return ofTarget(s, &s.bytes, target) }

// Now is the cloud's clock.
func (s *Server) Now() time.Time { return time.Now().Add(time.Duration(s.clock.Load())).UTC() }

// Advance moves the cloud's clock forward by d, as time passing between
// polls would.
func (s *Server) Advance(d time.Duration) { s.clock.Add(int64(d)) }

// stamp is the cloud's clock as a database row keeps it, to the second.
func (s *Server) stamp() time.Time { return s.Now().Truncate(time.Second) }

// SetNeutronChangedSince makes Neutron accept (true) or refuse (false, the
// default) the changed_since filter.
func (s *Server) SetNeutronChangedSince(accept bool) {
	s.setOpts(func(o *Options) { o.NeutronChangedSince = accept })
}

// SetCinderMaxMicroversion changes the highest Cinder microversion served.
func (s *Server) SetCinderMaxMicroversion(v string) {
	s.setOpts(func(o *Options) { o.CinderMaxMicroversion = v })
}

// PeakRequests is the largest number of requests to target (as for
// Requests) that were in progress at the same time.
func (s *Server) PeakRequests(target string) int { return ofTarget(s, &s.peak, target) }

// SetLatency makes every request to target (as for Requests) take d more
// before it is answered; 0 removes the delay.
func (s *Server) SetLatency(target string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency[target] = d
}

// LastMicroversion is the Nova microversion of the last compute request that
// was served, "" before any.
func (s *Server) LastMicroversion() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastMV
}

// MicroversionOf is the Nova microversion of the last request to target
// (as for Requests) that was served, "" before any.
func (s *Server) MicroversionOf(target string) string { return ofTarget(s, &s.mvOf, target) }

// SetMaxMicroversion changes the highest Nova microversion served.
func (s *Server) SetMaxMicroversion(v string) {
	s.setOpts(func(o *Options) { o.MaxMicroversion = v })
}

// SetPageSize changes the largest page size.
func (s *Server) SetPageSize(n int) {
	if n > 0 {
		s.setOpts(func(o *Options) { o.PageSize = n })
	}
}

// setOpts changes the options under the lock the handlers read them with.
func (s *Server) setOpts(f func(o *Options)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.opts)
}

// ofTarget reads a per-target figure under the lock the handlers count
// with.
func ofTarget[V any](s *Server, m *map[string]V, target string) V {
	s.mu.Lock()
	defer s.mu.Unlock()
	return (*m)[target]
}

// countingWriter counts the body bytes of a response.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (s *Server) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	// Every answer carries the cloud's clock, as the services' do.
	rw.Header().Set("Date", s.Now().Format(http.TimeFormat))
	p := r.URL.Path
	switch {
	case p == "/_control":
		s.serveControl(rw, r)
		return
	case p == "/v3/auth/tokens" && r.Method == http.MethodPost:
		s.serveAuth(rw, r)
		return
	}
	service, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	target := route(service, "/"+rest)
	w := &countingWriter{ResponseWriter: rw}
	defer func() {
		s.mu.Lock()
		s.bytes[target] += w.n
		s.mu.Unlock()
	}()
	if target == "" || r.Method != http.MethodGet {
		writeJSON(w, http.StatusNotFound, map[string]any{"itemNotFound": map[string]any{"code": 404, "message": "not found: " + p}})
		return
	}
	if !s.validToken(r.Header.Get("X-Auth-Token")) {
		writeJSON(w, http.StatusUnauthorized, unauthorized)
		return
	}
	s.mu.Lock()
	s.inflight[target]++
	s.peak[target] = max(s.peak[target], s.inflight[target])
	delay := s.latency[target]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight[target]--
		s.mu.Unlock()
	}()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
	targets := []string{target, service}
	stackName, stackID := "", ""
	if target == Resources {
		stackName, stackID = stackOf(rest)
		targets = append([]string{Resources + "/" + stackID}, targets...)
	}
	page := s.pageOf(target, r)
	if s.inject(w, r, targets, page) {
		return
	}
	s.mu.Lock()
	s.requests[target]++
	s.mu.Unlock()
	if service == "compute" && !s.checkMicroversion(w, r, target) {
		return
	}
	if service == "volumev3" && !s.checkVolumeMicroversion(w, r) {
		return
	}
	switch target {
	case "versions":
		s.serveVersion(w)
		return
	case VolumeVersions:
		s.serveVolumeVersion(w)
		return
	case Resources:
		s.serveResources(w, stackName, stackID)
		return
	}
	s.serveList(w, r, target)
}

// route maps a request path below a service prefix to a collection.
func route(service, rest string) string {
	switch service {
	case "compute":
		switch {
		case rest == "/v2.1" || rest == "/v2.1/":
			return "versions"
		case strings.HasSuffix(rest, "/servers/detail"):
			return Servers
		case strings.HasSuffix(rest, "/os-services"):
			return Services
		case strings.HasSuffix(rest, "/os-hypervisors/detail"):
			return Hypervisors
		case strings.HasSuffix(rest, "/os-availability-zone/detail"):
			return Zones
		}
	case "network":
		switch strings.TrimSuffix(rest, "/") {
		case "/v2.0/networks":
			return Networks
		case "/v2.0/ports":
			return Ports
		}
	case "volumev3":
		switch {
		case rest == "/v3" || rest == "/v3/":
			return VolumeVersions
		case strings.HasSuffix(rest, "/volumes/detail"):
			return Volumes
		case strings.HasSuffix(rest, "/volumes"):
			return VolumeSummaries
		}
	case "orchestration":
		rest = strings.TrimSuffix(rest, "/")
		if strings.HasSuffix(rest, "/stacks") {
			return Stacks
		}
		if name, id := stackOf(rest); name != "" && id != "" {
			return Resources
		}
	}
	return ""
}

// stackOf returns the stack name and id of a Heat path
// .../stacks/{name}/{id}/resources, "" when it is not one.
func stackOf(rest string) (name, id string) {
	_, after, ok := strings.Cut(strings.TrimSuffix(rest, "/"), "/stacks/")
	if !ok {
		return "", ""
	}
	parts := strings.Split(after, "/")
	if len(parts) != 3 || parts[2] != "resources" {
		return "", ""
	}
	return parts[0], parts[1]
}

var unauthorized = map[string]any{"error": map[string]any{
	"code": 401, "title": "Unauthorized",
	"message": "The request you have made requires authentication.",
}}

func (s *Server) validToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && time.Now().Before(exp)
}

// checkMicroversion answers 406 as nova does when the requested
// microversion is above the maximum, and records the one served.
func (s *Server) checkMicroversion(w http.ResponseWriter, r *http.Request, target string) bool {
	v := "2.1"
	if h := r.Header.Get("OpenStack-API-Version"); strings.HasPrefix(h, "compute ") {
		v = strings.TrimSpace(strings.TrimPrefix(h, "compute "))
	} else if h := r.Header.Get("X-OpenStack-Nova-API-Version"); h != "" {
		v = h
	}
	s.mu.Lock()
	max := s.opts.MaxMicroversion
	s.mu.Unlock()
	v, ok := supported(w, v, max, "2", 1)
	if !ok {
		return false
	}
	s.mu.Lock()
	s.lastMV = v
	if s.mvOf == nil {
		s.mvOf = map[string]string{}
	}
	s.mvOf[target] = v
	s.mu.Unlock()
	w.Header().Set("OpenStack-API-Version", "compute "+v)
	w.Header().Set("X-OpenStack-Nova-API-Version", v)
	w.Header().Set("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
	return true
}

// volumeMicroversion is the Cinder microversion a request asks for.
func volumeMicroversion(r *http.Request) string {
	if h := r.Header.Get("OpenStack-API-Version"); strings.HasPrefix(h, "volume ") {
		return strings.TrimSpace(strings.TrimPrefix(h, "volume "))
	}
	return "3.0"
}

// checkVolumeMicroversion answers 406 as cinder does for a microversion
// above its maximum.
func (s *Server) checkVolumeMicroversion(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	max := s.opts.CinderMaxMicroversion
	s.mu.Unlock()
	v, ok := supported(w, volumeMicroversion(r), max, "3", 0)
	if !ok {
		return false
	}
	w.Header().Set("OpenStack-API-Version", "volume "+v)
	return true
}

// supported resolves the requested microversion v ("latest" is max) and
// answers 406, as nova and cinder do, unless it is major.N with N from
// minMinor through max's.
func supported(w http.ResponseWriter, v, max, major string, minMinor int) (string, bool) {
	if v == "latest" {
		v = max
	}
	if n := minor(v, major); n < minMinor || n > minor(max, major) {
		msg := fmt.Sprintf("Version %s is not supported by the API. Minimum is %s.%d and maximum is %s.", v, major, minMinor, max)
		writeJSON(w, http.StatusNotAcceptable, map[string]any{"computeFault": map[string]any{"code": 406, "message": msg}})
		return v, false
	}
	return v, true
}

// serveVolumeVersion is cinder's GET /v3/: the version document, a list of
// one version.
func (s *Server) serveVolumeVersion(w http.ResponseWriter) {
	s.mu.Lock()
	max := s.opts.CinderMaxMicroversion
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
		"id":          "v3.0",
		"links":       []any{map[string]any{"href": s.URL + "/volumev3/v3/", "rel": "self"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}},
		"status":      "CURRENT",
		"version":     max,
		"min_version": "3.0",
		"updated":     "2023-08-31T00:00:00Z",
	}}})
}

// minor returns N of a "major.N" microversion, -1 when malformed or of
// another major version.
func minor(v, major string) int {
	maj, min, ok := strings.Cut(v, ".")
	if !ok || maj != major {
		return -1
	}
	n, err := strconv.Atoi(min)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func (s *Server) serveVersion(w http.ResponseWriter) {
	s.mu.Lock()
	max := s.opts.MaxMicroversion
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"version": map[string]any{
		"id":          "v2.1",
		"links":       []any{map[string]any{"href": s.URL + "/compute/v2.1/", "rel": "self"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}},
		"status":      "CURRENT",
		"version":     max,
		"min_version": "2.1",
		"updated":     "2013-07-23T11:33:21Z",
	}})
}

// hang blocks until the client gives up or the server closes.
func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
