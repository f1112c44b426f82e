package e2e

// The Vitrage datasources under the live services: the real synchronizer
// binary polls the fake cloud and a static topology; Debian's vitrage-graph
// loads python/vitrage_synchronizer through its vitrage.conf and
// vitrage-api (noauth, 127.0.0.1) shows its entity graph. Both talk over
// the local RabbitMQ in a virtual host of their own, so parallel runs do not
// share queues (Vitrage's topic and queue names are fixed).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

const (
	liveServer = "f5dc173b-6804-445a-a6d8-c705dad5b5eb" // the Nova sample's server
	liveVM     = "11111111-1111-4111-8111-111111111111" // topology.yaml's
	liveStack  = "3095aefc-09fb-4bc7-b1f0-f21a304e864c" // the Heat sample's stack
	// Vitrage's unit-test values: Debian installs no /etc/vitrage.
	vitrageValues = "/usr/lib/python3/dist-packages/vitrage/tests/resources/datasources_values"
)

// liveTypes are the datasources vitrage-graph loads from our package.
var liveTypes = []string{"nova.zone", "nova.host", "nova.instance", "neutron.network",
	"neutron.port", "cinder.volume", "heat.stack", "static"}

// liveCollectors poll the fake cloud of clouds.yaml and python/tests'
// topology, copied to topology.yaml, in the live tests' directory.
const liveCollectors = `
collectors:
  - {name: cloud, type: openstack, cloud: fakecloud, clouds_file: clouds.yaml, interval: 200ms}
  - {name: topology, type: static, path: topology.yaml, interval: 200ms}
`

// startLiveSidecar starts a synchronizer in dir with config and
// liveCollectors over a fake cloud paging by 2, and waits until both
// collectors have polled: Vitrage's first get_all, its init snapshot, is
// then the whole topology. The synchronizer's log is shown if the test
// fails.
func startLiveSidecar(t *testing.T, dir, config string) (*sidecar, *openstacktest.Server) {
	t.Helper()
	cloud := fakeCloud(t, dir, 2)
	copyFile(t, filepath.Join("python", "tests", "testdata", "topology.yaml"), filepath.Join(dir, "topology.yaml"))
	// Registered before the sidecar's own cleanup, so it runs after the
	// process has stopped writing its log.
	var sc *sidecar
	t.Cleanup(func() {
		if t.Failed() && sc != nil {
			t.Logf("synchronizer log:\n%s", liveLast(sc.log.String(), 3000))
		}
	})
	sc = startSidecar(t, dir, config+liveCollectors)
	c := sc.client()
	waitFor(t, "the first polls", 30*time.Second, func() bool {
		var all struct {
			Entities []struct {
				Key string `json:"key"`
			} `json:"entities"`
		}
		if err := c.Call(context.Background(), "get_all", nil, &all); err != nil {
			return false
		}
		seen := map[string]bool{}
		for _, e := range all.Entities {
			seen[e.Key] = true
		}
		return seen["nova.instance:"+liveServer] && seen["nova.instance:"+liveVM] &&
			seen["heat.stack:"+liveStack] && seen["switch:tor-1"]
	})
	return sc, cloud
}

func TestVitrageLiveGraph(t *testing.T) {
	start := time.Now()
	liveCheckDeps(t)
	dir := t.TempDir()

	sc, cloud := startLiveSidecar(t, dir, "")

	vhost := liveVhost(t)
	liveValuesDir(t, filepath.Join(dir, "values"))
	conf := filepath.Join(dir, "vitrage.conf")
	writeLiveConf(t, dir, conf, vhost, sc.socket, liveFreePort(t))
	env := liveEnv(t)
	if out, err := liveCommand(env, 60*time.Second, "/usr/bin/vitrage-dbsync", "--config-file", conf,
		"--log-file", filepath.Join(dir, "dbsync.log")); err != nil {
		t.Fatalf("vitrage-dbsync: %v\n%s\n%s", err, out, liveTail(filepath.Join(dir, "dbsync.log")))
	}

	graph := startLive(t, "vitrage-graph", env, dir, conf)
	apiProc, api := startLiveAPI(t, env, dir, conf, func(port int) {
		writeLiveConf(t, dir, conf, vhost, sc.socket, port)
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/v1/topology", api)
	var g liveGraph
	get := func() bool {
		graph.alive(t)
		apiProc.alive(t)
		var err error
		g, err = getTopology(url)
		return err == nil
	}

	// 1. The init snapshot: every type, its states and Vitrage's edges.
	waitLive(t, "the graph's first topology from vitrage-api", 60*time.Second, func() bool {
		return get() && g.node("nova.instance", liveServer) != nil && g.node("switch", "tor-1") != nil
	})
	t.Logf("vitrage-graph and vitrage-api up, topology read: %.1f s since the test started", time.Since(start).Seconds())
	want := map[string][]string{
		"openstack.cluster": {"OpenStack Cluster"},
		"nova.zone":         {"nova"},
		"nova.host":         {"compute", "host1", "host2"},
		"nova.instance":     {liveServer, liveVM},
		"neutron.network": {"22222222-2222-4222-8222-222222222222",
			"d32019d3-bc6e-4319-9c1d-6722fc136a22", "db193ab3-96e3-4cb3-8fc5-05f4296d0324"},
		"neutron.port":  {"33333333-3333-4333-8333-333333333333"},
		"cinder.volume": {"44444444-4444-4444-8444-444444444444", "cb49b381-9012-40cb-b8ee-80c19a4801b5"},
		"heat.stack":    {liveStack},
		"switch":        {"tor-1"},
	}
	for typ, ids := range want {
		sort.Strings(ids)
		if got := g.ids(typ); strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Errorf("%s in the live graph: %v, want %v", typ, got, ids)
		}
	}
	for _, n := range []struct{ typ, id, ds, state, oper string }{
		{"nova.instance", liveServer, "nova.instance", "ACTIVE", "OK"},
		{"nova.instance", liveVM, "nova.instance", "ACTIVE", "OK"},
		{"nova.zone", "nova", "nova.zone", "available", "OK"},
		{"heat.stack", liveStack, "heat.stack", "CREATE_COMPLETE", ""},
		{"switch", "tor-1", "static", "available", ""},
	} {
		v := g.node(n.typ, n.id)
		if v == nil {
			t.Errorf("%s:%s not in the live graph", n.typ, n.id)
			continue
		}
		if v.str("vitrage_datasource_name") != n.ds || v.str("state") != n.state ||
			(n.oper != "" && v.str("vitrage_operational_state") != n.oper) {
			t.Errorf("%s:%s = datasource %q state %q operational %q, want %q %q %q", n.typ, n.id,
				v.str("vitrage_datasource_name"), v.str("state"), v.str("vitrage_operational_state"),
				n.ds, n.state, n.oper)
		}
	}
	for _, e := range [][3]string{
		{"openstack.cluster:OpenStack Cluster", "contains", "nova.zone:nova"},
		{"nova.zone:nova", "contains", "nova.host:compute"},
		{"nova.host:compute", "contains", "nova.instance:" + liveVM},
		{"neutron.port:33333333-3333-4333-8333-333333333333", "attached", "nova.instance:" + liveVM},
		{"switch:tor-1", "attached", "nova.host:compute"},
	} {
		if !g.edge(e[0], e[1], e[2]) {
			t.Errorf("edge %s -%s-> %s not in the live graph; edges: %v", e[0], e[1], e[2], g.edges())
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 2. Changes at the sources reach the live graph: a server's status at
	// the fake cloud, an instance's state in the static file.
	changed := time.Now()
	if !cloud.SetServerStatus(liveServer, "ERROR") {
		t.Fatalf("fake cloud: no server %s", liveServer)
	}
	rewriteFileAtomic(t, filepath.Join(dir, "topology.yaml"), "      state: ACTIVE\n", "      state: SUSPENDED\n")
	waitLive(t, "the changed states in the live graph", 20*time.Second, func() bool {
		if !get() {
			return false
		}
		s, v := g.node("nova.instance", liveServer), g.node("nova.instance", liveVM)
		return s != nil && s.str("state") == "ERROR" && s.str("vitrage_operational_state") == "ERROR" &&
			v != nil && v.str("state") == "SUSPENDED" && v.str("vitrage_operational_state") == "SUBOPTIMAL"
	})
	t.Logf("state changes in the live graph after %.1f s", time.Since(changed).Seconds())

	// 3. A server removed from the cloud leaves the live graph (Vitrage's
	// soft delete: the topology shows no deleted vertex).
	changed = time.Now()
	if !cloud.Remove("servers", liveServer) {
		t.Fatalf("fake cloud: could not remove %s", liveServer)
	}
	waitLive(t, "the removed server to leave the live graph", 20*time.Second, func() bool {
		return get() && g.node("nova.instance", liveServer) == nil && g.node("nova.instance", liveVM) != nil
	})
	t.Logf("delete in the live graph after %.1f s", time.Since(changed).Seconds())
	if !g.edge("nova.host:compute", "contains", "nova.instance:"+liveVM) {
		t.Errorf("the other instance lost its host edge: %v", g.edges())
	}
}

// liveCheckDeps fails, never skips, when a piece of the live stack is missing.
func liveCheckDeps(t *testing.T) {
	t.Helper()
	const hint = "scripts/deps.d/vitrage.sh installs python3-vitrage, scripts/deps.d/rabbitmq.sh RabbitMQ"
	if out, err := exec.Command(vitragePython, "-c", "import vitrage.api.app, vitrage.entity_graph.workers, paste.urlmap").CombinedOutput(); err != nil {
		t.Fatalf("Vitrage is not importable by %s (%v); %s\n%s", vitragePython, err, hint, out)
	}
	for _, p := range []string{"/usr/bin/vitrage-graph", "/usr/bin/vitrage-api", "/usr/bin/vitrage-dbsync", vitrageValues} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("python3-vitrage is incomplete: %v; %s", err, hint)
		}
	}
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Fatalf("rabbitmqctl not found (the test makes a RabbitMQ virtual host with it): %v; %s", err, hint)
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:5672", 2*time.Second)
	if err != nil {
		t.Fatalf("RabbitMQ is not listening on 127.0.0.1:5672: %v; %s", err, hint)
	}
	c.Close()
}

// liveVhost makes a RabbitMQ virtual host for this run, deleted at the end.
func liveVhost(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	vhost := "synchronizer-live-" + hex.EncodeToString(b)
	for _, args := range [][]string{
		{"add_vhost", vhost},
		{"set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"},
	} {
		if out, err := liveCommand(nil, 60*time.Second, "rabbitmqctl", args...); err != nil {
			t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := liveCommand(nil, 60*time.Second, "rabbitmqctl", "delete_vhost", vhost); err != nil {
			t.Errorf("rabbitmqctl delete_vhost %s: %v\n%s", vhost, err, out)
		}
	})
	return vhost
}

func liveCommand(env []string, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	return cmd.CombinedOutput()
}

// liveValuesDir is Vitrage's test datasources_values plus default.yaml's
// table for the types it lacks (without one a state reads "undefined
// datasource").
func liveValuesDir(t *testing.T, dest string) {
	t.Helper()
	if err := os.CopyFS(dest, os.DirFS(vitrageValues)); err != nil {
		t.Fatalf("copy %s: %v", vitrageValues, err)
	}
	for _, typ := range liveTypes {
		p := filepath.Join(dest, typ+".yaml")
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			copyFile(t, filepath.Join(vitrageValues, "default.yaml"), p)
		}
	}
}

// liveEnv is the environment of the live tests' Vitrage processes: the
// test's own, with vitrage_synchronizer where livePythonEnv finds it, no
// bytecode written and no warnings.
func liveEnv(t *testing.T) []string {
	t.Helper()
	return append(append(os.Environ(), livePythonEnv(t, pythonDir(t))...), "PYTHONDONTWRITEBYTECODE=1", "PYTHONWARNINGS=ignore")
}

// liveFreePort is the port of freeAddr: nothing listens on it now;
// vitrage-api binds it a moment later (it takes no port 0).
func liveFreePort(t *testing.T) int {
	return int(netip.MustParseAddrPort(freeAddr(t)).Port())
}

// liveDBs are the Vitrage databases made for the live tests, by their
// directory: a config written again (another port) keeps its database.
var liveDBs sync.Map

// liveDB is the MariaDB database of the Vitrage in dir (realVitrageDB says
// why not SQLite).
func liveDB(t *testing.T, dir string) string {
	if v, ok := liveDBs.Load(dir); ok {
		return v.(string)
	}
	u := realVitrageDB(t)
	liveDBs.Store(dir, u)
	return u
}

func writeLiveConf(t *testing.T, dir, conf, vhost, socket string, port int) {
	t.Helper()
	var per strings.Builder
	for _, typ := range liveTypes {
		// Once a second, so that a change shows within a bounded time.
		fmt.Fprintf(&per, "[%s]\nchanges_interval = 1\n", typ)
	}
	text := vitrageConf(dir, vhost, port, liveDB(t, dir)) + fmt.Sprintf(`[datasources]
types = %[3]s
path = vitrage_synchronizer.datasources,vitrage.datasources
snapshots_interval = 600
[synchronizer]
socket = %[2]s
state_dir = %[1]s/state
timeout = 5
%[4]s`, dir, socket, strings.Join(liveTypes, ","), per.String())
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	writeLivePaste(t, dir)
}

// vitrageConf is what every live Vitrage's config holds: the bus in vhost,
// vitrage-api on port without authentication, one worker each, the
// database db, the values in dir.
func vitrageConf(dir, vhost string, port int, db string) string {
	return fmt.Sprintf(`[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:5672/%[2]s
[api]
auth_mode = noauth
host = 127.0.0.1
port = %[3]d
paste_config = %[1]s/api-paste.ini
workers = 1
[evaluator]
workers = 1
[database]
connection = %[4]s
[entity_graph]
datasources_values_dir = %[1]s/values
`, dir, vhost, port, db)
}

// writeLivePaste writes dir/api-paste.ini: python3-vitrage ships none, and
// the noauth app alone is enough.
func writeLivePaste(t *testing.T, dir string) {
	t.Helper()
	paste := `[composite:vitrage+noauth]
use = egg:Paste#urlmap
/v1 = vitragev1

[app:vitragev1]
paste.app_factory = vitrage.api.app:app_factory
root = vitrage.api.controllers.v1.root.V1Controller
`
	if err := os.WriteFile(filepath.Join(dir, "api-paste.ini"), []byte(paste), 0o644); err != nil {
		t.Fatal(err)
	}
}

// liveProc is a Vitrage service in a process group of its own (vitrage-graph
// forks its workers).
type liveProc struct {
	name, log, out string
	cmd            *exec.Cmd
	exited         chan struct{}
}

func startLive(t *testing.T, name string, env []string, dir, conf string) *liveProc {
	t.Helper()
	p := &liveProc{name: name, log: filepath.Join(dir, name+".log"), out: filepath.Join(dir, name+".out"),
		exited: make(chan struct{})}
	out, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command("/usr/bin/"+name, "--config-file", conf, "--log-file", p.log)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); out.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s\n%s log:\n%s", name, liveTail(out.Name()), name, liveTail(p.log))
		}
	})
	return p
}

// alive fails the test when the service has exited.
func (p *liveProc) alive(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("%s exited: %v", p.name, p.cmd.ProcessState)
	default:
	}
}

// stop sends SIGTERM to the group, SIGKILL after 10 s, and checks that no
// process of the group is left (a worker outliving its master).
func (p *liveProc) stop(t *testing.T) {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not stop within 10 s of SIGTERM", p.name)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Errorf("%s left processes in group %d; killing them", p.name, pgid)
			syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startLiveAPI starts vitrage-api and waits until it listens. Its port is
// picked before it starts and bound seconds later, so another process may
// take it meanwhile: then it tries again on another port.
func startLiveAPI(t *testing.T, env []string, dir, conf string, setPort func(int)) (*liveProc, int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := liveFreePort(t)
		setPort(port)
		p := startLive(t, "vitrage-api", env, dir, conf)
		// werkzeug logs this once it has bound the port (a listener of
		// someone else's would answer a dial too).
		bound := []byte(fmt.Sprintf("Running on http://127.0.0.1:%d", port))
		deadline := time.Now().Add(60 * time.Second)
	wait:
		for {
			select {
			case <-p.exited:
				break wait
			case <-time.After(100 * time.Millisecond):
			}
			if b, _ := os.ReadFile(p.log); bytes.Contains(b, bound) {
				return p, port
			}
			if time.Now().After(deadline) {
				t.Fatalf("vitrage-api does not listen on 127.0.0.1:%d after 60 s", port)
			}
		}
		// werkzeug says so on stderr.
		if b, _ := os.ReadFile(p.out); attempt == 3 || !bytes.Contains(b, []byte("Address already in use")) {
			t.Fatalf("vitrage-api exited at start (port %d): %v", port, p.cmd.ProcessState)
		}
		t.Logf("vitrage-api: port %d taken meanwhile, trying another", port)
	}
}

// waitLive is waitFor for a condition that asks a Vitrage service: it is
// asked five times a second at the most.
func waitLive(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	waitFor(t, what, timeout, func() bool {
		if cond() {
			return true
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

// liveGraph is vitrage-api's topology: networkx node-link JSON.
type liveGraph struct {
	Nodes []liveNode `json:"nodes"`
	Links []struct {
		Source   int    `json:"source"`
		Target   int    `json:"target"`
		Relation string `json:"relationship_type"`
	} `json:"links"`
}

type liveNode map[string]any

func (n liveNode) str(k string) string { s, _ := n[k].(string); return s }

// getTopology asks vitrage-api for the whole graph, as an admin (noauth
// reads the roles from the headers).
func getTopology(url string) (liveGraph, error) {
	var g liveGraph
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(`{"all_tenants": true}`)))
	if err != nil {
		return g, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Roles", "admin")
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return g, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return g, err
	}
	if resp.StatusCode != http.StatusOK {
		return g, fmt.Errorf("topology: %s: %s", resp.Status, body)
	}
	return g, json.Unmarshal(body, &g)
}

func (g liveGraph) node(typ, id string) liveNode {
	for _, n := range g.Nodes {
		if n.str("vitrage_type") == typ && n.str("id") == id {
			return n
		}
	}
	return nil
}

func (g liveGraph) ids(typ string) []string {
	var out []string
	for _, n := range g.Nodes {
		if n.str("vitrage_type") == typ && n["vitrage_is_placeholder"] != true {
			out = append(out, n.str("id"))
		}
	}
	sort.Strings(out)
	return out
}

func (g liveGraph) nodeIndex(i int) string {
	for _, n := range g.Nodes {
		if idx, ok := n["graph_index"].(float64); ok && int(idx) == i {
			return n.str("vitrage_type") + ":" + n.str("id")
		}
	}
	return fmt.Sprintf("#%d", i)
}

func (g liveGraph) edges() []string {
	var out []string
	for _, l := range g.Links {
		out = append(out, g.nodeIndex(l.Source)+" -"+l.Relation+"-> "+g.nodeIndex(l.Target))
	}
	sort.Strings(out)
	return out
}

func (g liveGraph) edge(from, rel, to string) bool {
	want := from + " -" + rel + "-> " + to
	for _, e := range g.edges() {
		if e == want {
			return true
		}
	}
	return false
}

func liveTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return liveLast(string(b), 4000)
}

func liveLast(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
