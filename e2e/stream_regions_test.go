package e2e

// Several regions, one consumer: two sidecars (two databases) publish to two
// streams, and vitrage_synchronizer.stream.Regions merges them. An entity is
// (region, key): both sidecars list the same topology, so every key is in
// both regions and must stay two entities. Each region resumes at its own
// seq across a restart of the consumer: the changes made while it was
// stopped arrive once, none is lost or doubled.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

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
	pydir, err := filepath.Abs("python")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"python/tests/regions_consumer.py", state}
	for _, r := range []string{"one", "two"} {
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

// waitChanges collects events until region has delivered its change with
// seq through.
func (c *regionConsumer) waitChanges(t *testing.T, seen *[]regionEvent, through map[string]int64) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	done := func() bool {
		for r, s := range through {
			ok := false
			for _, e := range *seen {
				if e.Event == "change" && e.Region == r && e.Seq >= s {
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

func TestStreamRegionsMergedAndResumed(t *testing.T) {
	t.Parallel()
	type region struct {
		name, stream, topo string
		sc                 *sidecar
	}
	var regions []*region
	streams := map[string]string{}
	for _, name := range []string{"one", "two"} {
		dir := t.TempDir()
		r := &region{name: name, stream: amqptest.Name("e2e-region-" + name), topo: filepath.Join(dir, "topology.yaml")}
		amqptest.DeleteQueueAfter(t, r.stream)
		copyFile(t, "examples/topology.yaml", r.topo)
		r.sc = startSidecar(t, dir, `
collectors:
  - {name: topology, type: static, path: topology.yaml, interval: 100ms}
publishers:
  - {name: central, type: amqp-stream, urls: ["`+amqptest.Broker+`"], stream: `+r.stream+`, max_age: 1h}
`)
		regions = append(regions, r)
		streams[name] = r.stream
	}
	// sidecarStates is every region's entities as its own get_all has them.
	sidecarStates := func() map[string]string {
		out := map[string]string{}
		for _, r := range regions {
			for k, e := range r.sc.getAll(t) {
				out[r.name+"|"+k] = e.State
			}
		}
		return out
	}
	lastSeq := func(r *region) int64 {
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
	edit := func(r *region, old, new string) int64 {
		t.Helper()
		before := lastSeq(r)
		liveRewrite(t, r.topo, old, new)
		var last int64
		waitFor(t, "the edit in region "+r.name, 30*time.Second, func() bool {
			last = lastSeq(r)
			return last > before
		})
		return last
	}
	for _, r := range regions {
		lastSeq(r)
	}
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
	c.cmd.Process.Signal(syscall.SIGTERM)
	saved := c.next(t, "saved", &seen)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("consumer run 1: %v\n%s", err, c.stderr.String())
	}
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
	c.cmd.Process.Signal(syscall.SIGTERM)
	final := c.next(t, "saved", &seen)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("consumer run 2: %v", err)
	}
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
	b := readFile(t, state)
	var file struct {
		Regions map[string]struct {
			Seq      int64 `json:"seq"`
			Entities map[string]struct {
				State string `json:"state"`
			} `json:"entities"`
		} `json:"regions"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for r, st := range file.Regions {
		for k, e := range st.Entities {
			got[r+"|"+k] = e.State
		}
	}
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
