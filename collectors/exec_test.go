package collectors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config/configtest"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

func execFrom(t *testing.T, dir, script string) Collector {
	t.Helper()
	p := filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	n := configtest.Node(t, `{name: p, type: exec, command: ["`+p+`"]}`)
	c, err := New("exec", Settings{Name: "p", Node: n, Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExec(t *testing.T) {
	cases := []struct {
		name    string
		script  string
		wantErr string
		wantN   int
		all     bool
	}{
		{"object with types", `echo '{"entities":[{"type":"switch","id":"1","data":{"n":1}}],"types":["switch"]}'`, "", 1, false},
		{"bare array owns everything", `echo '[{"type":"switch","id":"1"},{"type":"switch","id":"2"}]'`, "", 2, true},
		{"empty source", `echo '{"entities":[]}'`, "", 0, true},
		{"non-zero exit", `echo '{"entities":[]}'; echo oops >&2; exit 3`, "exit status 3", 0, false},
		{"not JSON", `echo 'hello'`, "invalid output", 0, false},
		{"truncated JSON", `printf '{"entities":[{"type":"s","id":"1"}'`, "invalid output", 0, false},
		{"trailing garbage", `echo '{"entities":[]} x'`, "trailing data", 0, false},
		{"unknown field", `echo '{"entitys":[]}'`, "invalid output", 0, false},
		{"missing id", `echo '{"entities":[{"type":"s"}]}'`, "type and id are required", 0, false},
		{"nothing printed", `true`, "printed nothing", 0, false},
		{"nothing printed, non-zero exit", `echo oops >&2; exit 3`, "exit status 3", 0, false},
		{"truncated output, non-zero exit", `printf '{"entities":[{"type":"s",'; exit 4`, "exit status 4", 0, false},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := execFrom(t, dir, tc.script).Collect(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Entities) != tc.wantN || snap.AllTypes != tc.all {
				t.Fatalf("snapshot %+v", snap)
			}
		})
	}
}

// TestExecTimeoutKillsProcessGroup: a plugin that hangs (and whose child
// keeps stdout open) fails the poll at the time-out.
func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	c := execFrom(t, t.TempDir(), "sleep 30 & sleep 30\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Collect(ctx)
	if err == nil {
		t.Fatal("a hanging plugin did not fail the poll")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("time-out took %v", el)
	}
}

// execCommand builds an exec collector over argv with extra config keys.
func execCommand(t *testing.T, argv []string, extra string) *execCollector {
	t.Helper()
	b, _ := json.Marshal(argv)
	n := configtest.Node(t, `{name: p, type: exec, command: `+string(b)+extra+`}`)
	c, err := New("exec", Settings{Name: "p", Node: n, Dir: ".", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*execCollector)
}

// pidFrom reads the pid a plugin wrote to path.
func pidFrom(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// alive reports whether pid runs: it exists (kill -0) and is not a zombie
// waiting for a reaper that a container may not have.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d outlived the poll", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExecLeavesNoProcess: after every poll the plugin's whole process group
// is gone: a background child with stdout closed (on main it survived every
// successful poll), and a plugin that closes stdout and lingers (its listing
// still counts).
func TestExecLeavesNoProcess(t *testing.T) {
	dir := t.TempDir()
	t.Run("background child", func(t *testing.T) {
		pidFile := filepath.Join(dir, "child.pid")
		c := execCommand(t, []string{"testdata/exec/leaves_child.sh", pidFile}, "")
		for i := 0; i < 3; i++ {
			snap, err := c.Collect(context.Background())
			if err != nil || len(snap.Entities) != 1 {
				t.Fatalf("poll %d: %v %+v", i, err, snap)
			}
			waitGone(t, pidFrom(t, pidFile))
		}
	})
	t.Run("stdout closed early", func(t *testing.T) {
		self, child := filepath.Join(dir, "self.pid"), filepath.Join(dir, "child2.pid")
		c := execCommand(t, []string{"testdata/exec/closes_stdout.sh", self, child}, "")
		c.grace = 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		snap, err := c.Collect(ctx)
		if err != nil || len(snap.Entities) != 2 {
			t.Fatalf("%v %+v", err, snap)
		}
		waitGone(t, pidFrom(t, self))
		waitGone(t, pidFrom(t, child))
	})
}

// TestExecOverLimit: output past max_output is reported as such, with the
// configured limit (on main: "exit status 3" or a broken pipe), and the
// plugin is stopped.
func TestExecOverLimit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ limit, want string }{
		{"1000", "output exceeds max_output 1000 bytes"},
		{"1048576", "output exceeds max_output 1 MiB"},
	} {
		pidFile := filepath.Join(dir, "endless.pid")
		c := execCommand(t, []string{"testdata/exec/endless.sh", pidFile}, ", max_output: "+tc.limit)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := c.Collect(ctx)
		cancel()
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
			t.Fatalf("max_output %s: err %v, want %q", tc.limit, err, tc.want)
		}
		waitGone(t, pidFrom(t, pidFile))
	}
	// Exactly at the limit is not over it.
	out := `{"entities": []}`
	c := execCommand(t, []string{"/bin/echo", "-n", out}, fmt.Sprintf(", max_output: %d", len(out)))
	if _, err := c.Collect(context.Background()); err != nil {
		t.Fatalf("output of exactly max_output: %v", err)
	}
}

// TestExecStreamsOutput: a large output is decoded as it arrives, so the
// heap at its peak holds the entities and little else, where reading the
// whole output first (main) adds the output and its copies. The figures go
// to the test log beside the yardstick of the buffered way, measured here.
func TestExecStreamsOutput(t *testing.T) {
	const n = 12000
	argv := []string{"/usr/bin/python3", "testdata/exec/big.py", strconv.Itoa(n)}
	var size uint64
	// A low GC target makes the heap follow what is live.
	defer debug.SetGCPercent(debug.SetGCPercent(10))

	measure := func(f func() *entity.Snapshot) (peak, retained uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapAlloc
		stop := make(chan struct{})
		done := make(chan uint64)
		go func() {
			var max uint64
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				max = maxU(max, m.HeapAlloc)
				select {
				case <-stop:
					done <- max
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		snap := f()
		close(stop)
		peak = <-done
		runtime.GC()
		runtime.ReadMemStats(&ms)
		retained = ms.HeapAlloc - min(base, ms.HeapAlloc)
		runtime.KeepAlive(snap)
		return peak - min(base, peak), retained
	}
	c := execCommand(t, argv, "")
	peak, retained := measure(func() *entity.Snapshot {
		snap, err := c.Collect(context.Background())
		if err != nil || len(snap.Entities) != n {
			t.Fatalf("%v", err)
		}
		return snap
	})
	// The yardstick: the whole output read first, then decoded.
	bufPeak, bufRetained := measure(func() *entity.Snapshot {
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			t.Fatal(err)
		}
		size = uint64(len(out))
		var o struct {
			Entities []entity.Entity `json:"entities"`
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&o); err != nil {
			t.Fatal(err)
		}
		return &entity.Snapshot{Entities: o.Entities}
	})
	mb := func(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
	t.Logf("output %s; streamed: peak heap %s, entities %s (peak/entities %.2f); buffered yardstick: peak %s, entities %s (ratio %.2f); streamed peak / buffered peak %.2f",
		mb(size), mb(peak), mb(retained), float64(peak)/float64(retained), mb(bufPeak), mb(bufRetained),
		float64(bufPeak)/float64(bufRetained), float64(peak)/float64(bufPeak))
	// The bound: the entities, the GC's 10% and a few MB of buffers; the
	// output itself does not fit in it.
	if bound := retained + retained/8 + 2<<20; peak > bound || bound >= retained+size {
		t.Fatalf("peak heap %s over the bound %s (entities %s, output %s)", mb(peak), mb(bound), mb(retained), mb(size))
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}
