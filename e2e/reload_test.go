package e2e

// End-to-end tests of live configuration and of a graceful stop, on the real
// binary (helpers in e2e_test.go).

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statusOf runs the status subcommand and decodes what these tests need.
func statusOf(t *testing.T, s *sidecar) (st struct {
	Config struct {
		Hash      string `json:"hash"`
		LastError string `json:"last_error"`
	} `json:"config"`
	Collectors []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Polls int64  `json:"polls"`
	} `json:"collectors"`
	Entities int `json:"entities"`
}) {
	t.Helper()
	s.statusInto(t, &st)
	return st
}

// TestBadEditStatusAndCheckConfig: after a bad edit the running sidecar's
// status and `check-config` on the same file show the same message, with
// the file and line; check-config exits non-zero.
func TestBadEditStatusAndCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	good := "collectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 1h}\n"
	s := startSidecar(t, dir, good)
	waitFor(t, "first poll", 10*time.Second, func() bool { return statusOf(t, s).Entities == 11 })
	hash := statusOf(t, s).Config.Hash
	head := "socket: s.sock\ndatabase: s.db\nsync: normal\n"
	for _, tc := range []struct{ name, body, line string }{
		{"unknown type", strings.Replace(good, "type: static", "type: statik", 1), "line 5: collectors[0] (topology): unknown collector type"},
		{"missing path", strings.Replace(good, "path: topology.yaml, ", "", 1), "line 5: collectors[0] (topology): static: path: required"},
		{"duplicate name", good + "  - {name: topology, type: static, path: topology.yaml}\n", "line 6: collectors[1].name: \"topology\" is already used by collectors[0]"},
		{"bad interval", strings.Replace(good, "1h", "1 hour", 1), "line 5: duration \"1 hour\""},
		{"not loopback", "metrics: {listen: \"0.0.0.0:9464\"}\n" + good, "line 4: metrics.listen: \"0.0.0.0:9464\": must be a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := s.config + ".new"
			os.WriteFile(tmp, []byte(head+tc.body), 0o644)
			os.Rename(tmp, s.config)
			var last string
			waitFor(t, "reload error", 10*time.Second, func() bool {
				last = statusOf(t, s).Config.LastError
				return strings.Contains(last, tc.line)
			})
			_, stderr, code := run(t, "check-config", s.config)
			if code == 0 {
				t.Errorf("check-config exit %d on a bad file", code)
			}
			if got := strings.TrimSpace(stderr); got != last {
				t.Errorf("check-config and status differ\ncheck-config: %s\n      status: %s", got, last)
			}
			if !strings.HasPrefix(last, s.config+": ") {
				t.Errorf("error does not name the file: %s", last)
			}
			if st := statusOf(t, s); st.Config.Hash != hash || st.Entities != 11 || len(st.Collectors) != 1 || st.Collectors[0].Polls != 1 {
				t.Errorf("running config touched by a bad edit: %+v", st)
			}
		})
	}
	// A good file again: the error goes.
	os.WriteFile(s.config, []byte(head+good), 0o644)
	waitFor(t, "error cleared", 10*time.Second, func() bool { return statusOf(t, s).Config.LastError == "" })
	if stdout, stderr, code := run(t, "check-config", s.config); code != 0 || !strings.Contains(stdout, ": ok (1 collectors, 0 listeners)") {
		t.Errorf("check-config on a good file: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestSIGTERMDuringPoll stops the sidecar while a large first snapshot is
// being applied, and while an exec plugin is still running: it exits 0
// within a few seconds, the database is consistent, and the next start
// carries on from it.
func TestSIGTERMDuringPoll(t *testing.T) {
	t.Run("during apply", func(t *testing.T) {
		const n = 30000
		dir := t.TempDir()
		s := startSidecar(t, dir, genConfig(t, dir, n, "1h"))
		// Wait until the first commits are in, so the stop lands inside
		// the apply rather than before it.
		waitFor(t, "commits under way", 60*time.Second, func() bool {
			out, _ := exec.Command("sqlite3", s.db, "SELECT count(*) FROM changes").Output()
			return strings.TrimSpace(string(out)) != "0" && strings.TrimSpace(string(out)) != ""
		})
		stopWithin(t, s, 5*time.Second)
		n1 := checkConsistent(t, s.db)
		t.Logf("stopped with %d of %d entities committed", n1, n)
		if n1 >= n {
			t.Logf("note: the poll had finished before SIGTERM arrived")
		}
		// The next start completes the listing.
		s.start()
		waitFor(t, "all entities after restart", 60*time.Second, func() bool { return statusOf(t, s).Entities == n })
		stopWithin(t, s, 5*time.Second)
		checkConsistent(t, s.db)
	})
	t.Run("during exec", func(t *testing.T) {
		dir := t.TempDir()
		s := startSidecar(t, dir, `
collectors:
  - {name: slow, type: exec, command: ["/bin/sh", "-c", "sleep 60"], interval: 1h, timeout: 120s}
`)
		waitFor(t, "polling", 10*time.Second, func() bool {
			st := statusOf(t, s)
			return len(st.Collectors) == 1 && st.Collectors[0].State == "polling"
		})
		stopWithin(t, s, 5*time.Second)
		checkConsistent(t, s.db)
	})
}

// stopWithin sends SIGTERM and requires exit status 0 within d and the
// socket gone.
func stopWithin(t *testing.T, s *sidecar, d time.Duration) {
	t.Helper()
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, s.log)
		}
	case <-time.After(d):
		s.cmd.Process.Kill()
		t.Fatalf("still running %s after SIGTERM\n%s", d, s.log)
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(s.socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// checkConsistent checks with the sqlite3 shell that the database is sound
// and that baseline, entities and the change log agree; it returns the
// number of entities.
func checkConsistent(t *testing.T, db string) int {
	t.Helper()
	q := `PRAGMA integrity_check;
SELECT count(*) FROM baseline;
SELECT count(*) FROM baseline b LEFT JOIN entities e ON e.key = b.key WHERE e.key IS NULL;
SELECT count(*) FROM entities e LEFT JOIN baseline b ON e.key = b.key WHERE b.key IS NULL;
WITH last AS (SELECT key, max(seq) AS seq FROM changes GROUP BY key)
SELECT count(*) FROM last JOIN changes c ON c.seq = last.seq
  WHERE (c.action = 'delete') = (last.key IN (SELECT key FROM entities));
SELECT coalesce(max(seq), 0) = (SELECT coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_seq'), 0)) FROM changes;`
	out, err := exec.Command("sqlite3", db, q).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 6 || f[0] != "ok" || f[2] != "0" || f[3] != "0" || f[4] != "0" || f[5] != "1" {
		t.Fatalf("database inconsistent (integrity, baseline, baseline without entity, entity without baseline, log disagreeing, last_seq matches):\n%s", out)
	}
	var n int
	json.Unmarshal([]byte(f[1]), &n)
	return n
}

// TestSIGHUPAndMetricsEndpoint: SIGHUP reloads the file (restarting
// nothing when it is unchanged), and the metrics endpoint serves on
// loopback. A non-loopback metrics address is refused at start.
func TestSIGHUPAndMetricsEndpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	addr := freeAddr(t)
	s := startSidecar(t, dir, "metrics: {listen: \""+addr+"\"}\n"+
		"collectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 1h}\n")
	waitFor(t, "first poll", 10*time.Second, func() bool { return statusOf(t, s).Entities == 11 })
	reloads := func() float64 {
		out, _ := s.cli("status")
		var st struct {
			Config struct{ Reloads float64 } `json:"config"`
		}
		json.Unmarshal([]byte(out), &st)
		return st.Config.Reloads
	}
	r0 := reloads()
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "reload on SIGHUP", 10*time.Second, func() bool { return reloads() == r0+1 })
	if st := statusOf(t, s); st.Collectors[0].Polls != 1 {
		t.Errorf("SIGHUP with an unchanged file restarted the collector: %+v", st.Collectors)
	}
	body := scrape(t, addr)
	for _, want := range []string{
		"synchronizer_config_last_reload_successful 1\n",
		`synchronizer_entities{source="topology",type="nova.instance"} 3` + "\n",
		`synchronizer_polls_total{collector="topology",outcome="success"} 1` + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	stopWithin(t, s, 5*time.Second)

	if out := serveFails(t, t.TempDir(), "metrics: {listen: \":9464\"}\n"); !strings.Contains(out, `line 3: metrics.listen: ":9464": must be a loopback address`) {
		t.Errorf("serve with a non-loopback metrics address:\n%s", out)
	}
}
