package e2e

// The amqp-stream publisher and its readers on other hosts: `watch
// --stream`; several regions, one consumer; replicas from a pruned log;
// and how long a replica takes to start (BenchmarkStreamReplicaStart, not
// run by make test).
//
// Several regions, one consumer: two sidecars (two databases) publish to two
// streams, and vitrage_synchronizer.stream.Regions merges them. An entity is
// (region, key): both sidecars list the same topology, so every key is in
// both regions and must stay two entities. Each region resumes at its own
// seq across a restart of the consumer: the changes made while it was
// stopped arrive once, none is lost or doubled.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// TestStreamPublisherByReload: publishers follow the config file as
// collectors do. One added by an edit publishes the log from its start; a
// bad edit keeps it running; moved to another stream it starts there from
// its cursor (nothing sent twice); removed, it stops.
func TestStreamPublisherByReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	s := topologySidecar(t, dir)
	s1, s2 := amqptest.Name("e2e-reload"), amqptest.Name("e2e-reload")
	amqptest.DeleteQueueAfter(t, s1)
	amqptest.DeleteQueueAfter(t, s2)
	entry := func(stream, extra string) string {
		return "publishers:\n  - {name: remote, type: amqp-stream, urls: [\"" + amqptest.Broker + "\"], stream: " + stream + extra + "}\ncollectors:"
	}
	var st struct {
		Config struct {
			LastError string `json:"last_error"`
		} `json:"config"`
		Publishers map[string]struct {
			Cursor int64  `json:"cursor"`
			Stream string `json:"stream"`
		} `json:"publishers"`
	}
	status := func() bool {
		// Unmarshal leaves what a status omits: start from nothing.
		st.Publishers, st.Config.LastError = nil, ""
		out, err := s.cli("status")
		return err == nil && json.Unmarshal([]byte(out), &st) == nil
	}
	rewriteFile(t, s.config, "collectors:", entry(s1, ""))
	waitFor(t, "the added publisher at 11", 20*time.Second, func() bool {
		return status() && st.Publishers["remote"].Cursor == 11
	})
	rewriteFile(t, s.config, "stream: "+s1+"}", "stream: "+s1+", window: 0}")
	waitFor(t, "the bad edit refused", 20*time.Second, func() bool {
		return status() && strings.Contains(st.Config.LastError, "window")
	})
	rewriteFile(t, s.config, "stream: "+s1+", window: 0}", "stream: "+s2+"}")
	waitFor(t, "the publisher on the second stream", 20*time.Second, func() bool {
		return status() && st.Config.LastError == "" && st.Publishers["remote"].Stream == s2
	})
	rewriteFile(t, topo, "state: SHUTOFF", "state: ERROR")
	w := startWatch(t, s, "--stream", amqptest.Broker, s2)
	if c := w.next(t); c.Seq != 12 || c.State != "ERROR" {
		t.Fatalf("the second stream's first change: %+v, want seq 12 (after the cursor)", c)
	}
	first := startWatch(t, s, "--stream", amqptest.Broker, s1)
	for i := int64(1); i <= 11; i++ {
		if c := first.next(t); c.Seq != i {
			t.Fatalf("first stream, change %d: %+v", i, c)
		}
	}
	rewriteFile(t, s.config, entry(s2, ""), "collectors:")
	waitFor(t, "the publisher removed", 20*time.Second, func() bool {
		return status() && len(st.Publishers) == 0
	})
}

// TestStreamPublisherAndWatchStream runs the real binary with an
// amqp-stream publisher and reads its stream with `watch --stream`, as a
// consumer on another host would.
func TestStreamPublisherAndWatchStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	copyFile(t, "examples/topology.yaml", topo)
	stream := amqptest.Name("e2e-stream")
	amqptest.DeleteQueueAfter(t, stream)
	s := startSidecar(t, dir, `
collectors:
  - {name: topology, type: static, path: topology.yaml, interval: 100ms}
publishers:
  - {name: remote, type: amqp-stream, urls: ["`+amqptest.Broker+`"], stream: `+stream+`, max_age: 1h}
`)
	var st struct {
		Publishers map[string]struct {
			Cursor    int64 `json:"cursor"`
			Lag       int64 `json:"lag"`
			Connected bool  `json:"connected"`
			Stream    string
		} `json:"publishers"`
	}
	waitFor(t, "the publisher's cursor at 11", 20*time.Second, func() bool {
		out, _ := s.cli("status", "-o", "json")
		return json.Unmarshal([]byte(out), &st) == nil && st.Publishers["remote"].Cursor == 11
	})
	if p := st.Publishers["remote"]; p.Lag != 0 || !p.Connected || p.Stream != stream {
		t.Errorf("status: %+v", p)
	}
	all := startWatch(t, s, "--stream", amqptest.Broker, stream)
	half := startWatch(t, s, "--stream", amqptest.Broker, stream, "--since", "5")
	for i := int64(1); i <= 11; i++ {
		if c := all.next(t); c.Seq != i || c.Action != "create" || c.Source != "topology" {
			t.Fatalf("from first, line %d: %+v", i, c)
		}
	}
	for i := int64(6); i <= 11; i++ {
		if c := half.next(t); c.Seq != i {
			t.Fatalf("--since 5: got seq %d, want %d", c.Seq, i)
		}
	}
	// A commit after the readers started reaches them through the stream.
	rewriteFile(t, topo, "state: SHUTOFF", "state: ERROR")
	for _, w := range []*watchProc{all, half} {
		if c := w.next(t); c.Seq != 12 || c.State != "ERROR" {
			t.Fatalf("after the edit: %+v", c)
		}
	}
	if !strings.Contains(all.stderr.String(), "watch: stream "+stream+": database ") {
		t.Errorf("stderr does not name the database: %q", all.stderr.String())
	}
	// The Python reader (Debian's python3 and python3-kombu) gets the same.
	for _, tc := range []struct {
		since    int
		first, n int64
	}{{-1, 1, 12}, {5, 6, 7}, {11, 12, 1}} {
		py := exec.Command("/usr/bin/python3", "-c", `
import sys, json
from vitrage_synchronizer.stream import StreamReader
for m in StreamReader(sys.argv[1], sys.argv[2], since=int(sys.argv[3]), idle_timeout=3):
    c = m.change
    assert c["seq"] == m.seq and m.database_id
    print(json.dumps(c))
`, amqptest.Broker, stream, strconv.Itoa(tc.since))
		py.Env = append(os.Environ(), "PYTHONPATH=python")
		out, err := py.Output()
		if err != nil {
			t.Fatalf("python reader since %d: %v\n%s", tc.since, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if int64(len(lines)) != tc.n {
			t.Fatalf("python reader since %d: %d lines, want %d:\n%s", tc.since, len(lines), tc.n, out)
		}
		for i, l := range lines {
			var c change
			if err := json.Unmarshal([]byte(l), &c); err != nil || c.Seq != tc.first+int64(i) {
				t.Fatalf("python reader since %d, line %d: %q", tc.since, i, l)
			}
		}
	}
}

type regionEvent struct {
	Event     string            `json:"event"`
	Region    string            `json:"region"`
	Seq       int64             `json:"seq"`
	Key       string            `json:"key"`
	Action    string            `json:"action"`
	State     string            `json:"state"`
	Entities  [][3]string       `json:"entities"`
	Positions map[string][2]any `json:"positions"`
	Resets    map[string]int    `json:"resets"`
	Error     string            `json:"error"`
}

// regionConsumer is a run of python/tests/regions_consumer.py.
type regionConsumer struct {
	cmd    *exec.Cmd
	events chan regionEvent
	stderr *logBuffer
}

func startRegionConsumer(t *testing.T, state string, regions map[string]string) *regionConsumer {
	t.Helper()
	pydir := pythonDir(t)
	args := []string{"python/tests/regions_consumer.py", state}
	var names []string
	for r := range regions {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		args = append(args, r+"="+amqptest.Broker+","+regions[r])
	}
	c := &regionConsumer{cmd: exec.Command("/usr/bin/python3", args...), events: make(chan regionEvent, 1000), stderr: &logBuffer{}}
	c.cmd.Env = append(os.Environ(), "PYTHONPATH="+pydir, "PYTHONDONTWRITEBYTECODE=1")
	c.cmd.Stderr = c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		if t.Failed() {
			t.Logf("consumer stderr:\n%s", liveLast(c.stderr.String(), 3000))
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e regionEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err == nil {
				c.events <- e
			}
		}
		close(c.events)
	}()
	return c
}

// next returns the next event of kind what, collecting the others.
func (c *regionConsumer) next(t *testing.T, what string, seen *[]regionEvent) regionEvent {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case e, ok := <-c.events:
			if !ok {
				t.Fatalf("consumer exited before %q: %v\n%s", what, c.cmd.Wait(), c.stderr.String())
			}
			if e.Event == "error" {
				t.Fatalf("consumer: %s", e.Error)
			}
			if e.Event == what {
				return e
			}
			*seen = append(*seen, e)
		case <-timeout:
			t.Fatalf("consumer: no %q after 60 s; got %+v", what, *seen)
		}
	}
}

// stop ends the consumer with SIGTERM and returns the "saved" event it
// writes on its way out, collecting the others.
func (c *regionConsumer) stop(t *testing.T, seen *[]regionEvent) regionEvent {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	saved := c.next(t, "saved", seen)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("consumer: %v\n%s", err, c.stderr.String())
	}
	return saved
}

// savedStates reads the consumer's saved state file: the state of each
// entity by "region|key".
func savedStates(t *testing.T, path string) map[string]string {
	t.Helper()
	var file struct {
		Regions map[string]struct {
			Entities map[string]struct {
				State string `json:"state"`
			} `json:"entities"`
		} `json:"regions"`
	}
	if err := json.Unmarshal(readFile(t, path), &file); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for r, st := range file.Regions {
		for k, e := range st.Entities {
			got[r+"|"+k] = e.State
		}
	}
	return got
}

// waitChanges collects events until each region has delivered its change
// with seq through (or a snapshot at or after it).
func (c *regionConsumer) waitChanges(t *testing.T, seen *[]regionEvent, through map[string]int64) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	done := func() bool {
		for r, s := range through {
			ok := false
			for _, e := range *seen {
				// A snapshot at or after s holds that change too.
				if (e.Event == "change" || e.Event == "snapshot") && e.Region == r && e.Seq >= s {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}
	for !done() {
		select {
		case e, ok := <-c.events:
			if !ok {
				t.Fatalf("consumer exited: %s", c.stderr.String())
			}
			*seen = append(*seen, e)
		case <-timeout:
			t.Fatalf("consumer: changes through %v not delivered after 60 s; got %+v", through, *seen)
		}
	}
}

// streamRegion is one region: a sidecar with a static topology and a
// publisher to a stream of its own.
type streamRegion struct {
	name, stream, topo string
	sc                 *sidecar
}

func startStreamRegion(t *testing.T, name string) *streamRegion {
	t.Helper()
	dir := t.TempDir()
	r := &streamRegion{name: name, stream: amqptest.Name("e2e-region-" + name), topo: filepath.Join(dir, "topology.yaml")}
	amqptest.DeleteQueueAfter(t, r.stream)
	copyFile(t, "examples/topology.yaml", r.topo)
	r.sc = startSidecar(t, dir, `
collectors:
  - {name: topology, type: static, path: topology.yaml, interval: 100ms}
publishers:
  - {name: central, type: amqp-stream, urls: ["`+amqptest.Broker+`"], stream: `+r.stream+`, max_age: 1h}
`)
	return r
}

// lastSeq waits until the publisher has published the change log and
// returns its last seq.
func (r *streamRegion) lastSeq(t *testing.T) int64 {
	t.Helper()
	var st struct {
		ChangeLog struct {
			LastSeq int64 `json:"last_seq"`
		} `json:"change_log"`
		Publishers map[string]struct {
			Cursor int64 `json:"cursor"`
		} `json:"publishers"`
	}
	var last int64
	waitFor(t, "region "+r.name+" published", 30*time.Second, func() bool {
		out, _ := r.sc.cli("status")
		if json.Unmarshal([]byte(out), &st) != nil || st.ChangeLog.LastSeq == 0 {
			return false
		}
		last = st.ChangeLog.LastSeq
		return st.Publishers["central"].Cursor == last
	})
	return last
}

// edit changes the topology file and returns the seq of the change once
// published.
func (r *streamRegion) edit(t *testing.T, old, new string) int64 {
	t.Helper()
	before := r.lastSeq(t)
	rewriteFileAtomic(t, r.topo, old, new)
	var last int64
	waitFor(t, "the edit in region "+r.name, 30*time.Second, func() bool {
		last = r.lastSeq(t)
		return last > before
	})
	return last
}

// states is each region's entities as its own get_all has them, by
// "region|key".
func regionStates(t *testing.T, regions ...*streamRegion) map[string]string {
	out := map[string]string{}
	for _, r := range regions {
		for k, e := range r.sc.getAll(t) {
			out[r.name+"|"+k] = e.State
		}
	}
	return out
}

func TestStreamRegionsMergedAndResumed(t *testing.T) {
	t.Parallel()
	regions := []*streamRegion{startStreamRegion(t, "one"), startStreamRegion(t, "two")}
	streams := map[string]string{}
	for _, r := range regions {
		streams[r.name] = r.stream
		r.lastSeq(t)
	}
	sidecarStates := func() map[string]string { return regionStates(t, regions...) }
	lastSeq := func(r *streamRegion) int64 { return r.lastSeq(t) }
	edit := func(r *streamRegion, old, new string) int64 { return r.edit(t, old, new) }
	state := filepath.Join(t.TempDir(), "consumer.json")

	// Run 1: each region from its stream's snapshot; the keys of the two
	// regions are the same and stay two entities each.
	c := startRegionConsumer(t, state, streams)
	var seen []regionEvent
	ready := c.next(t, "ready", &seen)
	want := sidecarStates()
	got := map[string]string{}
	for _, e := range ready.Entities {
		got[e[0]+"|"+e[1]] = e[2]
	}
	if len(want) != 22 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("merged view at start:\n got %v\nwant %v", got, want)
	}
	if got["one|nova.zone:nova"] == "" || got["two|nova.zone:nova"] == "" {
		t.Fatalf("the same key in both regions is not two entities: %v", got)
	}
	// Changes in both regions while it runs.
	through := map[string]int64{
		"one": edit(regions[0], "state: SHUTOFF", "state: ERROR"),
		"two": edit(regions[1], "state: DOWN", "state: ACTIVE"),
	}
	c.waitChanges(t, &seen, through)
	saved := c.stop(t, &seen)
	run1 := seen
	t.Logf("run 1 saved at %v", saved.Positions)

	// Stopped: region two changes twice, region one three times, so their
	// seqs part ways.
	edit(regions[0], "state: ERROR", "state: SHUTOFF")
	edit(regions[0], "state: in-use", "state: available")
	through["one"] = edit(regions[0], "state: DOWN", "state: ACTIVE")
	edit(regions[1], "state: SHUTOFF", "state: ERROR")
	through["two"] = edit(regions[1], "state: in-use", "state: error")

	// Run 2: resumes each region after its own seq, from the saved state.
	c = startRegionConsumer(t, state, streams)
	seen = nil
	c.next(t, "ready", &seen)
	c.waitChanges(t, &seen, through)
	// One more change per region after the resume.
	through = map[string]int64{
		"one": edit(regions[0], "state: ACTIVE\n", "state: PAUSED\n"),
		"two": edit(regions[1], "state: ACTIVE\n", "state: PAUSED\n"),
	}
	c.waitChanges(t, &seen, through)
	final := c.stop(t, &seen)
	for r, n := range final.Resets {
		if n != 0 {
			t.Errorf("run 2 took region %s from a snapshot again (%d resets), not from its seq", r, n)
		}
	}
	// Per region: run 1's snapshot, then every seq after it exactly once
	// over both runs, in order.
	for _, r := range regions {
		var snap int64 = -1
		var seqs []int64
		for _, e := range append(append([]regionEvent{}, run1...), seen...) {
			switch {
			case e.Region != r.name:
			case e.Event == "snapshot":
				if snap >= 0 {
					t.Errorf("region %s: a second snapshot at seq %d", r.name, e.Seq)
				}
				snap = e.Seq
			case e.Event == "change":
				seqs = append(seqs, e.Seq)
			}
		}
		last := lastSeq(r)
		if snap < 0 {
			t.Fatalf("region %s: no snapshot in run 1", r.name)
		}
		var wantSeqs []int64
		for s := snap + 1; s <= last; s++ {
			wantSeqs = append(wantSeqs, s)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(wantSeqs) {
			t.Errorf("region %s: changes delivered over both runs %v, want %v (snapshot at %d)", r.name, seqs, wantSeqs, snap)
		}
	}
	// The saved merged state is both regions' state.
	got = savedStates(t, state)
	want = sidecarStates()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		var diff []string
		for k, v := range want {
			if got[k] != v {
				diff = append(diff, fmt.Sprintf("%s: %q, want %q", k, got[k], v))
			}
		}
		sort.Strings(diff)
		t.Errorf("saved state differs from the sidecars':\n%s", strings.Join(diff, "\n"))
	}
}

// TestStreamRegionLostSeqTakesSnapshot: a region whose stream no longer
// holds the changes after the consumer's saved seq (here the stream was
// deleted and the sidecar's publisher made it again, with a snapshot) is
// taken from its newest snapshot; the other region resumes at its seq.
func TestStreamRegionLostSeqTakesSnapshot(t *testing.T) {
	t.Parallel()
	one, two := startStreamRegion(t, "one"), startStreamRegion(t, "two")
	streams := map[string]string{"one": one.stream, "two": two.stream}
	one.lastSeq(t)
	two.lastSeq(t)
	state := filepath.Join(t.TempDir(), "consumer.json")
	c := startRegionConsumer(t, state, streams)
	var seen []regionEvent
	c.next(t, "ready", &seen)
	c.stop(t, &seen)

	// While the consumer is stopped: a change in each region; region
	// two's stream is then lost and made again by its restarted sidecar
	// (a snapshot first, then the changes after it).
	through := map[string]int64{"one": one.edit(t, "state: SHUTOFF", "state: ERROR")}
	two.edit(t, "state: SHUTOFF", "state: ERROR")
	if err := two.sc.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := amqptest.Admin(t).QueueDelete(two.stream, false, false, false); err != nil {
		t.Fatal(err)
	}
	two.sc.start()
	through["two"] = two.edit(t, "state: DOWN", "state: ACTIVE")

	c = startRegionConsumer(t, state, streams)
	seen = nil
	c.next(t, "ready", &seen)
	c.waitChanges(t, &seen, through)
	final := c.stop(t, &seen)
	if final.Resets["one"] != 0 || final.Resets["two"] != 1 {
		t.Errorf("resets %v, want region two only", final.Resets)
	}
	var snaps []string
	for _, e := range seen {
		if e.Event == "snapshot" {
			snaps = append(snaps, e.Region)
		}
	}
	if fmt.Sprint(snaps) != "[two]" {
		t.Errorf("snapshots taken in run 2: %v, want [two]", snaps)
	}
	got := savedStates(t, state)
	if want := regionStates(t, one, two); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("saved state:\n got %v\nwant %v", got, want)
	}
	// The plain reader after the lost seq says so first (as watch --stream
	// does), then gives the changes the stream holds.
	py := exec.Command("/usr/bin/python3", "-c", `
import sys
from vitrage_synchronizer.stream import StreamReader
for m in StreamReader(sys.argv[1], sys.argv[2], since=11, idle_timeout=3):
    print(m.kind, m.seq, getattr(m, 'lost_from', 0), getattr(m, 'lost_through', 0))
`, amqptest.Broker, two.stream)
	pydir := pythonDir(t)
	py.Env = append(os.Environ(), "PYTHONPATH="+pydir)
	out, err := py.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) < 2 || lines[0] != "gap 12 12 12" || lines[len(lines)-1] != fmt.Sprintf("change %d 0 0", through["two"]) {
		t.Errorf("StreamReader after the lost seq 12: %v\n%s", err, out)
	}
}

// TestStreamReplicaFromPrunedLog: a sidecar whose change log was pruned
// before its publisher started writes a resync marker (generation 0), then
// a snapshot, then the rest, typically all in one stream chunk; the
// Python Replica must find that snapshot and hold the whole state.
func TestStreamReplicaFromPrunedLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	collectors := "changes_retention: {count: 5}\ncollectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 100ms}\n"
	sc := topologySidecarWith(t, dir, collectors)
	restart := func(config string) {
		if err := sc.stop(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sc.config, []byte("socket: s.sock\ndatabase: s.db\nsync: normal\n"+config), 0o644); err != nil {
			t.Fatal(err)
		}
		sc.start()
	}
	restart(collectors) // the pruner runs at start
	waitFor(t, "the pruner", 30*time.Second, func() bool {
		out, _ := sc.cli("status")
		return strings.Contains(out, `"first_seq": 7`)
	})
	stream := amqptest.Name("e2e-pruned")
	amqptest.DeleteQueueAfter(t, stream)
	restart(collectors + "publishers:\n  - {name: central, type: amqp-stream, urls: [\"" + amqptest.Broker + "\"], stream: " + stream + ", max_age: 1h}\n")
	r := &streamRegion{name: "one", stream: stream, topo: filepath.Join(dir, "topology.yaml"), sc: sc}
	r.lastSeq(t)
	pydir := pythonDir(t)
	py := exec.Command("/usr/bin/python3", "-c", `
import json, sys
from vitrage_synchronizer.stream import Replica
r = Replica(sys.argv[1], sys.argv[2]).start()
assert r.wait_ready(30), r.last_error
a = r.get_all()
print(json.dumps({'seq': a['seq'], 'keys': sorted(e['key'] for e in a['entities'])}))
`, amqptest.Broker, stream)
	py.Env = append(os.Environ(), "PYTHONPATH="+pydir)
	out, err := py.CombinedOutput()
	if err != nil {
		t.Fatalf("replica: %v\n%s", err, out)
	}
	var got struct {
		Seq  int64    `json:"seq"`
		Keys []string `json:"keys"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("replica printed %s", out)
	}
	var want []string
	for k := range sc.getAll(t) {
		want = append(want, k)
	}
	sort.Strings(want)
	if got.Seq != 11 || fmt.Sprint(got.Keys) != fmt.Sprint(want) {
		t.Errorf("replica state at seq %d: %v, want seq 11: %v", got.Seq, got.Keys, want)
	}
}

// TestStreamReplicaSnapshotInLastChunk: the messages of a stream published
// in one burst make one chunk, whose first message (what a consumer at
// "last" gets) is older than the snapshot inside it. The Replica must
// still find the snapshot.
func TestStreamReplicaSnapshotInLastChunk(t *testing.T) {
	t.Parallel()
	stream := amqptest.Name("e2e-chunk")
	amqptest.DeleteQueueAfter(t, stream)
	ch := amqptest.Admin(t)
	if _, err := ch.QueueDeclare(stream, true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const db = "0123456789abcdef0123456789abcdef"
	ent := func(id, state string) string {
		return fmt.Sprintf(`{"key":"nova.host:%s","type":"nova.host","id":"%s","name":"%s","state":"%s"}`, id, id, id, state)
	}
	change := func(seq int64, id, state string) amqp.Publishing {
		e := ent(id, state)
		return amqp.Publishing{Type: "change", Body: []byte(fmt.Sprintf(`{"seq":%d,"action":"update",%s`, seq, e[1:])),
			Headers: amqp.Table{"seq": seq, "database_id": db, "type": "nova.host", "generation": int64(1)}}
	}
	msgs := []amqp.Publishing{
		{Type: "resync", Body: []byte(`{}`), Headers: amqp.Table{"resync": true, "seq": int64(10), "database_id": db,
			"lost_from": int64(1), "lost_through": int64(10), "generation": int64(0)}},
		{Type: "snapshot-begin", Body: []byte(`{}`), Headers: amqp.Table{"seq": int64(10), "database_id": db, "generation": int64(1)}},
		{Type: "snapshot", Body: []byte("[" + ent("h1", "up") + "," + ent("h2", "up") + "]"),
			Headers: amqp.Table{"seq": int64(10), "database_id": db, "generation": int64(1), "part": int64(1), "entities": int64(2)}},
		{Type: "snapshot-end", Body: []byte(`{}`), Headers: amqp.Table{"seq": int64(10), "database_id": db, "generation": int64(1),
			"snapshot_seq": int64(12), "parts": int64(1), "entities": int64(2)}},
		change(11, "h2", "old"), // in the snapshot already
		change(13, "h1", "down"),
	}
	var last *amqp.DeferredConfirmation
	for _, m := range msgs {
		var err error
		if last, err = ch.PublishWithDeferredConfirmWithContext(context.Background(), "", stream, false, false, m); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := last.WaitContext(context.Background()); !ok || err != nil {
		t.Fatalf("not confirmed: %v", err)
	}
	pydir := pythonDir(t)
	py := exec.Command("/usr/bin/python3", "-c", `
import sys, time
from vitrage_synchronizer.stream import Replica, _Stream
s = _Stream(sys.argv[1], sys.argv[2])
print('last-chunk-starts-with', s.probe('last').kind)
s.close()
r = Replica(sys.argv[1], sys.argv[2]).start()
assert r.wait_ready(20), r.last_error
deadline = time.monotonic() + 20
while r.get_all()['seq'] < 13 and time.monotonic() < deadline:
    time.sleep(0.05)
a = r.get_all()
print(a['seq'], ' '.join(sorted('%s=%s' % (e['id'], e['state']) for e in a['entities'])))
`, amqptest.Broker, stream)
	py.Env = append(os.Environ(), "PYTHONPATH="+pydir)
	out, err := py.CombinedOutput()
	if err != nil {
		t.Fatalf("replica: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[len(lines)-1] != "13 h1=down h2=up" {
		t.Errorf("replica: %s", out)
	}
	t.Logf("%s", out)
}

// BenchmarkStreamReplicaStart: how long a consumer on another host takes to
// hold the whole state from the stream (vitrage_synchronizer.stream.Replica:
// connect, find the newest snapshot, read it, then get_all from memory),
// against get_all through the sidecar's socket (the Python client), for the
// same SYNC_BENCH_N instances (default 10,000), medians of 3, same run.
func BenchmarkStreamReplicaStart(b *testing.B) {
	n := 10000
	if v, err := fmt.Sscan(os.Getenv("SYNC_BENCH_N"), &n); v != 1 || err != nil {
		n = 10000
	}
	dir := b.TempDir()
	var topo strings.Builder
	topo.WriteString("metadata: {name: bench}\ndefinitions:\n  entities:\n")
	topo.WriteString("    - {static_id: h, type: nova.host, id: compute-1, name: compute-1, state: available}\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&topo, "    - {static_id: vm%d, type: nova.instance, id: %08d-1111-4000-8000-000000000000, name: vm-%d, state: ACTIVE, project: p, flavor: m1.small, image: cirros}\n", i, i, i)
	}
	topo.WriteString("  relationships:\n")
	if err := os.WriteFile(filepath.Join(dir, "topology.yaml"), []byte(topo.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	stream := amqptest.Name("bench-replica")
	amqptest.DeleteQueueAfter(b, stream)
	s := startSidecar(b, dir, "collectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 1h}\n"+
		"publishers:\n  - {name: remote, type: amqp-stream, urls: [\""+amqptest.Broker+"\"], stream: "+stream+", max_age: 1h}\n")
	waitFor(b, fmt.Sprintf("a snapshot of %d entities in the stream", n), 2*time.Minute, func() bool {
		var st struct {
			Publishers map[string]struct {
				Snapshot *struct {
					Entities int64 `json:"entities"`
				} `json:"snapshot"`
				Lag int64 `json:"lag"`
			} `json:"publishers"`
		}
		// A status that fails (the socket not there yet) is asked again.
		if out, err := s.cli("status"); err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		p := st.Publishers["remote"]
		return p.Snapshot != nil && p.Snapshot.Entities >= int64(n) && p.Lag == 0
	})
	pydir := pythonDir(b)
	py := exec.Command("/usr/bin/python3", "-c", `
import statistics, sys, time
from vitrage_synchronizer.client import Client
from vitrage_synchronizer.stream import Replica
sock, url, stream, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def sock_run():
    t0 = time.monotonic()
    got = len(Client(sock).get_all()['entities'])
    assert got == n + 1, got
    return time.monotonic() - t0
def stream_run():
    t0 = time.monotonic()
    r = Replica(url, stream).start()
    assert r.wait_ready(120)
    got = len(r.get_all()['entities'])
    r.stop()
    assert got == n + 1, got
    return time.monotonic() - t0
s = statistics.median(sock_run() for _ in range(3))
r = statistics.median(stream_run() for _ in range(3))
print('%.3f %.3f' % (s, r))
`, s.socket, amqptest.Broker, stream, fmt.Sprint(n))
	py.Env = append(os.Environ(), "PYTHONPATH="+pydir)
	b.ResetTimer()
	out, err := py.CombinedOutput()
	b.StopTimer()
	if err != nil {
		b.Fatalf("python: %v\n%s", err, out)
	}
	var sock, rep float64
	if _, err := fmt.Sscan(string(out), &sock, &rep); err != nil {
		b.Fatalf("python printed %q", out)
	}
	b.ReportMetric(rep, "stream-start-s")
	b.ReportMetric(sock, "socket-get_all-s")
	b.ReportMetric(rep/sock, "ratio")
	fmt.Printf("state of %d entities: from the stream (Replica: find the newest snapshot, read it, get_all) %.2f s; get_all through the socket %.2f s; ratio %.2f\n",
		n, rep, sock, rep/sock)
}
