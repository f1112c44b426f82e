package e2e

// The command line's conventions, through the real binary: the version,
// help, exit codes (0 ok, 1 runtime error, 2 usage), unknown types, table
// output, log levels, filesystem errors, and check-config's checks of what
// the first poll would fail on.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestVersion: the binary names its build on the command line and in status.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errOut, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit code %d\n%s%s", args, code, out, errOut)
		}
		if !strings.HasPrefix(out, "synchronizer "+testVersion+" ") {
			t.Errorf("%v printed %q, want the stamped version %s", args, out, testVersion)
		}
	}
	if _, _, code := run(t, "version", "extra"); code != 2 {
		t.Errorf("version with an argument: exit code %d, want 2", code)
	}

	s := startSidecar(t, "", "collectors: []\n")
	defer s.stop()
	var st struct {
		Version struct {
			Version   string `json:"version"`
			GoVersion string `json:"go_version"`
		} `json:"version"`
	}
	s.statusInto(t, &st)
	if st.Version.Version != testVersion || !strings.HasPrefix(st.Version.GoVersion, "go") {
		t.Errorf("status version = %+v, want %s", st.Version, testVersion)
	}
}

// TestCheckConfigCases: each file under testdata/checkconfig is a config
// that serve would refuse or fail with at the first poll (or accept), and
// check-config says so, naming the file and the line that is wrong.
func TestCheckConfigCases(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		code int
		want string // in stderr (stdout for exit 0)
	}{
		{"ok.yaml", 0, "ok.yaml: ok (2 collectors, 0 listeners)"},
		{"empty.yaml", 0, "empty.yaml: warning: no collectors and no listeners"},
		{"static-missing.yaml", 1, "line 2: collectors[0] (topology): static: open "},
		{"static-line48.yaml", 1, "topology-line48.yaml: yaml: line 48: did not find expected ',' or ']'"},
		{"indent-line3.yaml", 1, "indent-line3.yaml: invalid configuration: yaml: line 3: "},
		{"exec-missing.yaml", 1, "collectors[0] (plugin): exec: command: stat "},
		{"exec-not-executable.yaml", 1, "plugin-noexec.sh is not executable (chmod +x it"},
		{"exec-not-in-path.yaml", 1, `exec: command "no-such-program-in-path": not found in PATH`},
		{"exec-bad-interpreter.yaml", 1, "interpreter /no/such/interpreter: stat /no/such/interpreter: no such file or directory"},
		{"openstack-no-cloud.yaml", 1, `cloud "nosuchcloud" not found in `},
		{"openstack-cacert-missing.yaml", 1, "openstack: cacert: open "},
		{"nagios-status-missing.yaml", 1, "collectors[0] (nagios): nagios: read status file: open "},
		{"amqp-ca-missing.yaml", 1, "listeners[0] (bus): amqp bus: tls: ca_file: open "},
		{"socket-too-long.yaml", 1, "the path is 122 bytes, over the 107-byte limit of a Unix socket address"},
		{"socket-parent-not-directory.yaml", 1, "not-a-directory is not a directory: remove it or choose another path"},
	} {
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			path := filepath.Join("testdata", "checkconfig", tc.file)
			abs, _ := filepath.Abs(path)
			stdout, stderr, code := run(t, "check-config", path)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			got := stderr
			if tc.code == 0 && !strings.Contains(tc.want, "warning") {
				got = stdout
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tc.want, stdout, stderr)
			}
			if !strings.HasPrefix(got, abs+": ") {
				t.Errorf("output does not start with the config's path %s: %s", abs, got)
			}
		})
	}
}

// TestCLIUsage: every command answers help CMD and CMD -h with its own
// usage on stdout and exit 0; bad flags, extra arguments and a missing
// argument are usage errors (exit 2) that point at the help.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	cmds := []string{"serve", "get-all", "watch", "changes", "status", "collect", "check-config", "backup", "restore", "version"}
	for _, c := range cmds {
		for _, args := range [][]string{{"help", c}, {c, "-h"}, {c, "--help"}} {
			stdout, stderr, code := run(t, args...)
			if code != 0 || !strings.HasPrefix(stdout, "usage: synchronizer "+c+" ") || stderr != "" {
				t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
			}
		}
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "usage: synchronizer <command>"},
		{[]string{"help"}, 0, ""},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"help", "bogus"}, 2, `unknown command "bogus"`},
		{[]string{"check-config"}, 2, "FILE is required"},
		{[]string{"check-config", "a.yaml", "b.yaml"}, 2, `unexpected argument "b.yaml"`},
		{[]string{"check-config", "testdata/checkconfig/no-such.yaml"}, 1, "no such file or directory"},
		{[]string{"get-all", "--socket", sock, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"get-all", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"get-all", "--socket", sock, "-o", "yaml"}, 2, `-o: "yaml" is not json or table`},
		{[]string{"get-all", "--socket", sock}, 1, "no such file or directory"},
		{[]string{"status", "--socket", sock, "now"}, 2, `unexpected argument "now"`},
		{[]string{"changes", "--socket", sock}, 2, "--since N is required"},
		{[]string{"collect", "--socket", sock}, 2, "collector NAME is required"},
		{[]string{"collect", "a", "b", "--socket", sock}, 2, `unexpected argument "b"`},
		{[]string{"watch", "--socket", sock, "x"}, 2, `unexpected argument "x"`},
		{[]string{"serve", "--log-level", "loud"}, 2, `--log-level: "loud" is not debug, info, warn or error`},
		{[]string{"serve", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"version", "x"}, 2, `unexpected argument "x"`},
		{[]string{"backup"}, 2, "FILE is required"},
		{[]string{"restore", "--database", filepath.Join(dir, "db"), filepath.Join(dir, "no-backup.db")}, 1, "no such file or directory"},
	} {
		stdout, stderr, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr+stdout, tc.want) {
			t.Errorf("%v: exit %d (want %d), want %q\nstdout: %s\nstderr: %s", tc.args, code, tc.code, tc.want, stdout, stderr)
		}
		if tc.code == 2 && len(tc.args) > 0 && !strings.Contains(stderr, "usage") {
			t.Errorf("%v: a usage error does not point at the usage: %s", tc.args, stderr)
		}
	}
}

// TestCLITypesAndTables: an unknown --type is a usage error naming the
// known types (the contract's and those the synchronizer holds); -o table
// prints get-all, changes and status as columns.
func TestCLITypesAndTables(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	os.WriteFile(filepath.Join(dir, "plugin.sh"), []byte("#!/bin/sh\necho '{\"entities\": [{\"type\": \"switch\", \"id\": \"sw-1\", \"state\": \"up\"}]}'\n"), 0o755)
	s := startSidecar(t, dir, `
collectors:
  - {name: topology, type: static, path: topology.yaml}
  - {name: plugin, type: exec, command: [./plugin.sh]}
`)
	waitFor(t, "12 entities", 10*time.Second, func() bool {
		out, _ := s.cli("status")
		return strings.Contains(out, `"entities": 12`)
	})
	for _, args := range [][]string{
		{"get-all", "--type", "nova.instanse"},
		{"changes", "--since", "0", "--type", "nova.host,nova.instanse"},
		{"watch", "--type", "nova.instanse"},
	} {
		out, err := s.cli(args...)
		code := err.(*exec.ExitError).ExitCode()
		if code != 2 || !strings.Contains(out, `unknown entity type "nova.instanse"; known types: cinder.volume, heat.stack, nagios,`) ||
			!strings.Contains(out, "switch") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	// A plugin's own type is known once the synchronizer holds one.
	if out, err := s.cli("get-all", "--type", "switch"); err != nil || !strings.Contains(out, `"key": "switch:sw-1"`) {
		t.Errorf("get-all --type switch: %v\n%s", err, out)
	}
	out, err := s.cli("get-all", "-o", "table", "--type", "nova.host")
	if err != nil {
		t.Fatal(err, out)
	}
	want := regexp.MustCompile(`^KEY +NAME +STATE +SOURCE +PARENT\nnova.host:compute-1 +compute-1 +available +topology +nova.zone:nova\nnova.host:compute-2 .*\n2 entities as of seq \d+\n$`)
	if !want.MatchString(out) {
		t.Errorf("get-all -o table:\n%s", out)
	}
	out, err = s.cli("changes", "--since", "0", "--limit", "2", "-o", "table")
	if err != nil || !regexp.MustCompile(`^SEQ +ACTION +KEY +STATE +SOURCE +TIMESTAMP\n1 +create +\S+ .*\n2 +create .*\n2 changes through seq 2; more follow: --since 2\n$`).MatchString(out) {
		t.Errorf("changes -o table: %v\n%s", err, out)
	}
	out, err = s.cli("status", "-o", "table")
	for _, want := range []string{
		"synchronizer v0.0.0-e2e, pid ",
		"database   " + s.db + " (12 entities, change log seq 1..12)",
		"COLLECTOR  TYPE    STATE", "\nplugin     exec    idle   1 ", "\ntopology   static  idle   11 ",
	} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("status -o table lacks %q: %v\n%s", want, err, out)
		}
	}
}

// TestLogLevelReload: log.level changes on reload; --log-level overrides
// the config, also across reloads.
func TestLogLevelReload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		flag []string
		info bool // info lines after the reload to level info
	}{
		{"config", nil, true},
		{"flag wins", []string{"--log-level", "warn"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			topo := filepath.Join(dir, "topology.yaml")
			copyFile(t, "examples/topology.yaml", topo)
			path := filepath.Join(dir, "config.yaml")
			cfg := func(level string) []byte {
				return []byte("socket: s.sock\ndatabase: s.db\nsync: normal\nlog: {level: " + level + "}\n" +
					"collectors:\n  - {name: topology, type: static, path: topology.yaml, interval: 100ms}\n")
			}
			os.WriteFile(path, cfg("warn"), 0o644)
			s := &sidecar{t: t, dir: dir, config: path, socket: filepath.Join(dir, "s.sock")}
			var log logBuffer
			cmd := exec.Command(binary, append([]string{"serve", "--config", path}, tc.flag...)...)
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
			s.waitEntities(11)
			if strings.Contains(log.String(), "level=INFO") {
				t.Fatalf("info lines at level warn:\n%s", log.String())
			}
			hash := func() string {
				out, _ := s.cli("status")
				return regexp.MustCompile(`"hash": "(\w+)"`).FindString(out)
			}
			before := hash()
			os.WriteFile(path, cfg("info"), 0o644)
			waitFor(t, "reload", 10*time.Second, func() bool { return hash() != before })
			// A change of the topology: a "poll done" line at info.
			b, _ := os.ReadFile(topo)
			os.WriteFile(topo, bytes.Replace(b, []byte("SHUTOFF"), []byte("ACTIVE"), 1), 0o644)
			waitFor(t, "the change", 10*time.Second, func() bool {
				out, _ := s.cli("changes", "--since", "11")
				return strings.Contains(out, `"action": "update"`)
			})
			if got := strings.Contains(log.String(), `level=INFO msg="poll done"`); got != tc.info {
				t.Errorf("info lines after the reload to info: %v, want %v\n%s", got, tc.info, log.String())
			}
		})
	}
}

// TestServeFilesystemErrors: serve refuses, with what to do, a socket path
// over the sun_path limit, a socket whose parent is a file, and a database
// directory the service user may not write (SQLite creates -wal, -shm and
// the lock there). The last runs the binary as nobody when the test runs
// as root (root may write anywhere).
func TestServeFilesystemErrors(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "sync-fs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "synchronizer")
	b, _ := os.ReadFile(binary)
	os.WriteFile(bin, b, 0o755)
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o755)
	os.WriteFile(filepath.Join(ro, "s.db"), nil, 0o644)
	rw := filepath.Join(dir, "rw")
	os.Mkdir(rw, 0o777)
	os.Chmod(rw, 0o777)
	long := filepath.Join(dir, strings.Repeat("x", 110)+".sock")
	for _, tc := range []struct {
		name, socket, db string
		asNobody         bool
		want             string
	}{
		{"socket too long", long, filepath.Join(rw, "a.db"), false, "bytes, over the 107-byte limit of a Unix socket address: choose a shorter one"},
		{"socket parent is a file", filepath.Join(dir, "file", "s.sock"), filepath.Join(rw, "b.db"), false, "/file is not a directory: remove it or choose another path"},
		{"database parent is a file", filepath.Join(rw, "c.sock"), filepath.Join(dir, "file", "sub", "c.db"), false, "database " + filepath.Join(dir, "file", "sub", "c.db") + ": " + filepath.Join(dir, "file") + " is not a directory"},
		{"database directory not writable", filepath.Join(rw, "d.sock"), filepath.Join(ro, "s.db"), true,
			"database " + filepath.Join(ro, "s.db") + ": directory " + ro + " is not writable by uid 65534, and the synchronizer creates s.db-wal, s.db-shm and s.db.lock there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "none.yaml"), "--socket", tc.socket, "--database", tc.db)
			os.WriteFile(filepath.Join(dir, "none.yaml"), []byte("log: {level: info}\n"), 0o644)
			if tc.asNobody {
				if os.Geteuid() != 0 {
					os.Chmod(ro, 0o555)
				} else {
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
				}
			}
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q\n%s", tc.want, out)
			}
		})
	}
}
