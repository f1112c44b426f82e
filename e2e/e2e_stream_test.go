package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

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
	watch := func(args ...string) (<-chan change, *logBuffer) {
		w := exec.Command(binary, append([]string{"watch", "--stream", amqptest.Broker, stream}, args...)...)
		stdout, _ := w.StdoutPipe()
		stderr := &logBuffer{}
		w.Stderr = stderr
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Process.Kill(); w.Wait() })
		lines := make(chan change, 100)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var c change
				if json.Unmarshal(sc.Bytes(), &c) == nil {
					lines <- c
				}
			}
			close(lines)
		}()
		return lines, stderr
	}
	next := func(lines <-chan change) change {
		t.Helper()
		select {
		case c := <-lines:
			return c
		case <-time.After(20 * time.Second):
			t.Fatalf("watch --stream printed nothing")
		}
		return change{}
	}
	all, stderr := watch()
	half, _ := watch("--since", "5")
	for i := int64(1); i <= 11; i++ {
		if c := next(all); c.Seq != i || c.Action != "create" || c.Source != "topology" {
			t.Fatalf("from first, line %d: %+v", i, c)
		}
	}
	for i := int64(6); i <= 11; i++ {
		if c := next(half); c.Seq != i {
			t.Fatalf("--since 5: got seq %d, want %d", c.Seq, i)
		}
	}
	// A commit after the readers started reaches them through the stream.
	rewriteFile(t, topo, "state: SHUTOFF", "state: ERROR")
	for _, lines := range []<-chan change{all, half} {
		if c := next(lines); c.Seq != 12 || c.State != "ERROR" {
			t.Fatalf("after the edit: %+v", c)
		}
	}
	if !strings.Contains(stderr.String(), "watch: stream "+stream+": database ") {
		t.Errorf("stderr does not name the database: %q", stderr.String())
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
