package e2e

// End-to-end tests: the real binary, a real socket and a real SQLite file
// in a temporary directory, and the real sqlite3 shell and Python.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/eventually"
	"github.com/openstack-synchronizer/synchronizer/logbuf"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
	"github.com/openstack-synchronizer/synchronizer/rpc"
)

var binary string

// The version the test binary is stamped with, as `make build` stamps it.
const (
	versionVar  = "github.com/openstack-synchronizer/synchronizer/buildinfo.Version"
	testVersion = "v0.0.0-e2e"
)

func TestMain(m *testing.M) {
	// The tests name the repository's files (examples/, testdata/,
	// packaging/) and build the binary from the module root.
	if err := os.Chdir(".."); err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "synchronizer-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "synchronizer")
	out, err := exec.Command("go", "build", "-ldflags", "-X "+versionVar+"="+testVersion, "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sidecar is a running synchronizer process.
type sidecar struct {
	t      testing.TB
	dir    string
	config string
	socket string
	db     string
	cmd    *exec.Cmd
	log    *logBuffer
	exited chan error
}

// logBuffer collects a sidecar's output: the process writes it while the
// test reads it.
type logBuffer = logbuf.Buffer

// freeAddr returns a loopback address nothing listens on (for the metrics
// endpoint the sidecar will listen on, or a dead one).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startSidecar writes config (with socket and database in a temp dir
// prepended) and starts `synchronizer serve` on it, waiting for the socket.
func startSidecar(t testing.TB, dir, config string) *sidecar {
	t.Helper()
	return startSidecarSync(t, dir, "normal", config)
}

// startSidecarSync is startSidecar with another sync setting than the
// tests' normal (the bus benchmarks').
func startSidecarSync(t testing.TB, dir, sync, config string) *sidecar {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s := &sidecar{t: t, dir: dir, config: filepath.Join(dir, "config.yaml"),
		socket: filepath.Join(dir, "s.sock"), db: filepath.Join(dir, "s.db")}
	full := "socket: s.sock\ndatabase: s.db\nsync: " + sync + "\n" + config
	if err := os.WriteFile(s.config, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	return s
}

func (s *sidecar) start() {
	s.t.Helper()
	s.log = &logBuffer{}
	s.cmd = exec.Command(binary, "serve", "--config", s.config)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	s.t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", s.socket); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-s.exited:
			s.t.Fatalf("synchronizer exited at start: %v\n%s", err, s.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.t.Fatalf("socket %s did not appear\n%s", s.socket, s.log)
}

// stop sends SIGTERM and waits; it returns the exit error.
func (s *sidecar) stop() error {
	if s.cmd == nil || s.cmd.ProcessState != nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.exited <- err
		return err
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		return fmt.Errorf("did not stop within 10s after SIGTERM")
	}
}

func (s *sidecar) kill9() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	err := <-s.exited
	s.exited <- err
}

func (s *sidecar) client() *rpc.Client {
	s.t.Helper()
	c, err := rpc.Dial(context.Background(), s.socket)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// run runs the binary and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// cli runs a client subcommand of the real binary.
func (s *sidecar) cli(args ...string) (string, error) {
	args = append(args[:1:1], append([]string{"--socket", s.socket}, args[1:]...)...)
	out, err := exec.Command(binary, args...).CombinedOutput()
	return string(out), err
}

// statusInto runs the status subcommand and decodes its JSON into v; it
// fails t if either fails.
func (s *sidecar) statusInto(t testing.TB, v any) {
	t.Helper()
	out, err := s.cli("status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("status output: %v\n%s", err, out)
	}
}

// waitFor waits, at least eventually.Min, for what must happen eventually.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	eventually.True(t, what, timeout, cond)
}

type change struct {
	Seq    int64  `json:"seq"`
	Action string `json:"action"`
	Key    string `json:"key"`
	State  string `json:"state"`
	Source string `json:"source"`
}

// sqlite runs q with the sqlite3 shell on db, opened as an operator opens
// the baseline beside a running synchronizer (read-write: that must work
// too), with the shell's flags before it (-readonly for a backup, which a
// test must not change), and returns its output, trimmed; it fails t if the
// shell fails.
func sqlite(t testing.TB, db, q string, flags ...string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", append(flags, db, q)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", db, err, out)
	}
	return strings.TrimSpace(string(out))
}

// httpGet returns the status code and body of GET url: code 0 and the
// error while nothing answers (an endpoint that opens late).
func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape returns the text of the metrics endpoint at addr; it fails t if
// the endpoint does not answer 200.
func scrape(t testing.TB, addr string) string {
	t.Helper()
	code, body := httpGet("http://" + addr + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	return body
}

// readFile returns the file's bytes, failing t if it cannot be read.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b := readFile(t, from)
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteFile replaces the first old in path by new, writing the file in
// place as an operator's shell or editor does: the synchronizer may read it
// half written and must cope. It fails t if path has no old.
func rewriteFile(t *testing.T, path, old, new string) {
	t.Helper()
	if err := os.WriteFile(path, edited(t, path, old, new), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteFileAtomic is rewriteFile through a rename, for the tests that
// time what follows the edit (no half-written file to read again).
func rewriteFileAtomic(t *testing.T, path, old, new string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, edited(t, path, old, new), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func edited(t *testing.T, path, old, new string) []byte {
	t.Helper()
	text := string(readFile(t, path))
	if !strings.Contains(text, old) {
		t.Fatalf("%s has no %q", path, old)
	}
	return []byte(strings.Replace(text, old, new, 1))
}

func TestStaticEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	s := startSidecar(t, dir, `
collectors:
  - {name: topology, type: static, path: topology.yaml, interval: 200ms}
`)
	// get-all through the real CLI returns the static entities.
	var all struct {
		Seq      int64 `json:"seq"`
		Entities []struct {
			Key, Type, State, ParentKey string
			Links                       []struct{ Key, Relation string }
		} `json:"entities"`
	}
	waitFor(t, "11 entities", 10*time.Second, func() bool {
		out, err := s.cli("get-all")
		if err != nil {
			t.Fatalf("get-all: %v\n%s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &all); err != nil {
			t.Fatalf("get-all output: %v\n%s", err, out)
		}
		return len(all.Entities) == 11
	})
	types := map[string]int{}
	for _, e := range all.Entities {
		types[e.Type]++
	}
	want := map[string]int{"nova.zone": 1, "nova.host": 2, "nova.instance": 3, "neutron.network": 1, "neutron.port": 3, "cinder.volume": 1}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("types %v, want %v", types, want)
	}
	out, err := s.cli("get-all", "--type", "nova.host")
	if err != nil || strings.Count(out, `"key": "nova.host:`) != 2 || strings.Contains(out, "nova.instance:") {
		t.Fatalf("get-all --type nova.host: %v\n%s", err, out)
	}

	// A registered client sees the change, with its seq, after the file is edited.
	c := s.client()
	var reg struct {
		Subscription string `json:"subscription"`
		Seq          int64  `json:"seq"`
	}
	if err := c.Call(context.Background(), "register", map[string]any{"types": []string{"nova.instance"}}, &reg); err != nil {
		t.Fatal(err)
	}
	rewriteFile(t, filepath.Join(dir, "topology.yaml"), "name: db-1\n      state: SHUTOFF", "name: db-1\n      state: ERROR")
	select {
	case n := <-c.Notifications():
		var p rpc.ChangeParams
		json.Unmarshal(n.Params, &p)
		if n.Method != "change" || p.Subscription != reg.Subscription || len(p.Changes) != 1 {
			t.Fatalf("notification %s %s", n.Method, n.Params)
		}
		var ch change
		json.Unmarshal(p.Changes[0], &ch)
		if ch.Action != "update" || ch.Key != "nova.instance:5e8f7a6b-1d2c-4b3a-8f9e-0a1b2c3d4e5f" || ch.State != "ERROR" || ch.Seq != reg.Seq+1 {
			t.Fatalf("change %+v (registered at seq %d)", ch, reg.Seq)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no change notification\n%s", s.log)
	}

	// The sqlite3 shell reads the baseline while the sidecar runs.
	if got := sqlite(t, s.db, "SELECT count(*), count(DISTINCT source) FROM baseline; SELECT action FROM changes ORDER BY seq DESC LIMIT 1;"); got != "11|1\nupdate" {
		t.Fatalf("sqlite3 read %q", got)
	}

	// The WAL is checkpointed in the background (the writer never does it),
	// and status says so.
	waitFor(t, "a background checkpoint in status", 10*time.Second, func() bool {
		var st struct {
			WAL struct {
				Checkpoints int64  `json:"checkpoints"`
				LastError   string `json:"last_error"`
			} `json:"wal"`
		}
		if s.statusInto(t, &st); st.WAL.LastError != "" {
			t.Fatalf("status: WAL checkpoint failed: %s", st.WAL.LastError)
		}
		return st.WAL.Checkpoints > 0
	})

	// The socket is private by default.
	fi, err := os.Stat(s.socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode().Perm(), err)
	}
	// SIGTERM: exit 0, socket removed.
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, s.log)
	}
	if _, err := os.Stat(s.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestSecondSidecarAndStaleSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startSidecar(t, dir, "")
	// A second synchronizer on the same database refuses clearly. (It
	// would also find the socket in use; give it its own socket to reach
	// the database check.)
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte("socket: other.sock\ndatabase: s.db\n"), 0o644)
	out, err := exec.Command(binary, "serve", "--config", other).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another synchronizer") {
		t.Fatalf("second sidecar: %v\n%s", err, out)
	}
	// Same socket, other database: the live socket is not stolen.
	other2 := filepath.Join(dir, "other2.yaml")
	os.WriteFile(other2, []byte("socket: s.sock\ndatabase: other.db\n"), 0o644)
	out, err = exec.Command(binary, "serve", "--config", other2).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another process is listening") {
		t.Fatalf("socket thief: %v\n%s", err, out)
	}
	// After kill -9 the socket file is stale: the next start replaces it.
	s.kill9()
	if _, err := os.Stat(s.socket); err != nil {
		t.Fatalf("expected a stale socket file: %v", err)
	}
	s.start()
	if _, err := s.cli("status"); err != nil {
		t.Fatal(err)
	}
	// A regular file where the socket should be is never removed.
	s.stop()
	os.WriteFile(s.socket, []byte("precious"), 0o644)
	out, err = exec.Command(binary, "serve", "--config", s.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a socket") {
		t.Fatalf("regular file at socket path: %v\n%s", err, out)
	}
}

// TestPythonClient runs a stdlib-only Python client (the README's) with
// Debian's interpreter: get_all, then a change notification.
func TestPythonClient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := topologySidecar(t, dir)
	py := exec.Command("/usr/bin/python3", "examples/client.py", s.socket)
	stdout, _ := py.StdoutPipe()
	py.Stderr = os.Stderr
	if err := py.Start(); err != nil {
		t.Fatalf("start /usr/bin/python3: %v", err)
	}
	defer py.Process.Kill()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "11 entities as of seq") {
		t.Fatalf("python get_all: %q", lines.Text())
	}
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "registered") {
		t.Fatalf("python register: %q", lines.Text())
	}
	rewriteFile(t, filepath.Join(dir, "topology.yaml"), "state: DOWN", "state: ACTIVE")
	if !lines.Scan() {
		t.Fatalf("python: no change line: %v", lines.Err())
	}
	if got := lines.Text(); !strings.Contains(got, "update neutron.port:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d ACTIVE") {
		t.Fatalf("python change line %q", got)
	}
}

// TestWatchSurvivesRestart: the real `watch` prints each change once,
// across a restart of the synchronizer.
func TestWatchSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	s := topologySidecar(t, dir)
	w := startWatch(t, s, "--socket", s.socket, "--since", "0")
	for i := 1; i <= 11; i++ {
		if c := w.next(t); c.Seq != int64(i) || c.Action != "create" {
			t.Fatalf("line %d: %+v", i, c)
		}
	}
	rewriteFile(t, topo, "state: SHUTOFF", "state: ERROR")
	if c := w.next(t); c.Seq != 12 || c.State != "ERROR" {
		t.Fatalf("after edit: %+v", c)
	}
	// Stop, change the file while it is down, start again.
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	rewriteFile(t, topo, "state: ERROR", "state: ACTIVE")
	s.start()
	if c := w.next(t); c.Seq != 13 || c.State != "ACTIVE" {
		t.Fatalf("after restart: %+v", c)
	}
	select {
	case c := <-w.lines:
		t.Fatalf("unexpected extra line %+v", c)
	case <-time.After(500 * time.Millisecond):
	}
}

// watchProc is a running `watch`: the changes it prints, its stderr, and
// the synchronizer it reads (its log goes with a failure).
type watchProc struct {
	lines  <-chan change
	stderr *logBuffer
	s      *sidecar
}

// startWatch runs `watch args...` until the test ends; s is the
// synchronizer it reads, directly or through its stream.
func startWatch(t *testing.T, s *sidecar, args ...string) *watchProc {
	t.Helper()
	w := exec.Command(binary, append([]string{"watch"}, args...)...)
	stdout, err := w.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &logBuffer{}
	w.Stderr = stderr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Process.Kill(); w.Wait() })
	lines := make(chan change, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var c change
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				lines <- c
			}
		}
		close(lines)
	}()
	return &watchProc{lines: lines, stderr: stderr, s: s}
}

// next returns the next change watch printed; it fails t, with watch's
// stderr and the synchronizer's log, if none comes within 20 s.
func (w *watchProc) next(t *testing.T) change {
	t.Helper()
	select {
	case c, ok := <-w.lines:
		if ok {
			return c
		}
		t.Fatalf("watch ended\nwatch: %s\nsynchronizer:\n%s", w.stderr, w.s.log)
	case <-time.After(20 * time.Second):
		t.Fatalf("watch printed nothing within 20 s\nwatch: %s\nsynchronizer:\n%s", w.stderr, w.s.log)
	}
	return change{}
}

// fakeCloud starts a fake cloud serving pages of pageSize items, stopped
// when the test ends, and writes dir/clouds.yaml naming it "fakecloud".
func fakeCloud(t *testing.T, dir string, pageSize int) *openstacktest.Server {
	t.Helper()
	cloud, err := openstacktest.New(openstacktest.Options{PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Close)
	if err := os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(cloud.CloudsYAML("fakecloud", "secret")), 0o600); err != nil {
		t.Fatal(err)
	}
	return cloud
}

// pythonDir is the absolute path of the project's Python package tree.
func pythonDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("python")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
