package e2e

// End-to-end tests of how sources share the baseline: ownership between a
// static topology and the openstack collector, duplicate keys, and a poll
// cut short by a write error.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

type statusReply struct {
	ChangeLog struct {
		LastSeq int64 `json:"last_seq"`
	} `json:"change_log"`
	Collectors []struct {
		Name       string `json:"name"`
		Polls      int64  `json:"polls"`
		LastError  string `json:"last_error"`
		LastResult struct {
			Created, Updated, Deleted, References, Conflicts, Duplicates int
		} `json:"last_result"`
		Duplicates int64 `json:"duplicate_keys_total"`
		Conflicts  int64 `json:"ownership_conflicts_total"`
	} `json:"collectors"`
}

func (s *sidecar) status(t *testing.T) statusReply {
	t.Helper()
	var st statusReply
	s.statusInto(t, &st)
	return st
}

// stoppedLog stops the sidecar and returns its log, which is then complete
// and no longer written.
func (s *sidecar) stoppedLog(t *testing.T) string {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	return s.log.String()
}

func (st statusReply) polls(name string) int64 {
	for _, c := range st.Collectors {
		if c.Name == name {
			return c.Polls
		}
	}
	return 0
}

type storedEntity struct {
	Key, Type, Source, ParentKey, State string
	Data                                map[string]any
	Links                               []struct{ Key, Relation string }
}

func (s *sidecar) getAll(t *testing.T) map[string]storedEntity {
	t.Helper()
	out, err := s.cli("get-all")
	var all struct {
		Entities []struct {
			storedEntity
			ParentKey string `json:"parent_key"`
		} `json:"entities"`
	}
	if err != nil || json.Unmarshal([]byte(out), &all) != nil {
		t.Fatalf("get-all: %v\n%s", err, out)
	}
	m := map[string]storedEntity{}
	for _, e := range all.Entities {
		e.storedEntity.ParentKey = e.ParentKey
		m[e.Key] = e.storedEntity
	}
	return m
}

// TestStaticReferenceToCloudHost is Vitrage's switch_to_host pattern: a
// static topology attaches a switch to a nova.host that the openstack
// collector lists from the (fake) cloud. Polled for many cycles, nothing
// changes after the first ones: the host stays the cloud's with the cloud's
// data, the switch keeps its link to it. On main the host changed owner,
// and lost its data, at every poll.
func TestStaticReferenceToCloudHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cloud := fakeCloud(t, dir, 2)
	// The shape of /usr/lib/python3/dist-packages/vitrage/tests/resources/
	// static_datasources/switch_to_host.yaml, on the fake cloud's hosts.
	topo := `metadata:
  name: switch to host
definitions:
  entities:
    - {static_id: s1, type: switch, name: switch-1, id: "12345", state: available}
    - {static_id: s2, type: switch, name: switch-2, id: "23456", state: available}
    - {static_id: h1, type: nova.host, id: host1}
    - {static_id: h2, type: nova.host, id: host2}
  relationships:
    - {source: s1, target: h1, relationship_type: attached}
    - {source: s1, target: h2, relationship_type: attached}
    - {source: s2, target: h2, relationship_type: attached}
`
	if err := os.WriteFile(filepath.Join(dir, "topology.yaml"), []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startSidecar(t, dir, `
collectors:
  - {name: cloud, type: openstack, cloud: fakecloud, clouds_file: clouds.yaml, interval: 100ms, timeout: 20s}
  - {name: topology, type: static, path: topology.yaml, interval: 100ms, timeout: 20s}
`)
	waitFor(t, "both collectors to poll twice", 30*time.Second, func() bool {
		st := s.status(t)
		return st.polls("cloud") >= 2 && st.polls("topology") >= 2
	})
	st := s.status(t)
	seq := st.ChangeLog.LastSeq
	cloudPolls, topoPolls := st.polls("cloud"), st.polls("topology")
	waitFor(t, "ten more polls of each", 60*time.Second, func() bool {
		st = s.status(t)
		return st.polls("cloud") >= cloudPolls+10 && st.polls("topology") >= topoPolls+10
	})
	if st.ChangeLog.LastSeq != seq {
		out, _ := s.cli("changes", "--since", fmt.Sprint(seq))
		t.Fatalf("%d changes in ten cycles after the first, want none:\n%s", st.ChangeLog.LastSeq-seq, out)
	}
	for _, c := range st.Collectors {
		if c.Name == "topology" && (c.LastResult.References != 2 || c.Conflicts != 0) {
			t.Fatalf("topology status: %+v", c)
		}
		if c.LastError != "" {
			t.Fatalf("%s failing: %s", c.Name, c.LastError)
		}
	}

	all := s.getAll(t)
	for _, h := range []string{"host1", "host2"} {
		e := all["nova.host:"+h]
		if e.Source != "cloud" || e.Data["binary"] != "nova-compute" || e.ParentKey != "nova.zone:nova" || e.Data["static_id"] != nil {
			t.Fatalf("%s is not the cloud's host: %+v", h, e)
		}
	}
	sw := all["switch:12345"]
	if sw.Source != "topology" || fmt.Sprint(sw.Links) != "[{nova.host:host1 attached} {nova.host:host2 attached}]" {
		t.Fatalf("switch-1: %+v", sw)
	}

	// The cloud deletes host1: it goes, and the static entry stands as a
	// placeholder again at the topology's next poll.
	removed := 0
	for _, id := range cloud.IDs(openstacktest.Services) {
		var host, binary any
		cloud.Update(openstacktest.Services, id, func(o map[string]any) { host, binary = o["host"], o["binary"] })
		if host == "host1" && binary == "nova-compute" && cloud.Remove(openstacktest.Services, id) {
			removed++
		}
	}
	if removed != 1 {
		t.Fatalf("removed %d nova-compute services of host1", removed)
	}
	waitFor(t, "host1 as the topology's placeholder", 20*time.Second, func() bool {
		e, ok := s.getAll(t)["nova.host:host1"]
		return ok && e.Source == "topology" && e.Data["static_id"] == "h1"
	})
	out, err := s.cli("changes", "--since", fmt.Sprint(seq))
	if err != nil {
		t.Fatal(err)
	}
	var ch struct {
		Changes []change `json:"changes"`
	}
	json.Unmarshal([]byte(out), &ch)
	var got []string
	for _, c := range ch.Changes {
		got = append(got, c.Action+" "+c.Key+" "+c.Source)
	}
	if want := "[delete nova.host:host1 cloud create nova.host:host1 topology]"; fmt.Sprint(got) != want {
		t.Fatalf("changes after the cloud deleted host1: %v, want %s", got, want)
	}
	log := s.stoppedLog(t)
	if !strings.Contains(log, "reference entries stand for entities another source owns") {
		t.Fatalf("the references are not logged:\n%s", log)
	}
	if n := strings.Count(log, "ownership conflict"); n != 0 {
		t.Fatalf("references logged as conflicts:\n%s", log)
	}
}

// setFileSizeLimit sets RLIMIT_FSIZE of a running process (prlimit(2)):
// past it its writes fail with EFBIG, as on a full disk, and Go ignores the
// SIGXFSZ that comes with them.
func setFileSizeLimit(t *testing.T, pid int, limit uint64) {
	t.Helper()
	lim := [2]uint64{limit, ^uint64(0)} // soft, hard (unlimited)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_FSIZE),
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0); e != 0 {
		t.Skipf("prlimit: %v", e)
	}
}

// TestPartialApplyReported: the disk fills part-way through a large
// snapshot (a file size limit on the real process makes SQLite's writes
// fail). The log and status say how much was committed, not "baseline
// unchanged" (main); the baseline holds exactly that, and once there is room
// the next poll completes the snapshot.
func TestPartialApplyReported(t *testing.T) {
	t.Parallel()
	const n = 40000
	dir := t.TempDir()
	wd, _ := os.Getwd()
	os.WriteFile(filepath.Join(dir, "state"), []byte("ACTIVE"), 0o644)
	// The plugin waits for the file "go", so that the limit is in place
	// before the first poll writes.
	s := startSidecar(t, dir, fmt.Sprintf(`
collectors:
  - name: gen
    type: exec
    command: ["/bin/sh", "-c", "while [ ! -f go ]; do sleep 0.05; done; exec /usr/bin/python3 %s %d state"]
    interval: 1h
    timeout: 300s
    max_backoff: 1h
    max_delete_ratio: 0
`, filepath.Join(wd, "testdata/gen.py"), n))
	setFileSizeLimit(t, s.cmd.Process.Pid, 64<<20)
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)

	var st statusReply
	waitFor(t, "the poll to fail", 240*time.Second, func() bool {
		st = s.status(t)
		return len(st.Collectors) == 1 && st.Collectors[0].LastError != ""
	})
	setFileSizeLimit(t, s.cmd.Process.Pid, ^uint64(0))
	lastErr := st.Collectors[0].LastError
	var done, total int
	var lo, hi int64
	if _, err := fmt.Sscanf(lastErr, "poll partially applied: %d of %d changes committed (seq %d..%d), then: ", &done, &total, &lo, &hi); err != nil {
		t.Fatalf("status last_error %q: %v\n%s", lastErr, err, s.log)
	}
	if total != n || done <= 0 || done >= n || lo != 1 || hi != int64(done) {
		t.Fatalf("status last_error %q", lastErr)
	}
	if got := sqlite(t, s.db, "SELECT count(*) FROM baseline; SELECT max(seq) FROM changes;"); got != fmt.Sprintf("%d\n%d", done, done) {
		t.Fatalf("database after the partial apply: %q, want %d rows", got, done)
	}
	t.Logf("partial apply: %s", lastErr)

	// Room again: the next poll completes the snapshot.
	if out, err := s.cli("collect", "gen"); err != nil {
		t.Fatalf("collect: %v\n%s\n%s", err, out, s.log)
	}
	st = s.status(t)
	if c := st.Collectors[0]; c.LastError != "" && c.LastResult.Created != n-done {
		t.Fatalf("status after the next poll: %+v", c)
	}
	if got := sqlite(t, s.db, "SELECT count(*) FROM baseline; SELECT max(seq), count(*) FROM changes; PRAGMA integrity_check;"); got != fmt.Sprintf("%d\n%d|%d\nok", n, n, n) {
		t.Fatalf("database after the next poll: %q", got)
	}
	log := s.stoppedLog(t)
	if !strings.Contains(log, `msg="poll partially applied: the next poll completes it" collector=gen err="`+lastErr) ||
		strings.Contains(log, "baseline unchanged") {
		t.Fatalf("log does not report the partial apply:\n%s", log)
	}
}

// TestDuplicatesAndErrorChangesLogged: a key listed several times in one
// poll is applied from its first listing, and reported in the log (key and
// count) and in status; a poll error that changes is logged at once (main
// logged only the 1st, 10th, 20th... consecutive failure), and so is
// recovery.
func TestDuplicatesAndErrorChangesLogged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	wd, _ := os.Getwd()
	mode := func(m string) {
		if err := os.WriteFile(filepath.Join(dir, "mode"), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mode("dup")
	s := startSidecar(t, dir, fmt.Sprintf(`
collectors:
  - {name: plug, type: exec, command: [%q], interval: 1h, max_backoff: 1h}
`, filepath.Join(wd, "testdata/modes.sh")))
	waitFor(t, "the first poll", 20*time.Second, func() bool { return s.status(t).polls("plug") == 1 })
	collect := func() {
		t.Helper()
		s.cli("collect", "plug") // fails in the error modes
	}
	collect()
	st := s.status(t).Collectors[0]
	if st.Duplicates != 4 || st.LastResult.Duplicates != 2 {
		t.Fatalf("status after two polls with duplicates: %+v", st)
	}
	if all := s.getAll(t); all["switch:1"].State != "a" || len(all) != 2 {
		t.Fatalf("baseline: %+v", all)
	}

	for _, m := range []string{"err3", "err3", "err4", "err4", "err3", "dup"} {
		mode(m)
		collect()
	}
	log := s.stoppedLog(t)
	for _, want := range []struct {
		s string
		n int
	}{
		// Two polls with duplicates before the errors, one after.
		{`msg="duplicate keys in one listing: the first listing of each key is applied, the others are dropped" source=plug keys=1 dropped=2 example="switch:1 ×3"`, 3},
		{`err="exec ` + filepath.Join(wd, "testdata/modes.sh") + `: exit status 3"`, 2},
		{`err="exec ` + filepath.Join(wd, "testdata/modes.sh") + `: exit status 4"`, 1},
		{`msg="poll recovered" collector=plug after_failures=5`, 1},
	} {
		if n := strings.Count(log, want.s); n != want.n {
			t.Errorf("%s logged %d times, want %d", want.s, n, want.n)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
}

// TestTwoCollectorsOneKey: two plugins both list switch:shared, with
// different states. The first to list it keeps it: nothing changes over many
// polls, and the conflict is counted in status and metrics and logged once.
// When the owner stops listing it, the other's next poll takes it over.
func TestTwoCollectorsOneKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`[{"type":"switch","id":"shared","state":"up"},{"type":"switch","id":"a"}]`), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`[{"type":"switch","id":"shared","state":"down"},{"type":"switch","id":"b"}]`), 0o644)
	// a polls first; b starts polling once a's listing is in.
	s := startSidecar(t, dir, "metrics: {listen: \""+addr+"\"}\n"+`
collectors:
  - {name: a, type: exec, command: [/bin/cat, a.json], interval: 100ms, timeout: 20s}
  - {name: b, type: exec, command: [/bin/sh, -c, "while [ ! -f go ]; do sleep 0.05; done; cat b.json"], interval: 100ms, timeout: 20s}
`)
	waitFor(t, "a's first poll", 20*time.Second, func() bool { return s.status(t).polls("a") >= 1 })
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	var st statusReply
	waitFor(t, "b's first poll", 20*time.Second, func() bool {
		// Status reads the log's seq before the polls: wait for both.
		st = s.status(t)
		return st.polls("b") >= 1 && st.ChangeLog.LastSeq >= 3
	})
	seq, polls := st.ChangeLog.LastSeq, st.polls("b")
	waitFor(t, "ten more polls of b", 30*time.Second, func() bool { st = s.status(t); return st.polls("b") >= polls+10 })
	if st.ChangeLog.LastSeq != seq || seq != 3 {
		t.Fatalf("seq %d then %d, want 3 changes and none after", seq, st.ChangeLog.LastSeq)
	}
	for _, c := range st.Collectors {
		if c.Name == "b" && (c.LastResult.Conflicts != 1 || c.Conflicts != 1) {
			t.Fatalf("b's status: %+v", c)
		}
	}
	if e := s.getAll(t)["switch:shared"]; e.Source != "a" || e.State != "up" {
		t.Fatalf("switch:shared: %+v", e)
	}
	if body := scrape(t, addr); !strings.Contains(body, `synchronizer_ownership_conflicts_total{collector="b"} 1`) {
		t.Fatalf("metrics lack the conflict:\n%s", body)
	}

	// a no longer lists it: a deletes it, b creates it as its own.
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`[{"type":"switch","id":"a"}]`), 0o644)
	waitFor(t, "b to own switch:shared", 20*time.Second, func() bool {
		e, ok := s.getAll(t)["switch:shared"]
		return ok && e.Source == "b" && e.State == "down"
	})
	if log := s.stoppedLog(t); strings.Count(log, "ownership conflict") != 1 {
		t.Fatalf("conflict not logged exactly once:\n%s", log)
	}
}
