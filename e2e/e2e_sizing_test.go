package e2e

// Sizing figures for docs/operations.md, from the real binary: disk per
// change in the log and memory per entity, each beside a yardstick measured
// in the same run. Heavy (100k entities of 2 KB through an exec plugin), so
// it runs from make bench (SYNC_SIZING=1), not make test.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func dbBytes(t *testing.T, db string) int64 {
	t.Helper()
	var pages, free, size int64
	fmt.Sscan(sqlite(t, db, "PRAGMA page_count; PRAGMA freelist_count; PRAGMA page_size;"), &pages, &free, &size)
	return (pages - free) * size
}

func TestSizingFigures(t *testing.T) {
	if os.Getenv("SYNC_SIZING") == "" {
		t.Skip("set SYNC_SIZING=1 (make bench) for the sizing figures")
	}
	plugin, _ := filepath.Abs("testdata/sizing/plugin.py")
	entities := func(s *sidecar) int { return statusOf(t, s).Entities }

	// Disk: 10k instances, then 4 polls updating all of them.
	const n = 10000
	dir := t.TempDir()
	s := startSidecar(t, dir, fmt.Sprintf("collectors:\n  - {name: cloud, type: exec, command: [%s, \"%d\"], interval: 1h, timeout: 10m, max_output: 1073741824}\n", plugin, n))
	waitFor(t, "first poll", 5*time.Minute, func() bool { return entities(s) == n })
	first := dbBytes(t, s.db)
	for i := 0; i < 4; i++ {
		time.Sleep(2 * time.Millisecond) // another state and "updated"
		if out, err := s.cli("collect", "cloud"); err != nil || !strings.Contains(out, fmt.Sprintf(`"updated": %d`, n)) {
			t.Fatalf("collect: %v\n%s", err, out)
		}
	}
	after := dbBytes(t, s.db)
	var jsonBytes float64
	fmt.Sscan(sqlite(t, s.db, "SELECT avg(length(entity)) FROM changes"), &jsonBytes)
	perChange := float64(after-first) / (4 * n)
	t.Logf("disk: %.0f bytes per change in the log; the change's entity JSON is %.0f bytes (ratio %.2f); the database held %d MB at 10k entities and 50k changes",
		perChange, jsonBytes, perChange/jsonBytes, after>>20)
	s.stop()

	// Memory: an empty synchronizer, the yardstick.
	empty := startSidecar(t, t.TempDir(), "")
	time.Sleep(time.Second)
	rss0 := procKB(t, empty.cmd.Process.Pid, "VmRSS")
	empty.stop()

	// 100k instances: RSS while polling them, then after a restart that
	// only loads them (no collector), which is the steady state.
	const big = 100000
	dir = t.TempDir()
	s = startSidecar(t, dir, fmt.Sprintf("collectors:\n  - {name: cloud, type: exec, command: [%s, \"%d\"], interval: 1h, timeout: 20m, max_output: 1073741824}\n", plugin, big))
	waitFor(t, "100k entities", 20*time.Minute, func() bool { return entities(s) == big })
	time.Sleep(time.Second)
	rssPoll, hwmPoll := procKB(t, s.cmd.Process.Pid, "VmRSS"), procKB(t, s.cmd.Process.Pid, "VmHWM")
	s.stop()
	os.WriteFile(s.config, []byte("socket: s.sock\ndatabase: s.db\nsync: normal\n"), 0o644)
	s.start()
	waitFor(t, "100k loaded", 5*time.Minute, func() bool { return entities(s) == big })
	time.Sleep(2 * time.Second)
	rssLoaded := procKB(t, s.cmd.Process.Pid, "VmRSS")
	t.Logf("memory: empty synchronizer %d MB RSS (yardstick); 100k instances loaded %d MB (%.1fx, %.1f KB per entity above the yardstick); "+
		"after a first poll of them %d MB (peak %d MB, %.1fx the yardstick)",
		rss0>>10, rssLoaded>>10, float64(rssLoaded)/float64(rss0), float64(rssLoaded-rss0)/big,
		rssPoll>>10, hwmPoll>>10, float64(hwmPoll)/float64(rss0))
	t.Logf("disk at 100k entities and 100k changes: %d MB", dbBytes(t, s.db)>>20)

	// Backup of that database while it runs, beside a plain copy of the
	// file (the yardstick; not consistent while it is written).
	t0 := time.Now()
	if out, err := exec.Command(binary, "backup", "--database", s.db, filepath.Join(dir, "backup.db")).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	backup := time.Since(t0)
	t0 = time.Now()
	if out, err := exec.Command("cp", s.db, filepath.Join(dir, "copy.db")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	cp := time.Since(t0)
	t.Logf("backup of the 100k database: %s; cp of the file: %s (ratio %.1f)", backup.Round(time.Millisecond), cp.Round(time.Millisecond), backup.Seconds()/cp.Seconds())
}
