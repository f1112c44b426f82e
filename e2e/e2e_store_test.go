package e2e

// The database's files and identity through the real binary: the lock file,
// file modes, the database id, seqs after a lost -wal, and a corrupt file.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/rpc"
	"github.com/openstack-synchronizer/synchronizer/rpc/rpctest"
)

const topologyConfig = "collectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 100ms}\n"

// topologySidecar starts a sidecar in dir (a temporary one when "") on the
// example topology, polled every 100ms, and waits for its 11 entities.
func topologySidecar(t *testing.T, dir string) *sidecar {
	t.Helper()
	return topologySidecarWith(t, dir, topologyConfig)
}

// topologySidecarWith is topologySidecar on config, whose static collector
// reads topology.yaml.
func topologySidecarWith(t *testing.T, dir, config string) *sidecar {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	s := startSidecar(t, dir, config)
	s.waitEntities(11)
	return s
}

// waitEntities waits until status counts n entities.
func (s *sidecar) waitEntities(n int) {
	s.t.Helper()
	want := fmt.Sprintf(`"entities": %d`, n)
	waitFor(s.t, fmt.Sprintf("%d entities", n), 10*time.Second, func() bool {
		out, _ := s.cli("status")
		return strings.Contains(out, want)
	})
}

// serveFails runs serve on config in dir and returns its output; it must
// exit with an error.
func serveFails(t *testing.T, dir, config string) string {
	t.Helper()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("socket: s.sock\ndatabase: s.db\n"+config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--config", cfg).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve did not fail (err %v)\n%s", err, out)
	}
	return string(out)
}

// TestLockFileSymlinkIsRefused: a symlink planted at the lock file's path
// is never followed: the synchronizer refuses to start and the target
// keeps its contents.
func TestLockFileSymlinkIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep me\n"), 0o600)
	if err := os.Symlink(victim, filepath.Join(dir, "s.db.lock")); err != nil {
		t.Fatal(err)
	}
	out := serveFails(t, dir, "")
	if b, _ := os.ReadFile(victim); string(b) != "keep me\n" {
		t.Fatalf("the symlink's target now holds %q", b)
	}
	if !strings.Contains(out, "symlink") {
		t.Fatalf("the refusal does not say why:\n%s", out)
	}
	// A file that is not a lock file is refused as well, and kept.
	os.Remove(filepath.Join(dir, "s.db.lock"))
	os.WriteFile(filepath.Join(dir, "s.db.lock"), []byte("someone else's data\n"), 0o600)
	out = serveFails(t, dir, "")
	if b, _ := os.ReadFile(filepath.Join(dir, "s.db.lock")); string(b) != "someone else's data\n" {
		t.Fatalf("a foreign lock file was overwritten with %q", b)
	}
	if !strings.Contains(out, "not a synchronizer lock file") {
		t.Fatalf("the refusal does not say why:\n%s", out)
	}
}

// TestDatabaseFileModes: under umask 022, the database, -wal, -shm, lock
// and seq mark files are created 0600, like the socket.
func TestDatabaseFileModes(t *testing.T) {
	t.Parallel()
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	s := topologySidecar(t, "")
	for _, f := range []string{s.db, s.db + "-wal", s.db + "-shm", s.db + ".lock", s.db + ".seq", s.socket} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
}

// rpcCode is the JSON-RPC error code of err, 0 if it is none.
func rpcCode(err error) int64 {
	var re *rpc.Error
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

// TestDatabaseID: register, changes and get_all return the database id and
// status shows it. A since that comes with another database's id, or that
// is ahead of the log, gets the resync error, also after the database was
// replaced and the new log has grown past that since.
func TestDatabaseID(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := topologySidecar(t, dir)
	c := s.client()
	ctx := context.Background()
	var st struct {
		DatabaseID string `json:"database_id"`
	}
	if err := c.Call(ctx, "status", nil, &st); err != nil {
		t.Fatal(err)
	}
	id := st.DatabaseID
	if len(id) != 32 {
		t.Fatalf("status database_id %q", id)
	}
	var all struct {
		Seq        int64  `json:"seq"`
		DatabaseID string `json:"database_id"`
	}
	if err := c.Call(ctx, "get_all", map[string]any{"database_id": "whatever"}, &all); err != nil || all.DatabaseID != id {
		t.Fatalf("get_all: %+v, %v", all, err)
	}
	var ch struct {
		DatabaseID string `json:"database_id"`
	}
	if err := c.Call(ctx, "changes", map[string]any{"since": 0, "database_id": id}, &ch); err != nil || ch.DatabaseID != id {
		t.Fatalf("changes: %+v, %v", ch, err)
	}
	var reg rpc.RegisterResult
	if err := c.Call(ctx, "register", rpc.Position{DatabaseID: id, Seq: 3}.Params(nil), &reg); err != nil || reg.DatabaseID != id {
		t.Fatalf("register: %+v, %v", reg, err)
	}
	other := strings.Repeat("0", 32)
	for _, call := range []struct {
		method string
		params map[string]any
	}{
		{"changes", map[string]any{"since": 1, "database_id": other}},
		{"register", map[string]any{"since": 1, "database_id": other}},
		{"changes", map[string]any{"since": all.Seq + 1000, "database_id": id}},
		{"register", map[string]any{"since": all.Seq + 1000}},
	} {
		if err := c.Call(ctx, call.method, call.params, nil); rpcCode(err) != rpc.CodeResyncNeeded {
			t.Errorf("%s %v: %v, want code %d", call.method, call.params, err, rpc.CodeResyncNeeded)
		}
	}

	// The database is replaced (moved aside): a new id, and the old since,
	// though inside the new log, is refused.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	for _, suf := range []string{"", "-wal", "-shm", ".seq"} {
		os.Rename(s.db+suf, filepath.Join(dir, "old.db"+suf))
	}
	s.start()
	s.waitEntities(11)
	c2 := s.client()
	if err := c2.Call(ctx, "status", nil, &st); err != nil || st.DatabaseID == id || len(st.DatabaseID) != 32 {
		t.Fatalf("after replacing the database: id %q (was %q), %v", st.DatabaseID, id, err)
	}
	out, err := s.cli("changes", "--since", "3", "--database-id", id)
	if err == nil || !strings.Contains(out, "-32001") {
		t.Fatalf("changes --since 3 with the old id: %v\n%s", err, out)
	}
	if out, err := s.cli("changes", "--since", "3", "--database-id", st.DatabaseID); err != nil {
		t.Fatalf("changes with the new id: %v\n%s", err, out)
	}
}

// TestWatchResyncsAcrossAReplacedDatabase: cli watch keeps the database id
// with its seq. When the synchronizer comes back with another database,
// watch does not go on from its old seq in the new log (which would skip
// or repeat changes): it is told to resync and says so.
func TestWatchResyncsAcrossAReplacedDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := topologySidecar(t, dir)
	w := exec.Command(binary, "watch", "--socket", s.socket, "--since", "0")
	stdout, _ := w.StdoutPipe()
	var stderr logBuffer
	w.Stderr = &stderr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Process.Kill()
	var printed atomic.Int64
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			printed.Add(1)
		}
	}()
	waitFor(t, "11 lines", 15*time.Second, func() bool { return printed.Load() == 11 })
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	for _, suf := range []string{"", "-wal", "-shm", ".seq"} {
		os.Remove(s.db + suf)
	}
	s.start()
	waitFor(t, "watch to be told to resync", 15*time.Second, func() bool {
		return strings.Contains(stderr.String(), "-32001") && strings.Contains(stderr.String(), "database_id")
	})
	// Then it follows the new database from its current state.
	waitFor(t, "the new database's id", 15*time.Second, func() bool {
		return strings.Count(stderr.String(), "watch: database ") == 2
	})
}

// TestSeqsNeverGoBackAfterALostWAL: kill -9 under load, delete the -wal
// file, restart. The database lost its last commits, but seqs continue
// above every seq a client saw, a client that saw a lost seq is told to
// resync, and one that saw only what survived goes on.
func TestSeqsNeverGoBackAfterALostWAL(t *testing.T) {
	// A reader pins the WAL (lostWALAttempt), so the first attempt loses
	// commits with the -wal; the others are for a damaged file, which a
	// kill in the middle of a checkpoint can leave.
	const n = 3000
	for attempt := 1; attempt <= 6; attempt++ {
		if lostWALAttempt(t, n, attempt) {
			return
		}
	}
	t.Fatal("no attempt lost any commit with the -wal: the test proves nothing")
}

func lostWALAttempt(t *testing.T, n, attempt int) bool {
	dir := t.TempDir()
	s := startSidecar(t, dir, genConfig(t, dir, n, "100ms"))
	defer s.stop()
	c := s.client()
	ctx := context.Background()
	var reg rpc.RegisterResult
	if err := c.Call(ctx, "register", map[string]any{"since": 0}, &reg); err != nil {
		t.Fatal(err)
	}
	id := reg.DatabaseID
	// Every poll changes every entity.
	stop := make(chan struct{})
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			os.WriteFile(filepath.Join(dir, "state"), []byte([]string{"ACTIVE", "SHUTOFF"}[i%2]), 0o644)
		}
	}()
	defer func() { close(stop); <-flipped }()
	// A reader holding an old snapshot (an operator's sqlite3 shell in a
	// transaction) keeps the checkpointer from copying what is committed
	// after it: those commits are then only in the -wal, whatever the
	// machine's speed. The shell is killed with the sidecar, so neither
	// checkpoints on close.
	var shell *exec.Cmd
	defer func() {
		if shell != nil {
			shell.Process.Kill()
			shell.Wait()
		}
	}()
	pin := func() {
		shell = exec.Command("sqlite3", s.db)
		in, err := shell.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := shell.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := shell.Start(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(in, ".timeout 10000\nBEGIN;\nSELECT count(*) FROM changes;")
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			t.Fatalf("sqlite3 shell holding a snapshot: %v", err)
		}
	}
	var seen int64
	for seen < int64(4*n+attempt*997) {
		if shell == nil && seen >= int64(n) {
			pin()
		}
		select {
		case nt, ok := <-c.Notifications():
			if !ok {
				t.Fatalf("connection closed: %v\n%s", c.Err(), s.log)
			}
			if nt.Change == nil {
				continue
			}
			var x change
			json.Unmarshal(nt.Change.Changes[len(nt.Change.Changes)-1], &x)
			seen = max(seen, x.Seq)
		case <-time.After(60 * time.Second):
			t.Fatalf("no changes\n%s", s.log)
		}
	}
	s.kill9()
	shell.Process.Kill()
	shell.Wait()
	shell = nil
	// Whatever arrived after the loop's last read counts as seen too.
	for nt := range c.Notifications() {
		if nt.Change != nil {
			var x change
			json.Unmarshal(nt.Change.Changes[len(nt.Change.Changes)-1], &x)
			seen = max(seen, x.Seq)
		}
	}
	if err := os.Remove(s.db + "-wal"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sqlite3", s.db, "SELECT max(seq) FROM changes").CombinedOutput()
	if err != nil && strings.Contains(string(out), "malformed") {
		// The kill came while a checkpoint was copying the WAL: without
		// it, the file is damaged. That must be the failing state, not a
		// silent start; then this attempt proves nothing about seqs.
		t.Logf("attempt %d: the database without its -wal is damaged: %s", attempt, bytes.TrimSpace(out))
		// Either the start-up reads hit the damage (the sidecar refuses
		// to start and says the way out) or it starts failing.
		cmd := exec.Command(binary, "serve", "--config", s.config)
		logs := &logBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() { cmd.Process.Signal(syscall.SIGTERM); <-exited }()
		waitFor(t, "the damage reported", 60*time.Second, func() bool {
			select {
			case err := <-exited:
				exited <- err
				if !strings.Contains(logs.String(), "database corrupt") || !strings.Contains(logs.String(), "move the database file") {
					t.Fatalf("the sidecar exited (%v) without saying the database is corrupt and the way out:\n%s", err, logs)
				}
				return true
			default:
			}
			out, _ := s.cli("status")
			return strings.Contains(out, `"failing"`) && strings.Contains(out, "database corrupt")
		})
		return false
	}
	if err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	kept, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	t.Logf("attempt %d: a client saw seq %d; the database without its -wal ends at %d", attempt, seen, kept)
	if kept >= seen {
		return false // nothing lost this time
	}

	s.start()
	c2 := s.client()
	var st struct {
		DatabaseID string `json:"database_id"`
		ChangeLog  struct {
			LastSeq int64 `json:"last_seq"`
		} `json:"change_log"`
	}
	if err := c2.Call(ctx, "status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.DatabaseID != id {
		// The other allowed answer: a new identity, so every client
		// resyncs. Then the old id must be refused.
		if err := c2.Call(ctx, "changes", map[string]any{"since": kept, "database_id": id}, nil); rpcCode(err) != rpc.CodeResyncNeeded {
			t.Fatalf("new database id, but the old one is accepted: %v", err)
		}
		return true
	}
	// The client that saw the lost seqs is told to resync, with or
	// without new changes since.
	if err := c2.Call(ctx, "changes", map[string]any{"since": seen, "database_id": id}, nil); rpcCode(err) != rpc.CodeResyncNeeded {
		t.Fatalf("changes since %d (lost): %v, want a resync", seen, err)
	}
	// New changes arrive above every seq handed out before.
	waitFor(t, "changes after the restart", 60*time.Second, func() bool {
		var res struct {
			Changes []change `json:"changes"`
		}
		if err := c2.Call(ctx, "changes", map[string]any{"since": kept, "database_id": id, "limit": 10}, &res); err != nil {
			t.Fatalf("changes since %d (kept): %v", kept, err)
		}
		for _, ch := range res.Changes {
			if ch.Seq <= seen {
				t.Fatalf("seq %d handed out again after a lost -wal (a client saw %d)", ch.Seq, seen)
			}
		}
		return len(res.Changes) > 0
	})
	if err := c2.Call(ctx, "changes", map[string]any{"since": seen, "database_id": id}, nil); rpcCode(err) != rpc.CodeResyncNeeded {
		t.Fatalf("changes since %d after new changes: %v, want a resync", seen, err)
	}
	s.stop()
	if !strings.Contains(s.log.String(), "changes were lost") {
		t.Errorf("the log does not say changes were lost:\n%s", s.log)
	}
	return true
}

// corruptPages overwrites three leaf pages in the middle of table in the
// database file with garbage, with dd, as an operator's disk might.
func corruptPages(t *testing.T, db, table string) {
	t.Helper()
	out, err := exec.Command("sqlite3", db, "SELECT pageno FROM dbstat WHERE name = '"+table+"' AND pagetype = 'leaf' ORDER BY pageno").Output()
	if err != nil {
		t.Fatalf("sqlite3 dbstat: %v", err)
	}
	pages := strings.Fields(string(out))
	if len(pages) < 20 {
		t.Fatalf("%s has only %d leaf pages", table, len(pages))
	}
	garbage := filepath.Join(filepath.Dir(db), "garbage")
	os.WriteFile(garbage, bytes.Repeat([]byte("\xde\xad\xbe\xef"), 3*1024), 0o600)
	for _, pg := range pages[len(pages)/2 : len(pages)/2+3] {
		no, _ := strconv.Atoi(pg)
		cmd := exec.Command("dd", "if="+garbage, "of="+db, "bs=4096", "count=1", fmt.Sprintf("seek=%d", no-1), "conv=notrunc")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dd: %v\n%s", err, out)
		}
	}
}

// TestCorruptDatabase: a copy of a database whose change log and entity
// pages were overwritten. The synchronizer starts, status says failing with
// the way out, and reads that hit the damage end with a JSON-RPC error:
// every line the client gets is whole JSON, and the connection goes on.
func TestCorruptDatabase(t *testing.T) {
	t.Parallel()
	const n = 5000
	dir := t.TempDir()
	s := startSidecar(t, dir, genConfig(t, dir, n, "1h"))
	waitFor(t, "first snapshot", 60*time.Second, func() bool {
		out, _ := s.cli("status")
		return strings.Contains(out, fmt.Sprintf(`"entities": %d`, n))
	})
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	copyFile(t, s.db, filepath.Join(dir2, "s.db"))
	corruptPages(t, filepath.Join(dir2, "s.db"), "changes")
	corruptPages(t, filepath.Join(dir2, "s.db"), "entities")
	metricsAddr := freeAddr(t)
	s2 := startSidecar(t, dir2, fmt.Sprintf("metrics: {listen: %q}\n", metricsAddr))

	var st struct {
		Store struct {
			State   string `json:"state"`
			Message string `json:"message"`
		} `json:"store"`
	}
	waitFor(t, "the start-up check", 30*time.Second, func() bool {
		out, _ := s2.cli("status")
		json.Unmarshal([]byte(out), &st)
		return st.Store.State == "failing"
	})
	if !strings.Contains(st.Store.Message, "database corrupt") || !strings.Contains(st.Store.Message, "new database id") {
		t.Fatalf("failing state without the way out: %q", st.Store.Message)
	}
	// The endpoint starts once the baseline is loaded, after the socket.
	var metrics string
	waitFor(t, "the metrics endpoint", 30*time.Second, func() bool {
		var code int
		code, metrics = httpGet("http://" + metricsAddr + "/metrics")
		return code == 200
	})
	if !strings.Contains(metrics, "\nsynchronizer_store_failing 1\n") {
		t.Errorf("metrics do not say the store is failing:\n%s", metrics)
	}

	raw := rpctest.Dial(t, s2.socket)
	recvLine := func() map[string]any {
		raw.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := raw.R.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read: %v (the server cut the answer short: %d bytes %q...)", err, len(line), line[:min(len(line), 80)])
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("a line that is not whole JSON (%d bytes, ends %q): %v", len(line), line[max(0, len(line)-80):], err)
		}
		return m
	}
	// changes from the start: whole pages up to the damage, then an error.
	since, calls := int64(0), 0
	for {
		calls++
		raw.Send(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"changes","params":{"since":%d}}`, calls, since))
		m := recvLine()
		if rpctest.Code(m) != 0 {
			if msg := m["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "database corrupt") {
				t.Fatalf("changes error does not say the database is corrupt: %q", msg)
			}
			break
		}
		res := m["result"].(map[string]any)
		if res["more"] != true {
			t.Fatalf("changes read through the damaged pages without an error: %d changes", len(res["changes"].([]any)))
		}
		since = int64(res["seq"].(float64))
		if calls > 10 {
			t.Fatal("no error after 10 calls")
		}
	}
	raw.Send(t, `{"jsonrpc":"2.0","id":100,"method":"get_all","params":{}}`)
	if m := recvLine(); rpctest.Code(m) == 0 {
		t.Fatalf("get_all over damaged pages answered %.200v", m)
	}
	// The connection is still usable.
	raw.Send(t, `{"jsonrpc":"2.0","id":101,"method":"status","params":{}}`)
	if m := recvLine(); m["result"] == nil {
		t.Fatalf("status after the errors: %v", m)
	}
}
