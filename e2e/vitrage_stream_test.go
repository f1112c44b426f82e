package e2e

// The Vitrage datasources reading the sidecar's RabbitMQ stream instead of
// its socket (as a vitrage-graph on another host would): the same sidecar
// feeds one vitrage-graph through the socket and another through the
// stream, and vitrage-api must show the same graph, entity by entity, at
// start and after a server is stopped and then deleted at the fake cloud.
// The stream does not hold the change log from seq 1 (the log was pruned
// before the publisher started): the stream-fed graph is complete only
// through the snapshot the publisher writes into the stream.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

func TestVitrageLiveStream(t *testing.T) {
	start := time.Now()
	liveCheckDeps(t)
	dir := t.TempDir()
	const retention = "changes_retention: {count: 5}\n"
	sc, cloud := startLiveSidecar(t, dir, retention)
	collectors := retention + liveCollectors
	// The pruner runs at start: a restart keeps only the last 5 changes.
	restart := func(config string) {
		t.Helper()
		if err := sc.stop(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sc.config, []byte("socket: s.sock\ndatabase: s.db\nsync: normal\n"+config), 0o644); err != nil {
			t.Fatal(err)
		}
		sc.start()
	}
	restart(collectors)
	waitFor(t, "the pruner", 30*time.Second, func() bool {
		out, _ := sc.cli("status")
		var st struct {
			ChangeLog struct {
				FirstSeq int64 `json:"first_seq"`
			} `json:"change_log"`
		}
		return json.Unmarshal([]byte(out), &st) == nil && st.ChangeLog.FirstSeq > 5
	})
	stream := amqptest.Name("e2e-vitrage-stream")
	amqptest.DeleteQueueAfter(t, stream)
	restart(collectors + `publishers:
  - {name: remote, type: amqp-stream, urls: ["` + amqptest.Broker + `"], stream: ` + stream + `, max_age: 1h}
`)
	waitFor(t, "a snapshot in the stream after the resync marker", 30*time.Second, func() bool {
		out, _ := sc.cli("status")
		var st struct {
			Publishers map[string]struct {
				Resyncs  int64           `json:"resync_markers"`
				Snapshot json.RawMessage `json:"snapshot"`
				Lag      int64           `json:"lag"`
			} `json:"publishers"`
		}
		p := st.Publishers["remote"]
		return json.Unmarshal([]byte(out), &st) == nil && st.Publishers["remote"].Resyncs == 1 &&
			len(st.Publishers["remote"].Snapshot) > 0 && p.Lag == 0
	})

	// Two Vitrage deployments, each with a RabbitMQ virtual host of its own
	// (Vitrage's queue names are fixed): A reads the socket, B the stream
	// (its socket option names a path that does not exist).
	env := liveEnv(t)
	type deployment struct {
		name, dir string
		graph     *liveProc
		api       *liveProc
		url       string
	}
	deploy := func(name, extra, socket string) *deployment {
		d := &deployment{name: name, dir: filepath.Join(dir, name)}
		if err := os.MkdirAll(d.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		vhost := liveVhost(t)
		liveValuesDir(t, filepath.Join(d.dir, "values"))
		conf := filepath.Join(d.dir, "vitrage.conf")
		write := func(port int) {
			writeLiveConf(t, d.dir, conf, vhost, socket, port)
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(conf, []byte(strings.Replace(string(b), "[synchronizer]\n", "[synchronizer]\n"+extra, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(liveFreePort(t))
		if out, err := liveCommand(env, 60*time.Second, "/usr/bin/vitrage-dbsync", "--config-file", conf,
			"--log-file", filepath.Join(d.dir, "dbsync.log")); err != nil {
			t.Fatalf("%s: vitrage-dbsync: %v\n%s\n%s", name, err, out, liveTail(filepath.Join(d.dir, "dbsync.log")))
		}
		d.graph = startLive(t, "vitrage-graph", env, d.dir, conf)
		var port int
		d.api, port = startLiveAPI(t, env, d.dir, conf, write)
		d.url = fmt.Sprintf("http://127.0.0.1:%d/v1/topology", port)
		return d
	}
	socketDep := deploy("socket", "", sc.socket)
	streamDep := deploy("stream", fmt.Sprintf("stream_url = %s\nstream = %s\n", amqptest.Broker, stream),
		filepath.Join(dir, "no-such.sock"))
	deps := []*deployment{socketDep, streamDep}
	graphs := make([]liveGraph, 2)
	get := func() bool {
		for i, d := range deps {
			d.graph.alive(t)
			d.api.alive(t)
			g, err := getTopology(d.url)
			if err != nil {
				return false
			}
			graphs[i] = g
		}
		return true
	}
	var missing string
	deadline := time.Now().Add(180 * time.Second)
	for {
		missing = ""
		if !get() {
			missing = "vitrage-api does not answer"
		}
		for i, g := range graphs {
			for _, n := range [][2]string{{"nova.instance", liveServer}, {"switch", "tor-1"}, {"heat.stack", liveStack}} {
				if missing == "" && g.node(n[0], n[1]) == nil {
					missing = fmt.Sprintf("%s:%s not in the %s graph (%d vertices)", n[0], n[1], deps[i].name, len(g.Nodes))
				}
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 180 s: %s", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("both graphs up: %.1f s since the test started", time.Since(start).Seconds())
	// The graphs converge once every datasource's first snapshot is in.
	sameOrFail := func(what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if get() {
				d := graphDiff(graphs[0], graphs[1])
				if d == "" {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: the socket's and the stream's graphs differ:\n%s", what, d)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	sameOrFail("at start")
	n := len(graphNodes(graphs[1]))
	if n < 15 {
		t.Fatalf("the stream's graph has only %d vertices: %v", n, graphNodes(graphs[1]))
	}
	t.Logf("the same graph through the socket and the stream: %d vertices, %d edges", n, len(graphs[1].edges()))

	// A server stopped, then deleted, at the fake cloud reaches both.
	changed := time.Now()
	if !cloud.SetServerStatus(liveServer, "SHUTOFF") {
		t.Fatalf("fake cloud: no server %s", liveServer)
	}
	waitGraphs := func(what string, cond func(g liveGraph) string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var why []string
			if !get() {
				why = append(why, "vitrage-api does not answer")
			} else {
				for i, g := range graphs {
					if w := cond(g); w != "" {
						why = append(why, deps[i].name+": "+w)
					}
				}
			}
			if len(why) == 0 {
				return
			}
			if time.Now().After(deadline) {
				out, _ := sc.cli("get-all", "--type", "nova.instance")
				t.Fatalf("after 60 s waiting for %s: %s\nthe sidecar's instances: %s", what, strings.Join(why, "; "), out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitGraphs("the stopped server in both graphs", func(g liveGraph) string {
		if s := g.node("nova.instance", liveServer); s == nil || s.str("state") != "SHUTOFF" {
			return fmt.Sprintf("server %v", s)
		}
		return ""
	})
	t.Logf("stop in both graphs after %.1f s", time.Since(changed).Seconds())
	sameOrFail("after the stop")
	changed = time.Now()
	if !cloud.Remove("servers", liveServer) {
		t.Fatalf("fake cloud: could not remove %s", liveServer)
	}
	waitGraphs("the deleted server to leave both graphs", func(g liveGraph) string {
		if s := g.node("nova.instance", liveServer); s != nil || g.node("nova.instance", liveVM) == nil {
			return fmt.Sprintf("server %v, other instance present %v", s, g.node("nova.instance", liveVM) != nil)
		}
		return ""
	})
	t.Logf("delete in both graphs after %.1f s", time.Since(changed).Seconds())
	sameOrFail("after the delete")
}

// graphFields are the vertex fields compared between two graphs: all but
// those Vitrage makes per process (ids, indexes, its own timestamps).
var graphFields = []string{"name", "state", "vitrage_category", "vitrage_type", "id", "project_id",
	"vitrage_operational_state", "vitrage_aggregated_state", "vitrage_is_placeholder",
	"vitrage_is_deleted", "vitrage_datasource_name", "is_real_vitrage_id", "host_id", "status"}

// graphNodes is each vertex's compared fields by type:id.
func graphNodes(g liveGraph) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, n := range g.Nodes {
		f := map[string]any{}
		for _, k := range graphFields {
			if v, ok := n[k]; ok {
				f[k] = v
			}
		}
		out[n.str("vitrage_type")+":"+n.str("id")] = f
	}
	return out
}

// graphDiff says how b differs from a, "" when not at all.
func graphDiff(a, b liveGraph) string {
	var out []string
	na, nb := graphNodes(a), graphNodes(b)
	for k, fa := range na {
		fb, ok := nb[k]
		switch {
		case !ok:
			out = append(out, "only through the socket: "+k)
		case !reflect.DeepEqual(fa, fb):
			out = append(out, fmt.Sprintf("%s: socket %v, stream %v", k, fa, fb))
		}
	}
	for k := range nb {
		if _, ok := na[k]; !ok {
			out = append(out, "only through the stream: "+k)
		}
	}
	ea, eb := map[string]bool{}, map[string]bool{}
	for _, e := range a.edges() {
		ea[e] = true
	}
	for _, e := range b.edges() {
		eb[e] = true
		if !ea[e] {
			out = append(out, "edge only through the stream: "+e)
		}
	}
	for e := range ea {
		if !eb[e] {
			out = append(out, "edge only through the socket: "+e)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
