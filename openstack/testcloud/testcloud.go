// Package testcloud gives tests the project's real OpenStack test cloud
// (scripts/testcloud): Keystone, Nova with the fake driver, Neutron, Cinder,
// Heat, Glance and Placement from Debian's packages on 127.0.0.1, with a
// RabbitMQ vhost of its own. Start brings it up once per test process (the
// script holds a lock, so packages tested side by side do not start it
// twice, and a cloud already running is reused); the helpers talk to the
// services' REST APIs directly, as an operator's client would.
//
// The cloud keeps running after the tests: `make test` stops it at the end
// (scripts/testcloud/testcloud stop), a developer's second `go test` reuses
// it. openstack/README.md ("The real test cloud") has the details.
package testcloud

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Info is what scripts/testcloud writes to <state>/cloud.json.
type Info struct {
	AuthURL           string            `json:"auth_url"`
	Username          string            `json:"username"`
	Password          string            `json:"password"`
	ProjectName       string            `json:"project_name"`
	UserDomainName    string            `json:"user_domain_name"`
	ProjectDomainName string            `json:"project_domain_name"`
	Region            string            `json:"region"`
	AMQPURL           string            `json:"amqp_url"`
	VHost             string            `json:"vhost"`
	ComputeHost       string            `json:"compute_host"`
	Flavor            string            `json:"flavor"`
	ImageName         string            `json:"image_name"`
	NovaMaxLimit      int               `json:"nova_max_limit"`
	TokenExpiration   int               `json:"token_expiration"`
	LogDir            string            `json:"log_dir"`
	StateDir          string            `json:"state_dir"`
	Endpoints         map[string]string `json:"endpoints"`
}

// Cloud is a running test cloud and an admin REST client for it.
type Cloud struct {
	Info
	Script string // scripts/testcloud/testcloud

	mu        sync.Mutex
	token     string
	expires   time.Time
	projectID string
	imageID   string
	http      *http.Client
}

var (
	once     sync.Once
	shared   *Cloud
	startErr error
	seq      atomic.Int64
)

// Start returns the running test cloud, starting it (or reusing the one
// that runs) at the first call of the process. A cloud that cannot start
// fails the test with the script's output: on a machine without the
// packages, run scripts/deps.d/openstack.sh (make test does).
func Start(t testing.TB) *Cloud {
	t.Helper()
	once.Do(func() { shared, startErr = start() })
	if startErr != nil {
		t.Fatalf("testcloud: %v", startErr)
	}
	return shared
}

func start() (*Cloud, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(root, "scripts", "testcloud", "testcloud")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, script, "start").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s start: %w\n%s", script, err, out)
	}
	fmt.Fprintf(os.Stderr, "testcloud: up after %.1fs\n", time.Since(t0).Seconds())
	state := os.Getenv("SYNC_TESTCLOUD_DIR")
	if state == "" {
		state = "/var/lib/synchronizer-testcloud"
	}
	b, err := os.ReadFile(filepath.Join(state, "cloud.json"))
	if err != nil {
		return nil, fmt.Errorf("read the cloud's description: %w", err)
	}
	c := &Cloud{Script: script, http: &http.Client{Timeout: 60 * time.Second}}
	if err := json.Unmarshal(b, &c.Info); err != nil {
		return nil, fmt.Errorf("cloud.json: %w", err)
	}
	if err := c.purgeLeftovers(); err != nil {
		return nil, fmt.Errorf("remove what earlier test runs left: %w", err)
	}
	return c, nil
}

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = up
	}
}

// Name returns a unique resource name of this test process: tc-<pid>-<n>-what.
// Resources so named by a process that no longer runs are deleted by Start.
func Name(what string) string {
	return fmt.Sprintf("tc-%d-%d-%s", os.Getpid(), seq.Add(1), what)
}

// CloudsYAML is a clouds.yaml with the admin credentials as cloud "testcloud".
func (c *Cloud) CloudsYAML() string {
	return c.CloudsYAMLAs(c.Username, c.Password)
}

// CloudsYAMLAs is a clouds.yaml signed in as user, in the admin's project,
// as cloud "testcloud".
func (c *Cloud) CloudsYAMLAs(user, password string) string {
	return fmt.Sprintf(`clouds:
  testcloud:
    auth:
      auth_url: %s
      username: %s
      password: %s
      project_name: %s
      user_domain_name: %s
      project_domain_name: %s
    region_name: %s
    interface: public
`, c.AuthURL, user, password, c.ProjectName, c.UserDomainName, c.ProjectDomainName, c.Region)
}

// StopService stops one service of the cloud (e.g. "nova-api").
func (c *Cloud) StopService(t testing.TB, name string) {
	t.Helper()
	if out, err := exec.Command(c.Script, "stop-service", name).CombinedOutput(); err != nil {
		t.Fatalf("stop %s: %v\n%s", name, err, out)
	}
}

// StartService starts one stopped service and waits until it answers.
func (c *Cloud) StartService(t testing.TB, name string) {
	t.Helper()
	if out, err := exec.Command(c.Script, "start-service", name).CombinedOutput(); err != nil {
		t.Fatalf("start %s: %v\n%s", name, err, out)
	}
}

// ---------------------------------------------------------------- REST

// Token returns an admin token scoped to the admin project, renewed when it
// has less than 20 s left (the cloud's tokens live 150 s).
func (c *Cloud) Token() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Until(c.expires) > 20*time.Second {
		return c.token, nil
	}
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
			"user": map[string]any{"name": c.Username, "domain": map[string]any{"name": c.UserDomainName}, "password": c.Password}}},
		"scope": map[string]any{"project": map[string]any{"name": c.ProjectName, "domain": map[string]any{"name": c.ProjectDomainName}}},
	}}
	b, _ := json.Marshal(body)
	resp, err := c.http.Post(strings.TrimSuffix(c.AuthURL, "/")+"/auth/tokens", "application/json", bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("keystone: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("keystone: token: %s", resp.Status)
	}
	var tok struct {
		Token struct {
			ExpiresAt time.Time `json:"expires_at"`
			Project   struct {
				ID string `json:"id"`
			} `json:"project"`
		} `json:"token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		return "", fmt.Errorf("keystone: token: %w", err)
	}
	c.token, c.expires, c.projectID = resp.Header.Get("X-Subject-Token"), tok.Token.ExpiresAt, tok.Token.Project.ID
	return c.token, nil
}

// ProjectID is the admin project's id.
func (c *Cloud) ProjectID(t testing.TB) string {
	t.Helper()
	if _, err := c.Token(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.projectID
}

// endpoint turns "compute:/servers" into a full URL.
func (c *Cloud) endpoint(ref string) (string, error) {
	svc, p, ok := strings.Cut(ref, ":")
	if !ok || strings.HasPrefix(ref, "http") {
		return ref, nil
	}
	base := c.Endpoints[svc]
	if base == "" {
		return "", fmt.Errorf("no endpoint %q", svc)
	}
	if svc == "volume" || svc == "orchestration" {
		if _, err := c.Token(); err != nil {
			return "", err
		}
		c.mu.Lock()
		base += "/" + c.projectID
		c.mu.Unlock()
	}
	return base + p, nil
}

// Do sends one request ("compute:/servers/detail" or a full URL); the JSON
// answer is decoded into out when out is not nil. Any status outside
// 200-299 is an error naming it.
func (c *Cloud) Do(method, ref string, body, out any) error {
	_, err := c.do(method, ref, body, out)
	return err
}

func (c *Cloud) do(method, ref string, body, out any) (int, error) {
	u, err := c.endpoint(ref)
	if err != nil {
		return 0, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	tok, err := c.Token()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Auth-Token", tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// Compute 2.37 is the first that boots a server with no network
	// (networks: "none"); Cinder 3.60 for updated_at filters.
	req.Header.Set("OpenStack-API-Version", "compute 2.37, volume 3.60")
	req.Header.Set("X-OpenStack-Nova-API-Version", "2.37")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %.500s", method, u, resp.Status, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, u, err)
		}
	}
	return resp.StatusCode, nil
}

// Must is Do that fails the test.
func (c *Cloud) Must(t testing.TB, method, ref string, body, out any) {
	t.Helper()
	if err := c.Do(method, ref, body, out); err != nil {
		t.Fatal(err)
	}
}

// gone reports whether ref answers 404.
func (c *Cloud) gone(ref string) (bool, error) {
	code, err := c.do(http.MethodGet, ref, nil, nil)
	if code == http.StatusNotFound {
		return true, nil
	}
	return false, err
}

// List follows every page of a collection ("compute:/servers/detail?all_tenants=1")
// through its <key>_links next links, or Heat's marker, and returns the items.
func (c *Cloud) List(t testing.TB, ref, key string) []map[string]any {
	t.Helper()
	items, err := c.list(ref, key)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func (c *Cloud) list(ref, key string) ([]map[string]any, error) {
	var all []map[string]any
	next := ref
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			return nil, fmt.Errorf("%s: more than 1000 pages", ref)
		}
		var page map[string]json.RawMessage
		if err := c.Do(http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		var items []map[string]any
		if err := json.Unmarshal(page[key], &items); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", next, key, err)
		}
		all = append(all, items...)
		next = ""
		var links []struct{ Rel, Href string }
		if raw, ok := page[key+"_links"]; ok {
			_ = json.Unmarshal(raw, &links)
		}
		for _, l := range links {
			if l.Rel == "next" && len(items) > 0 {
				next = l.Href
			}
		}
	}
	return all, nil
}

// Wait polls cond until it is true, every 250 ms at first and less often
// as it goes on (up to every 3 s: a busy cloud is not to be kept busier);
// it fails the test after timeout, or at once when cond returns an error.
func Wait(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 250 * time.Millisecond
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(pause*3/2, 3*time.Second)
	}
}

// ---------------------------------------------------------------- servers

// ImageID is the id of the cloud's 1 MiB image.
func (c *Cloud) ImageID(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	id := c.imageID
	c.mu.Unlock()
	if id != "" {
		return id
	}
	var r struct {
		Images []struct{ ID string } `json:"images"`
	}
	c.Must(t, http.MethodGet, "image:/v2/images?name="+url.QueryEscape(c.ImageName), nil, &r)
	if len(r.Images) == 0 {
		t.Fatalf("no image %q", c.ImageName)
	}
	c.mu.Lock()
	c.imageID = r.Images[0].ID
	c.mu.Unlock()
	return r.Images[0].ID
}

// CreateServer boots a server with no network (compute 2.37 "none"), with
// userData (base64-encoded here) when not empty, and returns its id at once
// (status BUILD). The server is deleted when the test ends.
func (c *Cloud) CreateServer(t testing.TB, name, userData string) string {
	t.Helper()
	s := map[string]any{"name": name, "flavorRef": c.Flavor, "imageRef": c.ImageID(t), "networks": "none"}
	if userData != "" {
		s["user_data"] = base64.StdEncoding.EncodeToString([]byte(userData))
	}
	var r struct {
		Server struct{ ID string } `json:"server"`
	}
	c.Must(t, http.MethodPost, "compute:/servers", map[string]any{"server": s}, &r)
	id := r.Server.ID
	t.Cleanup(func() { c.deleteQuietly("compute:/servers/" + id) })
	return id
}

// CreateServers boots n servers in one request (Nova's multi-create:
// one scheduling pass for all), named name-1 ... name-n, with no network
// and the same userData, and returns their ids. They are deleted when the
// test ends.
func (c *Cloud) CreateServers(t testing.TB, name string, n int, userData string) []string {
	t.Helper()
	s := map[string]any{"name": name, "flavorRef": c.Flavor, "imageRef": c.ImageID(t), "networks": "none",
		"min_count": n, "max_count": n, "return_reservation_id": true}
	if userData != "" {
		s["user_data"] = base64.StdEncoding.EncodeToString([]byte(userData))
	}
	var r struct {
		ReservationID string `json:"reservation_id"`
	}
	c.Must(t, http.MethodPost, "compute:/servers", map[string]any{"server": s}, &r)
	var ids []string
	Wait(t, fmt.Sprintf("%d servers of reservation %s", n, r.ReservationID), 120*time.Second, func() (bool, error) {
		items, err := c.list("compute:/servers?all_tenants=1&reservation_id="+r.ReservationID, "servers")
		if err != nil {
			return false, err
		}
		ids = ids[:0]
		for _, it := range items {
			ids = append(ids, it["id"].(string))
		}
		return len(ids) == n, nil
	})
	t.Cleanup(func() {
		for _, id := range ids {
			c.deleteQuietly("compute:/servers/" + id)
		}
	})
	return ids
}

// Server returns one server as GET /servers/{id} shows it.
func (c *Cloud) Server(id string) (map[string]any, error) {
	var r struct {
		Server map[string]any `json:"server"`
	}
	err := c.Do(http.MethodGet, "compute:/servers/"+id, nil, &r)
	return r.Server, err
}

// WaitServer waits until the server has status (ERROR fails at once).
func (c *Cloud) WaitServer(t testing.TB, id, status string) {
	t.Helper()
	Wait(t, "server "+id+" "+status, 120*time.Second, func() (bool, error) {
		s, err := c.Server(id)
		if err != nil {
			return false, err
		}
		got, _ := s["status"].(string)
		task, _ := s["OS-EXT-STS:task_state"].(string)
		if got == "ERROR" && status != "ERROR" {
			return false, fmt.Errorf("server %s went to ERROR: %v", id, s["fault"])
		}
		// A task still running (powering-off, deleting) changes the
		// server once more: wait for it to end.
		return got == status && task == "", nil
	})
}

// ServerAction posts os-stop, os-start, ... to the server.
func (c *Cloud) ServerAction(t testing.TB, id, action string) {
	t.Helper()
	c.Must(t, http.MethodPost, "compute:/servers/"+id+"/action", map[string]any{action: nil}, nil)
}

// DeleteServer deletes the server and waits until Nova no longer shows it.
func (c *Cloud) DeleteServer(t testing.TB, id string) {
	t.Helper()
	c.Must(t, http.MethodDelete, "compute:/servers/"+id, nil, nil)
	c.WaitGone(t, "compute:/servers/"+id)
}

// WaitGone waits until ref answers 404.
func (c *Cloud) WaitGone(t testing.TB, ref string) {
	t.Helper()
	Wait(t, ref+" to be gone", 120*time.Second, func() (bool, error) { return c.gone(ref) })
}

// ---------------------------------------------------------------- volumes, networks, stacks

// CreateVolume creates a 1 GiB volume (Cinder's fake driver makes it
// available in a few seconds) and returns its id.
func (c *Cloud) CreateVolume(t testing.TB, name string) string {
	t.Helper()
	var r struct {
		Volume struct{ ID string } `json:"volume"`
	}
	c.Must(t, http.MethodPost, "volume:/volumes", map[string]any{"volume": map[string]any{"name": name, "size": 1}}, &r)
	id := r.Volume.ID
	t.Cleanup(func() { c.deleteQuietly("volume:/volumes/" + id) })
	return id
}

// WaitVolume waits until the volume's status is one of statuses.
func (c *Cloud) WaitVolume(t testing.TB, id string, statuses ...string) {
	t.Helper()
	Wait(t, "volume "+id+" "+strings.Join(statuses, "|"), 120*time.Second, func() (bool, error) {
		var r struct {
			Volume struct{ Status string } `json:"volume"`
		}
		if err := c.Do(http.MethodGet, "volume:/volumes/"+id, nil, &r); err != nil {
			return false, err
		}
		for _, s := range statuses {
			if r.Volume.Status == s {
				return true, nil
			}
		}
		return false, nil
	})
}

var physnet atomic.Int64

// CreateNetwork creates a flat network (a new physical network name each:
// with no agents there are no tenant network types) and returns its id.
func (c *Cloud) CreateNetwork(t testing.TB, name string) string {
	t.Helper()
	var r struct {
		Network struct{ ID string } `json:"network"`
	}
	c.Must(t, http.MethodPost, "network:/v2.0/networks", map[string]any{"network": map[string]any{
		"name": name, "provider:network_type": "flat", "provider:physical_network": PhysNet()}}, &r)
	id := r.Network.ID
	t.Cleanup(func() { c.deleteQuietly("network:/v2.0/networks/" + id) })
	return id
}

// CreatePort creates a port on network and returns its id.
func (c *Cloud) CreatePort(t testing.TB, name, network string) string {
	t.Helper()
	var r struct {
		Port struct{ ID string } `json:"port"`
	}
	c.Must(t, http.MethodPost, "network:/v2.0/ports", map[string]any{"port": map[string]any{"name": name, "network_id": network}}, &r)
	id := r.Port.ID
	t.Cleanup(func() { c.deleteQuietly("network:/v2.0/ports/" + id) })
	return id
}

// StackTemplate is a template of a none resource and a flat network on
// physnet (a new name per network: with no agents there are no tenant
// network types), the two kinds of resource the cloud creates without
// agents.
func StackTemplate(physnet string) string {
	return fmt.Sprintf(`heat_template_version: 2018-08-31
resources:
  nothing:
    type: OS::Heat::None
  net:
    type: OS::Neutron::Net
    properties:
      value_specs:
        provider:network_type: flat
        provider:physical_network: %s
`, physnet)
}

// PhysNet returns a physical network name unused in this cloud.
func PhysNet() string {
	return fmt.Sprintf("tcphys%d%d", os.Getpid(), physnet.Add(1))
}

// CreateStack creates a stack from template (StackTemplate(PhysNet()) for
// one with a network) and returns its id.
func (c *Cloud) CreateStack(t testing.TB, name, template string) string {
	t.Helper()
	var r struct {
		Stack struct{ ID string } `json:"stack"`
	}
	c.Must(t, http.MethodPost, "orchestration:/stacks", map[string]any{"stack_name": name, "template": template, "timeout_mins": 5}, &r)
	id := r.Stack.ID
	t.Cleanup(func() { c.deleteQuietly("orchestration:/stacks/" + name + "/" + id) })
	return id
}

// Stack returns GET /stacks/{name}/{id}'s stack.
func (c *Cloud) Stack(name, id string) (map[string]any, error) {
	var r struct {
		Stack map[string]any `json:"stack"`
	}
	err := c.Do(http.MethodGet, "orchestration:/stacks/"+name+"/"+id, nil, &r)
	return r.Stack, err
}

// WaitStack waits until the stack's status is status (a FAILED one fails).
func (c *Cloud) WaitStack(t testing.TB, name, id, status string) {
	t.Helper()
	Wait(t, "stack "+name+" "+status, 180*time.Second, func() (bool, error) {
		s, err := c.Stack(name, id)
		if err != nil {
			return false, err
		}
		got, _ := s["stack_status"].(string)
		if strings.HasSuffix(got, "_FAILED") && got != status {
			return false, fmt.Errorf("stack %s: %s: %v", name, got, s["stack_status_reason"])
		}
		return got == status, nil
	})
}

// DeleteStack deletes the stack and waits until Heat's stack list no
// longer holds it. DELETE_COMPLETE is not the end: Heat sets it, then
// soft-deletes the row, and in between the list still shows the stack
// (GET of the stack itself shows it DELETE_COMPLETE for ever).
func (c *Cloud) DeleteStack(t testing.TB, name, id string) {
	t.Helper()
	c.Must(t, http.MethodDelete, "orchestration:/stacks/"+name+"/"+id, nil, nil)
	Wait(t, "stack "+name+" to be deleted", 180*time.Second, func() (bool, error) {
		s, err := c.Stack(name, id)
		if err != nil {
			return false, err
		}
		switch st, _ := s["stack_status"].(string); st {
		case "DELETE_FAILED":
			return false, fmt.Errorf("stack %s: DELETE_FAILED: %v", name, s["stack_status_reason"])
		case "DELETE_COMPLETE":
			listed, err := c.list("orchestration:/stacks?global_tenant=true&id="+id, "stacks")
			return err == nil && len(listed) == 0, err
		}
		return false, nil
	})
}

// deleteQuietly is the cleanup of a created resource: already gone is fine.
func (c *Cloud) deleteQuietly(ref string) {
	code, err := c.do(http.MethodDelete, ref, nil, nil)
	if err != nil && code != http.StatusNotFound {
		fmt.Fprintf(os.Stderr, "testcloud: cleanup: %v\n", err)
	}
}

// ---------------------------------------------------------------- leftovers

// purgeLeftovers deletes what test processes that no longer run created
// (names tc-<pid>-...), so that a run killed half-way does not leave its
// servers in the next run's listings, and waits until they are gone.
func (c *Cloud) purgeLeftovers() error {
	type kind struct{ list, key, nameKey, del string }
	kinds := []kind{
		{"orchestration:/stacks?global_tenant=true", "stacks", "stack_name", "orchestration:/stacks/%s/%s"},
		{"compute:/servers?all_tenants=1", "servers", "name", "compute:/servers/%[2]s"},
		{"volume:/volumes?all_tenants=1", "volumes", "name", "volume:/volumes/%[2]s"},
		{"network:/v2.0/ports", "ports", "name", "network:/v2.0/ports/%[2]s"},
		{"network:/v2.0/networks", "networks", "name", "network:/v2.0/networks/%[2]s"},
	}
	var pending []string
	for _, k := range kinds {
		items, err := c.list(k.list, k.key)
		if err != nil {
			return err
		}
		for _, it := range items {
			name, _ := it[k.nameKey].(string)
			id, _ := it["id"].(string)
			if !orphan(name) {
				continue
			}
			ref := fmt.Sprintf(k.del, name, id)
			if code, err := c.do(http.MethodDelete, ref, nil, nil); err != nil && code != http.StatusNotFound {
				// A volume still creating, a network with ports:
				// the next run tries again.
				fmt.Fprintf(os.Stderr, "testcloud: purge: %v\n", err)
				continue
			}
			pending = append(pending, ref)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, ref := range pending {
		for {
			gone, err := c.gone(ref)
			if gone || err != nil || time.Now().After(deadline) {
				break
			}
			if strings.HasPrefix(ref, "orchestration:") {
				var r struct {
					Stack struct {
						Status string `json:"stack_status"`
					} `json:"stack"`
				}
				if c.Do(http.MethodGet, ref, nil, &r) == nil && r.Stack.Status == "DELETE_COMPLETE" {
					break
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// orphan reports whether name is tc-<pid>-... of a process that is gone.
func orphan(name string) bool {
	rest, ok := strings.CutPrefix(name, "tc-")
	if !ok {
		return false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid == os.Getpid() {
		return false
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return os.IsNotExist(err)
}
