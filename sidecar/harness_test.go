package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/collectors"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/eventually"
	"github.com/openstack-synchronizer/synchronizer/logbuf"
	"github.com/openstack-synchronizer/synchronizer/rpc"
	"github.com/openstack-synchronizer/synchronizer/store/storetest"
)

// harness runs a synchronizer in the test process on a config file in a
// temporary directory, with the real store, engine, socket and watcher.
type harness struct {
	t      *testing.T
	dir    string // where topology files and (usually) the config live
	path   string // the config file
	socket string
	log    *logbuf.Buffer
	reload chan struct{}
	stop   context.CancelFunc
	done   chan error
}

// header puts the socket and the database in dir, by absolute path, so that
// a config file elsewhere (a ConfigMap layout) finds them.
func header(dir string) string {
	return "socket: " + filepath.Join(dir, "s.sock") + "\ndatabase: " + filepath.Join(dir, "s.db") + "\nsync: normal\n"
}

// topology writes a static topology file with n hosts in state, plus one
// instance on the first; ids start with the file's name ("b-h0", "b-vm").
func topology(t *testing.T, path string, n int, state string) {
	t.Helper()
	p := strings.TrimSuffix(filepath.Base(path), ".yaml") + "-"
	var b strings.Builder
	b.WriteString("definitions:\n  entities:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    - {static_id: h%d, type: nova.host, id: %sh%d, state: %s}\n", i, p, i, state)
	}
	b.WriteString("    - {static_id: vm, type: nova.instance, id: " + p + "vm, state: ACTIVE}\n")
	b.WriteString("  relationships:\n    - {source: h0, target: vm, relationship_type: contains}\n")
	writeFile(t, path, b.String())
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startAt starts a sidecar on the config file at path (already written).
func startAt(t *testing.T, dir, path string) *harness {
	t.Helper()
	schema := storetest.Schema(t)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, path: cfg.Path, socket: cfg.Abs(cfg.Socket), log: &logbuf.Buffer{},
		reload: make(chan struct{}, 1), done: make(chan error, 1)}
	ctx, stop := context.WithCancel(context.Background())
	h.stop = stop
	log := slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		h.done <- Run(ctx, Options{Config: cfg, ConfigPath: cfg.Path, Schema: schema,
			Logger: log, Reload: h.reload, Debounce: 50 * time.Millisecond})
	}()
	t.Cleanup(func() { h.shutdown() })
	waitFor(t, "socket", 10*time.Second, func() bool {
		select {
		case err := <-h.done:
			t.Fatalf("sidecar exited at start: %v\n%s", err, h.log)
		default:
		}
		c, err := net.Dial("unix", h.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return h
}

// start writes header+body as dir/config.yaml and starts a sidecar on it.
func start(t *testing.T, body string) *harness {
	t.Helper()
	dir := t.TempDir()
	topology(t, filepath.Join(dir, "a.yaml"), 2, "available")
	topology(t, filepath.Join(dir, "b.yaml"), 3, "available")
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, header(dir)+body)
	return startAt(t, dir, path)
}

// shutdown stops the sidecar and returns Run's error (nil twice).
func (h *harness) shutdown() error {
	if h.stop == nil {
		return nil
	}
	h.stop()
	h.stop = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatalf("sidecar did not stop within 10s\n%s", h.log)
		return nil
	}
}

// status calls the status RPC.
func (h *harness) status() status {
	h.t.Helper()
	var st status
	h.call("status", struct{}{}, &st)
	return st
}

func (h *harness) call(method string, params, result any) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, h.socket)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(ctx, method, params, result); err != nil {
		h.t.Fatalf("%s: %v", method, err)
	}
}

// keys returns the keys get_all returns.
func (h *harness) keys(types ...string) []string {
	h.t.Helper()
	var all struct {
		Entities []struct{ Key string } `json:"entities"`
	}
	h.call("get_all", map[string]any{"types": types}, &all)
	out := []string{}
	for _, e := range all.Entities {
		out = append(out, e.Key)
	}
	return out
}

type status struct {
	Config struct {
		Path         string    `json:"path"`
		Hash         string    `json:"hash"`
		LoadedAt     time.Time `json:"loaded_at"`
		Reloads      int64     `json:"reloads"`
		LastError    string    `json:"last_error"`
		NeedsRestart []string  `json:"needs_restart"`
		Active       []string  `json:"active_entity_types"`
	} `json:"config"`
	// The sidecar's own types: the JSON they decode from is pinned by
	// TestStatusJSON.
	Collectors []collectors.Status `json:"collectors"`
	Listeners  []listenerStatus    `json:"listeners"`
	Entities   int                 `json:"entities"`
	ChangeLog  struct {
		FirstSeq int64 `json:"first_seq"`
		LastSeq  int64 `json:"last_seq"`
	} `json:"change_log"`
}

// untouched fails t unless each named unit is in after, neither restarted
// nor polled since before; by says what happened in between.
func untouched(t *testing.T, by string, before, after status, names ...string) {
	t.Helper()
	for _, name := range names {
		b, _ := before.unit(name)
		a, ok := after.unit(name)
		if !ok || a.Polls != b.Polls || !a.StartedAt.Equal(b.StartedAt) {
			t.Errorf("%s restarted or polled by %s: %+v -> %+v", name, by, b, a)
		}
	}
}

func (st status) unit(name string) (collectors.Status, bool) {
	for _, u := range st.Collectors {
		if u.Name == name {
			return u, true
		}
	}
	return collectors.Status{}, false
}

func (st status) String() string {
	b, _ := json.MarshalIndent(st, "", "  ")
	return string(b)
}

// waitFor waits, at least eventually.Min, for what must happen eventually.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	eventually.True(t, what, timeout, cond)
}

// settle waits until every collector has polled at least once and the
// config watcher is set up.
func (h *harness) settle() status {
	h.t.Helper()
	h.firstPolls()
	// The watcher is set up after the units have started: a data file
	// edited before it is not seen (a config edit is).
	waitFor(h.t, "the config watcher", 10*time.Second, func() bool {
		return strings.Contains(h.log.String(), "config watcher started")
	})
	return h.status()
}

// firstPolls waits until every collector has polled at least once.
func (h *harness) firstPolls() status {
	h.t.Helper()
	var st status
	waitFor(h.t, "first polls", 10*time.Second, func() bool {
		st = h.status()
		if st.Config.Hash == "" {
			return false // the baseline is still loading: no units yet
		}
		for _, u := range st.Collectors {
			if u.LastSuccess.IsZero() {
				return false
			}
		}
		return true
	})
	// status reads the change log before the collectors: read it again
	// now that every first poll has committed.
	return h.status()
}

// saveRename replaces a file the way most editors do: write a temporary
// file beside it, then rename it over the original.
func saveRename(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp~"
	writeFile(t, tmp, s)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
