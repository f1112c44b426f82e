package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/rpc"
	"github.com/openstack-synchronizer/synchronizer/rpc/rpctest"
)

// genConfig is an exec collector over testdata/gen.py with n entities whose
// state comes from the file "state" in dir.
func genConfig(t *testing.T, dir string, n int, interval string) string {
	t.Helper()
	wd, _ := os.Getwd()
	os.WriteFile(filepath.Join(dir, "state"), []byte("ACTIVE"), 0o644)
	return fmt.Sprintf(`
collectors:
  - name: gen
    type: exec
    command: ["/usr/bin/python3", %q, "%d", "state"]
    interval: %s
    timeout: 120s
    max_delete_ratio: 0
`, filepath.Join(wd, "testdata/gen.py"), n, interval)
}

// TestCrashDuringLargeSnapshot kills the sidecar with SIGKILL while it
// applies a large snapshot. After a restart the database is sound, and a
// consumer that resumes with changes --since gets every change it had not
// seen exactly once.
func TestCrashDuringLargeSnapshot(t *testing.T) {
	const n = 30000
	dir := t.TempDir()
	s := startSidecar(t, dir, genConfig(t, dir, n, "1h"))

	// A consumer follows the stream until the kill.
	c := s.client()
	var reg struct{ Seq int64 }
	if err := c.Call(context.Background(), "register", map[string]any{"since": 0}, &reg); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]string{}
	var last int64
	take := func(ch json.RawMessage) {
		var x change
		if err := json.Unmarshal(ch, &x); err != nil {
			t.Fatal(err)
		}
		if _, dup := seen[x.Seq]; dup {
			t.Fatalf("seq %d delivered twice", x.Seq)
		}
		if x.Seq != last+1 {
			t.Fatalf("gap: seq %d after %d", x.Seq, last)
		}
		seen[x.Seq] = x.Key
		last = x.Seq
	}
	for last < 5000 {
		select {
		case nt, ok := <-c.Notifications():
			if !ok {
				t.Fatalf("connection closed early: %v\n%s", c.Err(), s.log)
			}
			var p rpc.ChangeParams
			json.Unmarshal(nt.Params, &p)
			for _, ch := range p.Changes {
				take(ch)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("no changes\n%s", s.log)
		}
	}
	s.kill9()
	c.Close()
	if last >= n {
		t.Fatalf("the snapshot finished before the kill (%d changes): the test proves nothing", last)
	}

	out, err := exec.Command("sqlite3", s.db, "PRAGMA integrity_check; SELECT count(*) FROM changes; SELECT count(*) FROM baseline;").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok\n") {
		t.Fatalf("integrity after kill -9: %v\n%s", err, out)
	}
	t.Logf("killed after the consumer saw %d changes; database: %q", last, out)

	// Restart: the next poll applies the rest of the snapshot.
	s.start()
	for {
		out, err := s.cli("changes", "--since", strconv.FormatInt(last, 10), "--limit", "20000")
		if err != nil {
			t.Fatalf("changes --since %d: %v\n%s", last, err, out)
		}
		var res struct {
			Changes []json.RawMessage `json:"changes"`
			Seq     int64             `json:"seq"`
			More    bool              `json:"more"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		for _, ch := range res.Changes {
			take(ch)
		}
		if len(seen) >= n {
			break
		}
		if len(res.Changes) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	keys := map[string]bool{}
	for _, k := range seen {
		if keys[k] {
			t.Fatalf("key %s created twice", k)
		}
		keys[k] = true
	}
	if len(keys) != n {
		t.Fatalf("%d distinct keys, want %d", len(keys), n)
	}
	out2, _ := exec.Command("sqlite3", s.db, "PRAGMA integrity_check;").CombinedOutput()
	if strings.TrimSpace(string(out2)) != "ok" {
		t.Fatalf("integrity: %s", out2)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	s := startSidecar(t, dir, "collectors:\n  - {name: topology, type: static, path: topology.yaml}\n")
	// A well-behaved subscriber on its own connection, throughout.
	good := s.client()
	if err := good.Call(context.Background(), "register", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}

	bad := rpctest.Dial(t, s.socket)
	cases := []struct {
		name string
		line string
		code int
	}{
		{"not JSON", `{"jsonrpc": "2.0", "id": 1, "method": `, -32700},
		{"JSON but not a request", `[1, 2, 3]`, -32600},
		{"unknown method", `{"jsonrpc":"2.0","id":2,"method":"drop_tables","params":{}}`, -32601},
		{"wrong param type", `{"jsonrpc":"2.0","id":3,"method":"get_all","params":{"types":"nova.instance"}}`, -32602},
		{"wrong since type", `{"jsonrpc":"2.0","id":4,"method":"changes","params":{"since":"yesterday"}}`, -32602},
		{"changes without since", `{"jsonrpc":"2.0","id":5,"method":"changes","params":{}}`, -32602},
		{"since ahead of the log", `{"jsonrpc":"2.0","id":6,"method":"changes","params":{"since":999999}}`, -32001},
		{"collect unknown", `{"jsonrpc":"2.0","id":7,"method":"collect","params":{"name":"nope"}}`, -32004},
		{"unregister unknown", `{"jsonrpc":"2.0","id":8,"method":"unregister","params":{"subscription":"s999"}}`, -32004},
	}
	for _, tc := range cases {
		bad.Send(t, tc.line)
		if got := rpctest.Code(bad.Msg(t)); got != tc.code {
			t.Errorf("%s: error code %d, want %d", tc.name, got, tc.code)
		}
	}
	// A 10 MB line is refused without the server holding it, and the
	// connection goes on.
	big := `{"jsonrpc":"2.0","id":9,"method":"get_all","params":{"types":["` + strings.Repeat("x", 10<<20) + `"]}}`
	go func() {
		bad.Conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		bad.Conn.Write([]byte(big + "\n"))
	}()
	if got := rpctest.Code(bad.Msg(t)); got != -32600 {
		t.Errorf("10 MB line: code %d, want -32600", got)
	}
	bad.Send(t, `{"jsonrpc":"2.0","id":10,"method":"status","params":{}}`)
	if m := bad.Msg(t); m["result"] == nil {
		t.Errorf("status after bad input: %v", m)
	}
	// Everyone else was unaffected.
	var all struct{ Entities []json.RawMessage }
	if err := good.Call(context.Background(), "get_all", nil, &all); err != nil || len(all.Entities) != 11 {
		t.Fatalf("other client after bad input: %d entities, %v", len(all.Entities), err)
	}
	if s.cmd.ProcessState != nil {
		t.Fatal("sidecar died")
	}
}

// procKB is a field in kB of the process's /proc status (VmRSS, VmHWM), 0
// if it has none or is gone: tests also sample it from goroutines of their
// own, where they cannot fail.
func procKB(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	return 0
}

func rssKB(pid int) int { return procKB(pid, "VmRSS") }

// TestSlowSubscriber registers a client that never reads while many changes
// flow: the server's memory stays bounded, and the client, once it reads,
// finds a resync notification and the end of the connection.
func TestSlowSubscriber(t *testing.T) {
	const n = 10000
	dir := t.TempDir()
	cfg := "subscriber_queue: 2000\nwrite_timeout: 60s\n" + genConfig(t, dir, n, "1h")
	s := startSidecar(t, dir, cfg)
	waitFor(t, "first snapshot", 60*time.Second, func() bool {
		out, _ := s.cli("status")
		return strings.Contains(out, fmt.Sprintf(`"entities": %d`, n))
	})
	slow := rpctest.Dial(t, s.socket)
	slow.Send(t, `{"jsonrpc":"2.0","id":1,"method":"register","params":{}}`)
	if m := slow.Msg(t); m["result"] == nil {
		t.Fatalf("register: %v", m)
	}
	base := rssKB(s.cmd.Process.Pid)
	peak := base
	// Three rounds of every entity changing: 30k changes of ~1 KB against
	// a queue of 2000.
	for i, st := range []string{"SHUTOFF", "ACTIVE", "PAUSED"} {
		os.WriteFile(filepath.Join(dir, "state"), []byte(st), 0o644)
		out, err := s.cli("collect", "gen")
		if err != nil || !strings.Contains(out, fmt.Sprintf(`"updated": %d`, n)) {
			t.Fatalf("round %d: %v\n%s", i, err, out)
		}
		peak = max(peak, rssKB(s.cmd.Process.Pid))
	}
	// A fast subscriber registered now still works.
	fast := s.client()
	if err := fast.Call(context.Background(), "status", nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS before %d KB, peak %d KB", base, peak)
	if peak-base > 150*1024 {
		t.Errorf("RSS grew by %d KB with a subscriber that never reads", peak-base)
	}
	// Now read: notifications, then resync, then EOF.
	var resync bool
	for {
		slow.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := slow.R.ReadBytes('\n')
		if err != nil {
			break
		}
		var m struct{ Method string }
		json.Unmarshal(line, &m)
		if m.Method == "resync" {
			resync = true
		}
	}
	if !resync {
		t.Fatal("slow subscriber never got a resync notification")
	}
}

// TestRetention: with a change log bounded to 5 changes, a consumer whose
// since is older than the log gets -32001 and one inside the log gets the
// rest.
func TestRetention(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := topologySidecarWith(t, dir, "changes_retention: {count: 5}\ncollectors:\n  - {name: topology, type: static, path: topology.yaml}\n")
	// The pruner runs at start: restart to apply it now.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s.start()
	waitFor(t, "the pruner", 10*time.Second, func() bool {
		out, _ := s.cli("status")
		return strings.Contains(out, `"first_seq": 7`)
	})
	c := s.client()
	var res struct {
		Changes []json.RawMessage `json:"changes"`
		Seq     int64             `json:"seq"`
	}
	err := c.Call(context.Background(), "changes", map[string]any{"since": 1}, &res)
	if rpcCode(err) != rpc.CodeResyncNeeded {
		t.Fatalf("since 1 with a log of the last 5: %v", err)
	}
	if err := c.Call(context.Background(), "changes", map[string]any{"since": 6}, &res); err != nil || len(res.Changes) != 5 || res.Seq != 11 {
		t.Fatalf("since 6: %d changes, seq %d, %v", len(res.Changes), res.Seq, err)
	}
}
