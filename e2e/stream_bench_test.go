package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

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
	conf := "socket: s.sock\ndatabase: s.db\nsync: normal\ncollectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 1h}\n" +
		"publishers:\n  - {name: remote, type: amqp-stream, urls: [\"" + amqptest.Broker + "\"], stream: " + stream + ", max_age: 1h}\n"
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", filepath.Join(dir, "config.yaml"))
	log := &logBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _ := exec.Command(binary, "status", "--socket", filepath.Join(dir, "s.sock")).Output()
		var st struct {
			Publishers map[string]struct {
				Snapshot *struct {
					Entities int64 `json:"entities"`
				} `json:"snapshot"`
				Lag int64 `json:"lag"`
			} `json:"publishers"`
		}
		if json.Unmarshal(out, &st) == nil {
			if p := st.Publishers["remote"]; p.Snapshot != nil && p.Snapshot.Entities >= int64(n) && p.Lag == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("no snapshot of %d entities in the stream after 2 min:\n%s", n, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
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
`, filepath.Join(dir, "s.sock"), amqptest.Broker, stream, fmt.Sprint(n))
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
