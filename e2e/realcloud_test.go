package e2e

// End-to-end tests against the real OpenStack test cloud (scripts/testcloud,
// openstack/testcloud): the real binary with an openstack collector, and
// the amqp listener on the cloud's own RabbitMQ vhost, against Keystone,
// Nova (fake driver), Neutron, Cinder and Heat from Debian's packages.
// The cloud starts once per test process (make test installs it and stops
// it at the end). What each test proves is in its comment.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/openstack/testcloud"
)

// cloudTypes are the types the openstack collector produces.
var cloudTypes = []string{"nova.instance", "nova.host", "nova.zone", "neutron.network", "neutron.port", "cinder.volume", "heat.stack"}

// startCloudSidecar starts the binary with an openstack collector named
// "cloud" on the test cloud (and extra config, e.g. a listener).
func startCloudSidecar(t *testing.T, c *testcloud.Cloud, interval, extra string) *sidecar {
	t.Helper()
	return startCloudSidecarWith(t, c.CloudsYAML(), cloudCollector(interval)+"    timeout: 60s\n    request_timeout: 30s\n"+extra)
}

// startCloudSidecarWith starts the binary on config with clouds.yaml
// beside it, and waits for the first poll of the collector "cloud".
func startCloudSidecarWith(t *testing.T, clouds, config string) *sidecar {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(clouds), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSidecar(t, dir, config)
	waitFirstPoll(t, s)
	return s
}

// cloudCollector is the config of an openstack collector "cloud" on the
// cloud "testcloud" of clouds.yaml, polling every interval; more of its
// settings may follow.
func cloudCollector(interval string) string {
	return fmt.Sprintf(`collectors:
  - name: cloud
    type: openstack
    cloud: testcloud
    clouds_file: clouds.yaml
    interval: %s
`, interval)
}

// waitFirstPoll waits for the first poll of the collector "cloud": the
// supervisor starts the collector only after the socket is up, so a status
// that fails to come is a reason to wait, not to fail.
func waitFirstPoll(t *testing.T, s *sidecar) {
	t.Helper()
	waitFor(t, "the first poll of the cloud", 90*time.Second, func() bool {
		out, err := s.cli("status")
		var st struct {
			Collectors []struct {
				Name  string `json:"name"`
				Polls int64  `json:"polls"`
			} `json:"collectors"`
		}
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		for _, c := range st.Collectors {
			if c.Name == "cloud" && c.Polls > 0 {
				return true
			}
		}
		return false
	})
}

// busListener is the config of an amqp listener "bus" owned by the
// collector "cloud", on the cloud's RabbitMQ with its own queue.
func busListener(c *testcloud.Cloud, queue string) string {
	return fmt.Sprintf(`listeners:
  - name: bus
    type: amqp
    owner: cloud
    urls: [%q]
    queue: %s
    queue_expires: 10m
    min_backoff: 50ms
`, c.AMQPURL, queue)
}

// collectNow runs a poll through the CLI and returns the seq after it.
func collectNow(t *testing.T, s *sidecar) int64 {
	t.Helper()
	out, err := s.cli("collect", "cloud")
	if err != nil {
		t.Fatalf("collect: %v\n%s", err, out)
	}
	var r struct {
		Seq int64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("collect output: %v\n%s", err, out)
	}
	return r.Seq
}

// cloudEntity is what get_all returns of an entity.
type cloudEntity struct {
	Key       string         `json:"key"`
	Type      string         `json:"type"`
	Name      string         `json:"name"`
	ParentKey string         `json:"parent_key"`
	State     string         `json:"state"`
	Project   string         `json:"project"`
	Data      map[string]any `json:"data"`
	Links     []struct {
		Key      string `json:"key"`
		Relation string `json:"relation"`
	} `json:"links"`
}

// view is what the comparison looks at: name, state, parent and links.
func (e cloudEntity) view() string {
	var links []string
	for _, l := range e.Links {
		links = append(links, l.Relation+">"+l.Key)
	}
	sort.Strings(links)
	return fmt.Sprintf("name=%q state=%q parent=%q links=%v", e.Name, e.State, e.ParentKey, links)
}

func getAllCloud(t *testing.T, s *sidecar) (map[string]cloudEntity, string) {
	t.Helper()
	out, err := s.cli("get-all")
	if err != nil {
		t.Fatalf("get-all: %v\n%s", err, out)
	}
	var r struct {
		Entities []cloudEntity `json:"entities"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("get-all output: %v", err)
	}
	m := map[string]cloudEntity{}
	for _, e := range r.Entities {
		m[e.Key] = e
	}
	return m, out
}

// restView lists every type through the services' own REST APIs, as an
// operator's client would, and builds what the collector should hold.
func restView(t *testing.T, c *testcloud.Cloud) map[string]cloudEntity {
	t.Helper()
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	key := func(typ, id string) string {
		if id == "" {
			return ""
		}
		return typ + ":" + id
	}
	link := func(rel, k string) []struct {
		Key      string `json:"key"`
		Relation string `json:"relation"`
	} {
		return []struct {
			Key      string `json:"key"`
			Relation string `json:"relation"`
		}{{k, rel}}
	}
	m := map[string]cloudEntity{}
	add := func(e cloudEntity) { m[e.Key] = e }
	for _, s := range c.List(t, "compute:/servers/detail?all_tenants=1", "servers") {
		add(cloudEntity{Key: key("nova.instance", str(s, "id")), Name: str(s, "name"), State: str(s, "status"),
			ParentKey: key("nova.host", str(s, "OS-EXT-SRV-ATTR:host"))})
	}
	var svcs struct {
		Services []map[string]any `json:"services"`
	}
	c.Must(t, http.MethodGet, "compute:/os-services?binary=nova-compute", nil, &svcs)
	for _, s := range svcs.Services {
		state := str(s, "state")
		if f, _ := s["forced_down"].(bool); f {
			state = "down"
		}
		add(cloudEntity{Key: key("nova.host", str(s, "host")), Name: str(s, "host"), State: state,
			ParentKey: key("nova.zone", str(s, "zone"))})
	}
	var zones struct {
		Info []struct {
			ZoneName  string `json:"zoneName"`
			ZoneState struct {
				Available bool `json:"available"`
			} `json:"zoneState"`
		} `json:"availabilityZoneInfo"`
	}
	c.Must(t, http.MethodGet, "compute:/os-availability-zone/detail", nil, &zones)
	for _, z := range zones.Info {
		if z.ZoneName == "internal" {
			continue // Vitrage's own driver skips it, so does the collector
		}
		state := "unavailable"
		if z.ZoneState.Available {
			state = "available"
		}
		add(cloudEntity{Key: key("nova.zone", z.ZoneName), Name: z.ZoneName, State: state})
	}
	for _, n := range c.List(t, "network:/v2.0/networks", "networks") {
		add(cloudEntity{Key: key("neutron.network", str(n, "id")), Name: str(n, "name"), State: str(n, "status")})
	}
	for _, p := range c.List(t, "network:/v2.0/ports", "ports") {
		e := cloudEntity{Key: key("neutron.port", str(p, "id")), Name: str(p, "name"), State: str(p, "status"),
			ParentKey: key("neutron.network", str(p, "network_id"))}
		if strings.HasPrefix(str(p, "device_owner"), "compute:") && str(p, "device_id") != "" {
			e.Links = link("attached", key("nova.instance", str(p, "device_id")))
		}
		add(e)
	}
	for _, v := range c.List(t, "volume:/volumes/detail?all_tenants=1", "volumes") {
		e := cloudEntity{Key: key("cinder.volume", str(v, "id")), Name: str(v, "name"), State: str(v, "status")}
		atts, _ := v["attachments"].([]any)
		for _, a := range atts {
			if am, ok := a.(map[string]any); ok && str(am, "server_id") != "" {
				e.Links = append(e.Links, link("attached", key("nova.instance", str(am, "server_id")))...)
			}
		}
		add(e)
	}
	kinds := map[string]string{"OS::Nova::Server": "nova.instance", "OS::Cinder::Volume": "cinder.volume",
		"OS::Neutron::Net": "neutron.network", "OS::Neutron::Port": "neutron.port"}
	for _, st := range c.List(t, "orchestration:/stacks?global_tenant=true", "stacks") {
		e := cloudEntity{Key: key("heat.stack", str(st, "id")), Name: str(st, "stack_name"), State: str(st, "stack_status")}
		var res struct {
			Resources []map[string]any `json:"resources"`
		}
		c.Must(t, http.MethodGet, "orchestration:/stacks/"+str(st, "stack_name")+"/"+str(st, "id")+"/resources?nested_depth=10", nil, &res)
		seen := map[string]bool{}
		for _, r := range res.Resources {
			typ := kinds[str(r, "resource_type")]
			if typ == "" || str(r, "physical_resource_id") == "" || seen[typ+str(r, "physical_resource_id")] {
				continue
			}
			seen[typ+str(r, "physical_resource_id")] = true
			e.Links = append(e.Links, link("comprised", key(typ, str(r, "physical_resource_id")))...)
		}
		add(e)
	}
	return m
}

// diffViews returns the differences between the collector's entities and
// the REST view, for the cloud's types.
func diffViews(got, want map[string]cloudEntity) []string {
	var d []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			d = append(d, "missing "+k+" "+w.view())
		case g.view() != w.view():
			d = append(d, fmt.Sprintf("%s: got %s, REST %s", k, g.view(), w.view()))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && slices.Contains(cloudTypes, strings.SplitN(k, ":", 2)[0]) {
			d = append(d, "extra "+k)
		}
	}
	sort.Strings(d)
	return d
}

// TestRealCloudTypes: every type the collector produces holds exactly what
// the services' own REST APIs list: the same ids, and for each its name,
// state, parent and links (port → server, volume → server, Heat's
// `comprised` from the stack's resources). The cloud holds a running and a
// stopped server, a volume, a network with a port, and a stack that made a
// network of its own.
func TestRealCloudTypes(t *testing.T) {
	c := testcloud.Start(t)
	running := c.CreateServer(t, testcloud.Name("types-running"), "")
	stopped := c.CreateServer(t, testcloud.Name("types-stopped"), "")
	vol := c.CreateVolume(t, testcloud.Name("types-vol"))
	net := c.CreateNetwork(t, testcloud.Name("types-net"))
	c.CreatePort(t, testcloud.Name("types-port"), net)
	stackName := testcloud.Name("types-stack")
	stack := c.CreateStack(t, stackName, testcloud.StackTemplate(testcloud.PhysNet()))
	c.WaitServer(t, running, "ACTIVE")
	c.WaitServer(t, stopped, "ACTIVE")
	c.ServerAction(t, stopped, "os-stop")
	c.WaitServer(t, stopped, "SHUTOFF")
	c.WaitVolume(t, vol, "available")
	c.WaitStack(t, stackName, stack, "CREATE_COMPLETE")

	s := startCloudSidecar(t, c, "1h", "")
	var d []string
	// The cloud is settled; a second round only absorbs a service record
	// that changed between the two listings.
	for round := 0; round < 3; round++ {
		collectNow(t, s)
		got, _ := getAllCloud(t, s)
		want := restView(t, c)
		if d = diffViews(got, want); len(d) == 0 {
			for _, k := range []string{"nova.instance:" + running, "nova.instance:" + stopped, "cinder.volume:" + vol,
				"neutron.network:" + net, "heat.stack:" + stack} {
				if _, ok := got[k]; !ok {
					t.Fatalf("%s is not listed", k)
				}
			}
			if l := got["heat.stack:"+stack].Links; len(l) != 1 || l[0].Relation != "comprised" || !strings.HasPrefix(l[0].Key, "neutron.network:") {
				t.Fatalf("stack links %+v, want one comprised network", l)
			}
			if got["nova.instance:"+stopped].State != "SHUTOFF" || got["nova.instance:"+running].ParentKey != "nova.host:"+c.ComputeHost {
				t.Fatalf("instances: %s / %s", got["nova.instance:"+stopped].view(), got["nova.instance:"+running].view())
			}
			return
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("the collector's entities differ from the REST listings:\n%s", strings.Join(d, "\n"))
}

// outcome is the change one step must produce for one key.
type outcome struct{ key, action, state string }

// bystanders are one settled entity of each kind besides those a
// lifecycle step touches: a cloud where deleting one server deletes half of
// them or less, under the default mass-delete brake (max_delete_ratio 0.5),
// which would otherwise hold the delete of a cloud's only server until a
// second listing confirms it.
// It returns their keys.
func bystanders(t *testing.T, c *testcloud.Cloud) map[string]bool {
	srv := c.CreateServer(t, testcloud.Name("bystander-srv"), "")
	vol := c.CreateVolume(t, testcloud.Name("bystander-vol"))
	net := c.CreateNetwork(t, testcloud.Name("bystander-net"))
	port := c.CreatePort(t, testcloud.Name("bystander-port"), net)
	name := testcloud.Name("bystander-stack")
	stack := c.CreateStack(t, name, testcloud.StackTemplate(testcloud.PhysNet()))
	c.WaitServer(t, srv, "ACTIVE")
	c.WaitVolume(t, vol, "available")
	c.WaitStack(t, name, stack, "CREATE_COMPLETE")
	return map[string]bool{"nova.instance:" + srv: true, "cinder.volume:" + vol: true, "neutron.network:" + net: true,
		"neutron.port:" + port: true, "heat.stack:" + stack: true}
}

// lifecycle runs the create / stop / delete steps on the cloud; after each
// step has settled in the REST API, settle(step, outcomes) checks what the
// subscriber received.
func lifecycle(t *testing.T, c *testcloud.Cloud, settle func(step string, want []outcome)) {
	srv := c.CreateServer(t, testcloud.Name("life-srv"), "")
	c.WaitServer(t, srv, "ACTIVE")
	settle("server create", []outcome{{"nova.instance:" + srv, "create", "ACTIVE"}})
	c.ServerAction(t, srv, "os-stop")
	c.WaitServer(t, srv, "SHUTOFF")
	settle("server stop", []outcome{{"nova.instance:" + srv, "update", "SHUTOFF"}})
	c.DeleteServer(t, srv)
	settle("server delete", []outcome{{"nova.instance:" + srv, "delete", ""}})

	vol := c.CreateVolume(t, testcloud.Name("life-vol"))
	c.WaitVolume(t, vol, "available")
	settle("volume create", []outcome{{"cinder.volume:" + vol, "create", "available"}})
	c.Must(t, http.MethodDelete, "volume:/volumes/"+vol, nil, nil)
	c.WaitGone(t, "volume:/volumes/"+vol)
	settle("volume delete", []outcome{{"cinder.volume:" + vol, "delete", ""}})

	net := c.CreateNetwork(t, testcloud.Name("life-net"))
	port := c.CreatePort(t, testcloud.Name("life-port"), net)
	settle("network and port create", []outcome{{"neutron.network:" + net, "create", "ACTIVE"}, {"neutron.port:" + port, "create", "DOWN"}})
	c.Must(t, http.MethodDelete, "network:/v2.0/ports/"+port, nil, nil)
	c.Must(t, http.MethodDelete, "network:/v2.0/networks/"+net, nil, nil)
	settle("network and port delete", []outcome{{"neutron.network:" + net, "delete", ""}, {"neutron.port:" + port, "delete", ""}})

	name := testcloud.Name("life-stack")
	stack := c.CreateStack(t, name, testcloud.StackTemplate(testcloud.PhysNet()))
	c.WaitStack(t, name, stack, "CREATE_COMPLETE")
	var res struct {
		Resources []struct {
			Type string `json:"resource_type"`
			ID   string `json:"physical_resource_id"`
		} `json:"resources"`
	}
	c.Must(t, http.MethodGet, "orchestration:/stacks/"+name+"/"+stack+"/resources", nil, &res)
	stackNet := ""
	for _, r := range res.Resources {
		if r.Type == "OS::Neutron::Net" {
			stackNet = r.ID
		}
	}
	if stackNet == "" {
		t.Fatalf("stack %s made no network: %+v", name, res)
	}
	settle("stack create", []outcome{{"heat.stack:" + stack, "create", "CREATE_COMPLETE"}, {"neutron.network:" + stackNet, "create", "ACTIVE"}})
	c.DeleteStack(t, name, stack)
	settle("stack delete", []outcome{{"heat.stack:" + stack, "delete", ""}, {"neutron.network:" + stackNet, "delete", ""}})
}

// matches reports whether ch is the outcome o.
func (o outcome) matches(ch busChange) bool {
	return ch.Key == o.key && ch.Action == o.action && (o.state == "" || ch.State == o.state)
}

// keyChanges are the changes of one key.
func keyChanges(chs []busChange, key string) []busChange {
	var out []busChange
	for _, ch := range chs {
		if ch.Key == key {
			out = append(out, ch)
		}
	}
	return out
}

// reached reports whether the last of an entity's changes (through the
// bus) is the outcome: deleted, or in the outcome's state.
func (o outcome) reached(mine []busChange) bool {
	if len(mine) == 0 {
		return false
	}
	last := mine[len(mine)-1]
	if o.action == "delete" {
		return last.Action == "delete"
	}
	return last.Action != "delete" && last.State == o.state
}

// carriers counts the changes that carry the outcome: the create, the
// update into the new state, the delete. The bus also brings the states
// the entity went through on the way (BUILD before ACTIVE,
// CREATE_IN_PROGRESS), which polls at the end of a step do not see.
func (o outcome) carriers(mine []busChange) int {
	n := 0
	for i, ch := range mine {
		switch {
		case o.action == "create" || o.action == "delete":
			if ch.Action == o.action {
				n++
			}
		case ch.Action == "update" && ch.State == o.state && (i == 0 || mine[i-1].State != o.state):
			n++
		}
	}
	return n
}

func describe(chs []busChange) string {
	var b strings.Builder
	for _, ch := range chs {
		fmt.Fprintf(&b, "\n  %d %s %s %s (%s)", ch.Seq, ch.Action, ch.Key, ch.State, ch.Source)
	}
	return b.String()
}

// TestRealCloudChangesByPoll: with polls alone (no listener), each step —
// server create, stop and delete; volume create and delete; network with a
// port created and deleted; stack created and deleted — gives exactly one
// change per entity it touched at a registered subscriber, and a poll right
// after it gives none (nothing in the real answers moves by itself).
func TestRealCloudChangesByPoll(t *testing.T) {
	t.Parallel() // with the bus variant: each looks at its own entities only
	c := testcloud.Start(t)
	mine := bystanders(t, c)
	standing := maps.Clone(mine)
	// A bystander's own data may move while a step runs (Nova's periodic
	// tasks touch a server's row): an update of a bystander is not the
	// step's, a create or delete of one would be.
	steps := func(chs []busChange) []busChange {
		var out []busChange
		for _, ch := range chs {
			if standing[ch.Key] && ch.Action == "update" {
				t.Logf("a bystander moved by itself: %s %s %s", ch.Action, ch.Key, ch.State)
				continue
			}
			out = append(out, ch)
		}
		return out
	}
	// No mass-delete brake: the tests running beside this one on the same
	// cloud delete their own entities at any time (the bus variant's
	// clean-up, for one), and theirs with this step's can pass half of a
	// type, which holds this step's delete until the next listing.
	s := startCloudSidecar(t, c, "1h", "    max_delete_ratio: 0\n")
	collectNow(t, s)
	sub := subscribe(t, s.socket, cloudTypes...)
	lifecycle(t, c, func(step string, want []outcome) {
		t.Helper()
		for _, o := range want {
			mine[o.key] = true
		}
		mark := sub.count()
		seq := collectNow(t, s)
		waitFor(t, step+": changes up to seq "+fmt.Sprint(seq), 10*time.Second, func() bool {
			chs, _ := sub.got()
			return lastSeq(chs) >= seq
		})
		all, _ := sub.got()
		chs := steps(ownChanges(all[mark:], mine))
		if len(chs) != len(want) {
			t.Fatalf("%s: %d changes, want %d:%s", step, len(chs), len(want), describe(chs))
		}
		for _, o := range want {
			n := 0
			for _, ch := range chs {
				if o.matches(ch) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%s: want one %s %s %s, got:%s", step, o.action, o.key, o.state, describe(chs))
			}
		}
		mark = len(all)
		seq = collectNow(t, s)
		waitFor(t, step+": changes up to seq "+fmt.Sprint(seq), 10*time.Second, func() bool {
			chs, _ := sub.got()
			return lastSeq(chs) >= seq
		})
		all, _ = sub.got()
		if again := steps(ownChanges(all[mark:], mine)); len(again) > 0 {
			t.Fatalf("%s: a second poll changed something:%s", step, describe(again))
		}
	})
}

// ownChanges keeps the changes of a test's own entities and of the shared
// compute host and zone (which no step may change), leaving out those of
// tests running beside it.
func ownChanges(chs []busChange, mine map[string]bool) []busChange {
	var out []busChange
	for _, ch := range chs {
		if mine[ch.Key] || strings.HasPrefix(ch.Key, "nova.host:") || strings.HasPrefix(ch.Key, "nova.zone:") {
			out = append(out, ch)
		}
	}
	return out
}

func lastSeq(chs []busChange) int64 {
	if len(chs) == 0 {
		return 0
	}
	return chs[len(chs)-1].Seq
}

// TestRealCloudChangesByBus: with the amqp listener on the cloud's own
// vhost and exchanges (polls only at start and when asked), each step's
// outcome reaches the subscriber through the bus alone: exactly one change
// carries it (the create, the SHUTOFF update, the delete), none follows it,
// and every change before it for that key is a state the entity really
// went through (BUILD, CREATE_IN_PROGRESS, ...). A poll afterwards flips no
// state, name or parent back; it may refresh data at most once per entity.
func TestRealCloudChangesByBus(t *testing.T) {
	t.Parallel() // with the poll variant: each looks at its own entities only
	c := testcloud.Start(t)
	mine := bystanders(t, c)
	queue := amqptest.Name("testcloud")
	s := startCloudSidecar(t, c, "1h", busListener(c, queue))
	waitConnected(t, s.client())
	collectNow(t, s)
	sub := subscribe(t, s.socket, cloudTypes...)
	var report []string
	// The steps before left their changes at the subscriber; this step's
	// are those after stepMark.
	stepMark := 0
	lifecycle(t, c, func(step string, want []outcome) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var chs []busChange
		for {
			all, _ := sub.got()
			chs = all[stepMark:]
			done := true
			for _, o := range want {
				done = done && o.reached(keyChanges(chs, o.key))
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the outcome did not arrive through the bus within 60s:%s", step, describe(chs))
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // anything late would show now
		for _, o := range want {
			mine[o.key] = true
		}
		all, _ := sub.got()
		chs = ownChanges(all[stepMark:], mine)
		for _, ch := range chs {
			if ch.Source != "cloud" {
				t.Fatalf("%s: change from %q, want the owner cloud:%s", step, ch.Source, describe(chs))
			}
		}
		counts := map[string]int{}
		for _, o := range want {
			mine := keyChanges(chs, o.key)
			counts[o.key] = len(mine)
			if !o.reached(mine) || o.carriers(mine) != 1 {
				t.Fatalf("%s: want exactly one change that %ss %s (%s), and it last:%s", step, o.action, o.key, o.state, describe(mine))
			}
			for i := 1; i < len(mine); i++ {
				if mine[i].State == mine[i-1].State && mine[i].Action == "update" {
					t.Logf("%s: %s: a data-only update through the bus (state %s)", step, o.key, mine[i].State)
				}
			}
		}
		for _, ch := range chs {
			if _, ok := counts[ch.Key]; !ok {
				t.Fatalf("%s: change of an entity the step did not touch:%s", step, describe(chs))
			}
		}
		report = append(report, fmt.Sprintf("%s: %v", step, counts))
		// A poll now: no state, name or parent differs from the bus's.
		before, _ := getAllCloud(t, s)
		collectNow(t, s)
		after, _ := getAllCloud(t, s)
		for _, o := range want {
			b, a := before[o.key], after[o.key]
			if a.State != b.State || a.Name != b.Name || a.ParentKey != b.ParentKey {
				t.Fatalf("%s: the poll after the bus changed %s: %s -> %s", step, o.key, b.view(), a.view())
			}
		}
		time.Sleep(300 * time.Millisecond)
		all, _ = sub.got()
		stepMark = len(all)
	})
	t.Logf("changes per entity through the bus: %s", strings.Join(report, "; "))
}

// TestRealCloudFleet boots 50 servers with user data (a fake cloud-init
// password) while a sidecar polls every 3 s, then proves on the same run:
//   - the run outlives the Keystone tokens (150 s here) and the collector
//     gets new ones: no poll failed;
//   - Nova's max_limit of 20 makes the listing real paging: ≥ 3 pages per
//     poll, in the collector's status and in nova-api's own log;
//   - the user data is nowhere: not in the database file or its WAL, the
//     sidecar's log, status or get-all;
//   - nova-api stopped: the polls of the Nova types fail and nothing is
//     deleted; restarted, the next poll recovers with every server.
func TestRealCloudFleet(t *testing.T) {
	c := testcloud.Start(t)
	const n = 50
	started := time.Now()
	// Full listings at every poll: the paging and recovery checks read the
	// last listing's count and pages (TestRealCloudIncremental, in
	// openstack/e2etest, covers the incremental polls on this cloud).
	s := startCloudSidecar(t, c, "3s", "    incremental: false\n")
	sub := subscribe(t, s.socket, cloudTypes...)

	marker := fmt.Sprintf("tc-secret-%d-%d", os.Getpid(), time.Now().UnixNano())
	userData := "#cloud-config\npassword: " + marker + "\nchpasswd: {expire: false}\n"
	ids := c.CreateServers(t, testcloud.Name("fleet"), n, userData)
	defer deleteFleet(t, c, ids)
	waitFleetActive(t, c, ids)
	// The servers' own listing holds the user data: the marker is real.
	var one struct {
		Server map[string]any `json:"server"`
	}
	c.Must(t, http.MethodGet, "compute:/servers/"+ids[0], nil, &one)
	encoded := base64.StdEncoding.EncodeToString([]byte(userData))
	if one.Server["OS-EXT-SRV-ATTR:user_data"] != encoded {
		t.Fatalf("Nova does not show the user data: %v", one.Server["OS-EXT-SRV-ATTR:user_data"])
	}
	waitFor(t, "every server ACTIVE in get-all", 60*time.Second, func() bool {
		got, _ := getAllCloud(t, s)
		for _, id := range ids {
			if got["nova.instance:"+id].State != "ACTIVE" {
				return false
			}
		}
		return true
	})

	t.Run("TokenExpiry", func(t *testing.T) {
		life := time.Duration(c.TokenExpiration) * time.Second
		if wait := life + 10*time.Second - time.Since(started); wait > 0 {
			time.Sleep(wait)
		}
		st := cloudStatus(t, s)
		if st.Details.Tokens < 2 {
			t.Fatalf("%s after start with %s tokens: %d tokens obtained, want ≥ 2", time.Since(started).Round(time.Second), life, st.Details.Tokens)
		}
		if st.Failures != 0 {
			t.Fatalf("%d failed polls across token expiries\n%s", st.Failures, s.log)
		}
		for typ, ts := range st.Details.Types {
			if ts.LastError != "" {
				t.Fatalf("%s: %s", typ, ts.LastError)
			}
		}
		t.Logf("%d tokens in %s (token lifetime %s), no failed poll", st.Details.Tokens, time.Since(started).Round(time.Second), life)
	})

	t.Run("Paging", func(t *testing.T) {
		logPath := filepath.Join(c.LogDir, "nova-api.log")
		off := fileSize(t, logPath)
		polls := cloudStatus(t, s).Polls
		waitFor(t, "two more polls", 30*time.Second, func() bool { return cloudStatus(t, s).Polls >= polls+2 })
		st := cloudStatus(t, s)
		inst := st.Details.Types["nova.instance"]
		if inst.Count < n || inst.Pages < 3 {
			t.Fatalf("nova.instance: %d servers in %d pages, want ≥ %d in ≥ 3 (max_limit %d)", inst.Count, inst.Pages, n, c.NovaMaxLimit)
		}
		// nova-api's own log: the first page, then pages asked with a marker.
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`"GET /v2\.1/servers/detail\?([^ "]*) HTTP/1\.1" status: 200 len: (\d+)`)
		first, marked := 0, 0
		for _, m := range re.FindAllStringSubmatch(string(b[off:]), -1) {
			if strings.Contains(m[1], "marker=") {
				marked++
			} else if strings.Contains(m[1], "all_tenants") {
				first++
			}
		}
		if first < 1 || marked < 2*first {
			t.Fatalf("nova-api served %d first pages and %d marker pages of servers/detail, want ≥ 2 marker pages per poll", first, marked)
		}
		t.Logf("nova.instance: %d servers in %d pages; nova-api log: %d first pages, %d marker pages", inst.Count, inst.Pages, first, marked)
	})

	t.Run("Secrets", func(t *testing.T) {
		// Testing the secrets checks themselves: the marker is in Nova's answer.
		if !strings.Contains(one.Server["OS-EXT-SRV-ATTR:user_data"].(string), encoded) {
			t.Fatal("the check would not see the user data")
		}
		_, all := getAllCloud(t, s)
		status, err := s.cli("status")
		if err != nil {
			t.Fatal(err)
		}
		places := map[string]string{"get-all": all, "status": status, "log": s.log.String()}
		for _, f := range []string{s.db, s.db + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			places[filepath.Base(f)] = string(b)
		}
		for where, text := range places {
			for _, secret := range []string{marker, encoded, "OS-EXT-SRV-ATTR:user_data"} {
				if strings.Contains(text, secret) {
					t.Errorf("the user data (%.30s...) is in %s", secret, where)
				}
			}
		}
	})

	t.Run("NovaAPIDown", func(t *testing.T) {
		mark := sub.count()
		c.StopService(t, "nova-api")
		restarted := false
		defer func() {
			if !restarted {
				c.StartService(t, "nova-api")
			}
		}()
		polls := cloudStatus(t, s).Polls
		waitFor(t, "two polls with nova-api down", 90*time.Second, func() bool {
			st := cloudStatus(t, s)
			return st.Polls >= polls+2 && st.Details.Types["nova.instance"].Failing
		})
		st := cloudStatus(t, s)
		if ts := st.Details.Types["nova.instance"]; !ts.Failing || ts.LastError == "" || st.Details.Types["neutron.network"].Failing {
			t.Fatalf("status with nova-api down: %+v", st.Details.Types)
		}
		t.Logf("nova.instance with nova-api down: %s", st.Details.Types["nova.instance"].LastError)
		got, _ := getAllCloud(t, s)
		for _, id := range ids {
			if _, ok := got["nova.instance:"+id]; !ok {
				t.Fatalf("server %s gone from get-all while nova-api is down", id)
			}
		}
		c.StartService(t, "nova-api")
		restarted = true
		back := time.Now()
		waitFor(t, "a successful poll of the servers", 90*time.Second, func() bool {
			ts := cloudStatus(t, s).Details.Types["nova.instance"]
			return !ts.Failing && ts.LastSuccess.After(back)
		})
		if ts := cloudStatus(t, s).Details.Types["nova.instance"]; ts.Count < n {
			t.Fatalf("after the restart: %d servers listed", ts.Count)
		}
		chs, _ := sub.got()
		for _, ch := range chs[mark:] {
			if ch.Action == "delete" {
				t.Fatalf("a delete while nova-api was down or after:%s", describe(chs[mark:]))
			}
		}
	})
}

// waitFleetActive waits up to 10 minutes for the servers ids to be ACTIVE,
// and fails at the first in ERROR.
func waitFleetActive(t *testing.T, c *testcloud.Cloud, ids []string) {
	t.Helper()
	n := len(ids)
	testcloud.Wait(t, fmt.Sprintf("%d servers ACTIVE", n), 10*time.Minute, func() (bool, error) {
		active := 0
		for _, sv := range c.List(t, "compute:/servers/detail?all_tenants=1", "servers") {
			if slices.Contains(ids, sv["id"].(string)) {
				switch sv["status"] {
				case "ACTIVE":
					active++
				case "ERROR":
					return false, fmt.Errorf("server %s: ERROR %v", sv["id"], sv["fault"])
				}
			}
		}
		return active == n, nil
	})
}

// deleteFleet deletes the servers, a few at a time, and waits until Nova
// lists none of them.
func deleteFleet(t *testing.T, c *testcloud.Cloud, ids []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, id := range ids {
		if id == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_ = c.Do(http.MethodDelete, "compute:/servers/"+id, nil, nil)
		}()
	}
	wg.Wait()
	testcloud.Wait(t, "the fleet deleted", 3*time.Minute, func() (bool, error) {
		for _, sv := range c.List(t, "compute:/servers?all_tenants=1", "servers") {
			if slices.Contains(ids, sv["id"].(string)) {
				return false, nil
			}
		}
		return true, nil
	})
}

// cloudSt is what the tests read of the collector's status.
type cloudSt struct {
	Polls         int64  `json:"polls"`
	Failures      int64  `json:"failures"`
	AvgDurationMs int64  `json:"avg_duration_ms"`
	MaxDurationMs int64  `json:"max_duration_ms"`
	LastError     string `json:"last_error"`
	Details       struct {
		Tokens             int    `json:"tokens_obtained"`
		NovaMicroversion   string `json:"nova_microversion"`
		HypervisorsVersion string `json:"nova_hypervisors_microversion"`
		Types              map[string]struct {
			LastSuccess time.Time `json:"last_success"`
			LastError   string    `json:"last_error"`
			Count       int       `json:"count"`
			Pages       int       `json:"pages"`
			Failing     bool      `json:"failing"`
		} `json:"types"`
	} `json:"details"`
}

func cloudStatus(t *testing.T, s *sidecar) cloudSt {
	t.Helper()
	var st struct {
		Collectors []json.RawMessage `json:"collectors"`
	}
	out, err := s.cli("status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, raw := range st.Collectors {
		var c struct {
			Name string `json:"name"`
			cloudSt
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		if c.Name == "cloud" {
			return c.cloudSt
		}
	}
	t.Fatal("no collector cloud in status")
	return cloudSt{}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
