package e2e

// Real Vitrage fed from the real test cloud: the synchronizer binary, with
// the package's configuration (packaging/config.yaml, its example collector
// and bus listener switched on for the test cloud), polls Keystone, Nova,
// Neutron, Cinder and Heat and reads Nova's notifications; Debian's
// vitrage-graph loads our datasources (python/vitrage_synchronizer) with
// their defaults, and vitrage-api shows the graph.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/openstack/testcloud"
)

// realTypes are the datasources Vitrage loads from our package here.
var realTypes = []string{"nova.zone", "nova.host", "nova.instance", "neutron.network",
	"neutron.port", "cinder.volume", "heat.stack"}

// TestRealCloudVitrage: a server created through Nova's API appears in
// Vitrage's topology API, stopped through Nova's API it shows SHUTOFF there,
// deleted it leaves, with the synchronizer and the datasources running
// their package defaults.
func TestRealCloudVitrage(t *testing.T) {
	start := time.Now()
	liveCheckDeps(t)
	c := testcloud.Start(t)
	sc := startPackagedSidecar(t, c)
	v := startRealVitrage(t, c, "ours", sc.socket)
	t.Logf("sidecar, vitrage-graph and vitrage-api up: %.1f s since the test started", time.Since(start).Seconds())

	srv := c.CreateServer(t, testcloud.Name("vitrage"), "")
	t.Cleanup(func() { _ = c.Do("DELETE", "compute:/servers/"+srv, nil, nil) })
	c.WaitServer(t, srv, "ACTIVE")
	step := time.Now()
	v.wait(t, "the new server ACTIVE in Vitrage's topology", 90*time.Second, func(g liveGraph) bool {
		n := g.node("nova.instance", srv)
		return n != nil && n.str("state") == "ACTIVE" && g.edge("nova.host:"+c.ComputeHost, "contains", "nova.instance:"+srv)
	})
	t.Logf("create: in Vitrage %.1f s after Nova showed it ACTIVE", time.Since(step).Seconds())

	c.ServerAction(t, srv, "os-stop")
	step = time.Now()
	v.wait(t, "the stopped server SHUTOFF in Vitrage's topology", 60*time.Second, func(g liveGraph) bool {
		n := g.node("nova.instance", srv)
		return n != nil && n.str("state") == "SHUTOFF"
	})
	t.Logf("stop: SHUTOFF in Vitrage %.1f s after the stop's 202", time.Since(step).Seconds())
	c.WaitServer(t, srv, "SHUTOFF")

	c.DeleteServer(t, srv)
	step = time.Now()
	v.wait(t, "the deleted server to leave Vitrage's topology", 60*time.Second, func(g liveGraph) bool {
		return g.node("nova.instance", srv) == nil && g.node("nova.host", c.ComputeHost) != nil
	})
	t.Logf("delete: gone from Vitrage %.1f s after Nova lists it no more; whole test %.1f s",
		time.Since(step).Seconds(), time.Since(start).Seconds())
}

// startPackagedSidecar runs the binary with packaging/config.yaml: its
// paths moved into a temporary directory, its example openstack collector
// and amqp listener switched on for the test cloud (a queue of the test's
// own that expires 10 minutes after it), nothing else changed.
func startPackagedSidecar(t *testing.T, c *testcloud.Cloud) *sidecar {
	t.Helper()
	dir := t.TempDir()
	clouds := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(clouds, []byte(c.CloudsYAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("packaging", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	sub := func(old, new string) {
		t.Helper()
		re := regexp.MustCompile(old)
		if !re.MatchString(text) {
			t.Fatalf("packaging/config.yaml has no %q any more: update this test", old)
		}
		text = re.ReplaceAllString(text, new)
	}
	sub(`(?m)^socket: .*$`, "socket: s.sock")
	sub(`(?m)^database: .*$`, "database: s.db")
	sub(`(?m)^socket_group: .*\n`, "") // the test's user need not be in it
	sub(`(?m)^collectors: \[\]\n`, "")
	collector := uncommentBlock(t, text, "#collectors:\n", "#  - name: nagios")
	collector = strings.Replace(collector, "cloud: mycloud", "cloud: testcloud", 1)
	collector = regexp.MustCompile(`clouds_file: .*`).ReplaceAllString(collector, "clouds_file: "+clouds)
	listener := uncommentBlock(t, text, "#listeners:\n", "")
	listener = regexp.MustCompile(`urls: .*`).ReplaceAllString(listener, fmt.Sprintf("urls: [%q]", c.AMQPURL))
	listener = regexp.MustCompile(`queue: .*`).ReplaceAllString(listener,
		"queue: "+amqptest.Name("vitrage")+"\n    queue_expires: 10m")
	text += "\n" + collector + listener
	s := &sidecar{t: t, dir: dir, config: filepath.Join(dir, "config.yaml"),
		socket: filepath.Join(dir, "s.sock"), db: filepath.Join(dir, "s.db")}
	if err := os.WriteFile(s.config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("config:\n%s\nsynchronizer log:\n%s", text, liveLast(s.log.String(), 3000))
		}
	})
	s.start()
	waitConnected(t, s.client())
	waitFor(t, "the first poll of the cloud", 90*time.Second, func() bool { return cloudStatus(t, s).Polls > 0 })
	return s
}

// uncommentBlock returns the commented lines after the line from, up to
// the line that starts with until (or the first line that is no comment),
// without their "#".
func uncommentBlock(t *testing.T, text, from, until string) string {
	t.Helper()
	i := strings.Index(text, from)
	if i < 0 {
		t.Fatalf("packaging/config.yaml has no %q any more: update this test", from)
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(text[i:], "\n") {
		if !strings.HasPrefix(line, "#") || (until != "" && strings.HasPrefix(line, until)) {
			break
		}
		if l := strings.TrimPrefix(line, "#"); !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out.WriteString(l)
		}
	}
	return out.String()
}

// realVitrage is a vitrage-graph and a vitrage-api of one test.
type realVitrage struct {
	name  string
	graph *liveProc
	api   *liveProc
	url   string
}

// startRealVitrage starts Vitrage on a RabbitMQ vhost of its own. kind
// "ours" loads our datasources with their defaults over the sidecar at
// socket; "stock" runs Vitrage's own nova.zone, nova.host and
// nova.instance drivers: they list through Keystone with the cloud's
// admin as service credentials and read Nova's versioned notifications on
// topic vitrage_notifications from the cloud's own vhost.
func startRealVitrage(t *testing.T, c *testcloud.Cloud, kind, socket string) *realVitrage {
	t.Helper()
	dir := t.TempDir()
	vhost := liveVhost(t)
	values := filepath.Join(dir, "values")
	liveValuesDir(t, values)
	conf := filepath.Join(dir, "vitrage.conf")
	var ds string
	switch kind {
	case "ours", "ours-poll":
		ds = fmt.Sprintf(`[datasources]
types = %s
path = vitrage_synchronizer.datasources,vitrage.datasources
snapshots_interval = 600
[synchronizer]
socket = %s
state_dir = %s/state
`, strings.Join(realTypes, ","), socket, dir)
		if kind == "ours-poll" {
			// Before the wait: get_changes every 10 s, returning at once.
			ds += "changes_wait = 0\n"
			for _, typ := range realTypes {
				ds += "[" + typ + "]\nchanges_interval = 10\n"
			}
		}
	case "stock":
		topic := ""
		if !novaNotifiesVitrage(t, c) {
			// A cloud started before testcloud.py added the topic: the
			// same notifications, read where Nova sends them anyway.
			topic = "notification_topics = versioned_notifications\nnotification_exchange = nova\n"
			t.Logf("the cloud's nova.conf has no vitrage_notifications topic (started by an older testcloud.py): stock Vitrage reads versioned_notifications on exchange nova")
		}
		ds = fmt.Sprintf(`[datasources]
types = nova.zone,nova.host,nova.instance
snapshots_interval = 600
%s[oslo_messaging_notifications]
transport_url = %s
[service_credentials]
auth_type = password
auth_url = %s
username = %s
password = %s
project_name = %s
user_domain_name = %s
project_domain_name = %s
region_name = %s
interface = public
`, topic, strings.Replace(c.AMQPURL, "amqp://", "rabbit://", 1), c.AuthURL, c.Username, c.Password,
			c.ProjectName, c.UserDomainName, c.ProjectDomainName, c.Region)
	default:
		t.Fatalf("startRealVitrage: kind %q", kind)
	}
	db := realVitrageDB(t)
	write := func(port int) {
		text := vitrageConf(dir, vhost, port, db) + ds
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		writeLivePaste(t, dir)
	}
	write(0)
	env := liveEnv(t)
	if out, err := liveCommand(env, 60*time.Second, "/usr/bin/vitrage-dbsync", "--config-file", conf,
		"--log-file", filepath.Join(dir, "dbsync.log")); err != nil {
		t.Fatalf("vitrage-dbsync: %v\n%s\n%s", err, out, liveTail(filepath.Join(dir, "dbsync.log")))
	}
	v := &realVitrage{name: kind}
	v.graph = startLive(t, "vitrage-graph", env, dir, conf)
	var port int
	v.api, port = startLiveAPI(t, env, dir, conf, write)
	v.url = fmt.Sprintf("http://127.0.0.1:%d/v1/topology", port)
	v.wait(t, kind+" Vitrage's first topology with the compute host", 120*time.Second, func(g liveGraph) bool {
		return g.node("nova.host", c.ComputeHost) != nil
	})
	return v
}

// topology reads the graph; it fails the test if a service has exited.
func (v *realVitrage) topology(t *testing.T) (liveGraph, error) {
	t.Helper()
	v.graph.alive(t)
	v.api.alive(t)
	return getTopology(v.url)
}

func (v *realVitrage) wait(t *testing.T, what string, timeout time.Duration, cond func(liveGraph) bool) {
	t.Helper()
	waitLive(t, what, timeout, func() bool {
		g, err := v.topology(t)
		return err == nil && cond(g)
	})
}

// realVitrageDB makes a MariaDB database for one Vitrage, dropped at the
// end: on SQLite, vitrage-graph's event log fails every insert (its BIGINT
// key does not autoincrement there) and keeps the failed rows, so each
// event costs more than the one before.
func realVitrageDB(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "synctest_vitrage_" + hex.EncodeToString(b)
	mysql := func(stmt string) {
		t.Helper()
		if out, err := liveCommand(nil, 60*time.Second, "mysql", "-h", "127.0.0.1", "-u", "root", "-e", stmt); err != nil {
			t.Fatalf("mysql %q: %v\n%s", stmt, err, out)
		}
	}
	mysql("CREATE DATABASE " + name + " CHARACTER SET utf8")
	t.Cleanup(func() { mysql("DROP DATABASE " + name) })
	return "mysql+pymysql://root@127.0.0.1:3306/" + name + "?charset=utf8"
}

// novaNotifiesVitrage reports whether the running cloud's Nova also sends
// its versioned notifications on topic vitrage_notifications.
func novaNotifiesVitrage(t *testing.T, c *testcloud.Cloud) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.StateDir, "etc", "nova.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`(?m)^versioned_notifications_topics = .*vitrage_notifications`).Match(b)
}
