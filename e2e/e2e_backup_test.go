package e2e

// Backup and restore through the real binary: an online backup under write
// load is a consistent, integrity-checked 0600 copy as of one commit; a
// restore (stop, restore, start) makes every consumer resynchronize, even
// once the restored database has handed out seqs past the consumer's.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/rpc"
)

// loadPlugin prints n switches whose state is the time: every poll updates
// all n in one transaction.
const loadPlugin = `#!/usr/bin/python3
import json, sys, time
t = str(time.time_ns())
json.dump({"entities": [{"type": "switch", "id": "sw-%%d" %% i, "state": t} for i in range(%d)]}, sys.stdout)
`

// TestBackupUnderLoad takes backups while an exec plugin rewrites 2000
// entities every poll (one transaction per poll) until three of them ran
// while the synchronizer committed. Each backup is 0600, passes
// integrity_check, agrees with itself (checkConsistent), and holds the
// switches with one state at a seq that ends a poll, as one commit wrote
// them: a copy torn between commits would mix two.
func TestBackupUnderLoad(t *testing.T) {
	const n = 2000
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "load.py"), []byte(fmt.Sprintf(loadPlugin, n)), 0o755)
	s := startSidecar(t, dir, "collectors:\n  - {name: load, type: exec, command: [./load.py], interval: 100ms, timeout: 10s, jitter: 0}\n")
	c := s.client()
	seqAt := func() int64 {
		var st struct {
			ChangeLog struct {
				Last int64 `json:"last_seq"`
			} `json:"change_log"`
		}
		if err := c.Call(context.Background(), "status", nil, &st); err != nil {
			t.Fatal(err)
		}
		return st.ChangeLog.Last
	}
	waitFor(t, "several polls", 30*time.Second, func() bool { return seqAt() >= 3*n })
	var last int64
	overlapped := 0
	for i := 0; overlapped < 3; i++ {
		if i == 40 {
			t.Fatalf("no 3 of 40 backups overlapped a commit")
		}
		file := filepath.Join(dir, fmt.Sprintf("backup-%d.db", i))
		before := seqAt()
		t0 := time.Now()
		out, err := exec.Command(binary, "backup", "--database", s.db, file).CombinedOutput()
		if err != nil {
			t.Fatalf("backup: %v\n%s", err, out)
		}
		took := time.Since(t0)
		after := seqAt()
		if !strings.Contains(string(out), file+": ") || !strings.Contains(string(out), "integrity ok") {
			t.Errorf("backup output: %s", out)
		}
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("backup file: %v, mode %v", err, fi.Mode())
		}
		if got := checkConsistent(t, file); got != n {
			t.Errorf("backup %d holds %d entities, want %d", i, got, n)
		}
		if states := sqlite(t, file, `SELECT count(DISTINCT json_extract(entity, '$.state')) FROM entities`, "-readonly"); states != "1" {
			t.Errorf("backup %d mixes %s poll states: not one commit", i, states)
		}
		var seq int64
		fmt.Sscan(sqlite(t, file, `SELECT value FROM meta WHERE key = 'last_seq'`, "-readonly"), &seq)
		if seq < before || seq > after || seq < last || seq%n != 0 {
			t.Errorf("backup %d at seq %d: want a poll's last seq between %d and %d, from %d on", i, seq, before, after, last)
		}
		last = seq
		if after > before {
			overlapped++
			t.Logf("backup %d: seq %d, %s, while the synchronizer went from seq %d to %d", i, seq, took.Round(time.Millisecond), before, after)
		}
		os.Remove(file)
	}
	// An existing file is refused and left as it was.
	existing := filepath.Join(dir, "existing.db")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	out, err := exec.Command(binary, "backup", "--database", s.db, existing).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "exists: refusing to overwrite it") {
		t.Errorf("backup over an existing file: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Errorf("existing file changed: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestRestore: stop, restore, start. A consumer that saw seqs past the
// backup's gets -32001 on changes and register, and so does one at the
// backup's own seq, even after the restored synchronizer's first poll has
// numbered changes past them: without the seq floor, since would fit the
// log again and the consumer would silently skip those changes.
func TestRestore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	s := topologySidecar(t, dir)
	backupFile := filepath.Join(dir, "backup.db")
	if out, err := exec.Command(binary, "backup", "--config", s.config, backupFile).CombinedOutput(); err != nil || !strings.Contains(string(out), "last seq 11") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// Two changes the backup does not have; the consumer sees them.
	rewriteFile(t, topo, "state: SHUTOFF", "state: ACTIVE")
	waitFor(t, "seq 12", 10*time.Second, func() bool {
		out, _ := s.cli("changes", "--since", "11")
		return strings.Contains(out, `"seq": 12`)
	})
	rewriteFile(t, topo, "state: available", "state: maintenance")
	waitFor(t, "seq 13", 10*time.Second, func() bool {
		out, _ := s.cli("changes", "--since", "12")
		return strings.Contains(out, `"seq": 13`)
	})
	consumerSeq := int64(13)

	// Restore refuses while the synchronizer runs.
	out, err := exec.Command(binary, "restore", "--config", s.config, backupFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "database is in use by another synchronizer") || !strings.Contains(string(out), "stop the synchronizer first") {
		t.Fatalf("restore while running: %v\n%s", err, out)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binary, "restore", "--config", s.config, backupFile).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	for _, want := range []string{"restored from " + backupFile + ": 11 entities", "the replaced database (last seq 13) is now " + s.db + ".replaced-", "seqs continue after 14"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("restore output lacks %q:\n%s", want, out)
		}
	}
	if moved, _ := filepath.Glob(s.db + ".replaced-*"); len(moved) == 0 {
		t.Errorf("the replaced database was not kept")
	}
	s.start()
	// The first poll finds the topology ahead of the restored baseline and
	// numbers those changes 15 and 16: past the consumer's 13.
	var all struct {
		Seq      int64 `json:"seq"`
		Entities []struct {
			Key, State string
		} `json:"entities"`
	}
	c := s.client()
	waitFor(t, "the restored synchronizer's first changes", 10*time.Second, func() bool {
		if err := c.Call(context.Background(), "get_all", nil, &all); err != nil {
			t.Fatal(err)
		}
		return all.Seq == 16
	})
	for _, since := range []int64{consumerSeq, 11, 0} {
		var res struct{}
		err := c.Call(context.Background(), "changes", map[string]any{"since": since}, &res)
		if rpcCode(err) != rpc.CodeResyncNeeded {
			t.Errorf("changes since %d after the restore: %v, want -32001", since, err)
		}
		err = c.Call(context.Background(), "register", map[string]any{"since": since}, &res)
		if rpcCode(err) != rpc.CodeResyncNeeded {
			t.Errorf("register since %d after the restore: %v, want -32001", since, err)
		}
	}
	// Resynchronized: get_all has the current state, and its seq is a
	// valid since.
	states := map[string]string{}
	for _, e := range all.Entities {
		states[e.Key] = e.State
	}
	if states["nova.instance:5e8f7a6b-1d2c-4b3a-8f9e-0a1b2c3d4e5f"] != "ACTIVE" || states["nova.zone:nova"] != "maintenance" {
		t.Errorf("state after the restore and the first poll: %v", states)
	}
	var res struct {
		Changes []any `json:"changes"`
	}
	if err := c.Call(context.Background(), "changes", map[string]any{"since": all.Seq}, &res); err != nil {
		t.Errorf("changes since get_all's seq: %v", err)
	}
	// The CLI's watch says it resynchronizes.
	wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	wout, _ := exec.CommandContext(wctx, binary, "watch", "--socket", s.socket, "--since", "13").CombinedOutput()
	if !strings.Contains(string(wout), "-32001") && !strings.Contains(string(wout), "resync") {
		t.Errorf("watch --since 13 after the restore:\n%s", wout)
	}
	checkConsistentAfterRestore(t, s.db)
}

// checkConsistentAfterRestore: the restored database's log starts after
// the floor, so checkConsistent's last_seq check holds once the
// synchronizer has written.
func checkConsistentAfterRestore(t *testing.T, db string) {
	t.Helper()
	if got := sqlite(t, db, `PRAGMA integrity_check; SELECT min(seq) FROM changes; SELECT value FROM meta WHERE key = 'pruned_through';`, "-readonly"); got != "ok\n15\n14" {
		t.Errorf("restored database: integrity, first seq, pruned_through = %q, want ok, 15, 14", got)
	}
}

// TestRestoreRefusesBadBackups: a file that is not a sound database, or one
// of a newer schema, is refused and the database is left as it was.
func TestRestoreRefusesBadBackups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := topologySidecarWith(t, dir, "collectors:\n  - {name: topology, type: static, path: topology.yaml}\n")
	good := filepath.Join(dir, "good.db")
	if out, err := exec.Command(binary, "backup", "--database", s.db, good).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	s.stop()
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 500)), 0o600)
	newer := filepath.Join(dir, "newer.db")
	copyFile(t, good, newer)
	if out, err := exec.Command("sqlite3", newer, "UPDATE meta SET value = '99' WHERE key = 'schema_version'").CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	torn := filepath.Join(dir, "torn.db")
	b, _ := os.ReadFile(good)
	os.WriteFile(torn, b[:len(b)/2], 0o600)
	before, _ := os.ReadFile(s.db)
	for _, tc := range []struct{ file, want string }{
		{garbage, "not a sound SQLite database: open " + garbage + ": file is not a database"},
		{newer, "database was written by a newer synchronizer (schema version 99"},
		{torn, "not a sound SQLite database"},
		{filepath.Join(dir, "missing.db"), "no such file or directory"},
	} {
		out, err := exec.Command(binary, "restore", "--database", s.db, tc.file).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("restore %s: %v, want exit 1 and %q\n%s", filepath.Base(tc.file), err, tc.want, out)
		}
	}
	if after, _ := os.ReadFile(s.db); string(after) != string(before) {
		t.Errorf("the database changed on a refused restore")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.replaced-*")); len(left) > 0 {
		t.Errorf("a refused restore moved the database: %v", left)
	}
}

// TestNewerDatabaseRefused: a database a newer synchronizer wrote (a
// downgrade without restoring a backup) is refused at start, and left
// byte for byte as it was.
func TestNewerDatabaseRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := topologySidecarWith(t, dir, "collectors:\n  - {name: topology, type: static, path: topology.yaml}\n")
	s.stop()
	if out, err := exec.Command("sqlite3", s.db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'").CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	before, _ := os.ReadFile(s.db)
	out, err := exec.Command(binary, "serve", "--config", s.config).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 ||
		!strings.Contains(string(out), "database was written by a newer synchronizer (schema version 99, this binary knows ") {
		t.Fatalf("serve on a newer database: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(s.db); string(after) != string(before) {
		t.Errorf("the newer database was modified")
	}
}
