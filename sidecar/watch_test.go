package sidecar

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/openstack-synchronizer/synchronizer/collectors"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

func twoCollectors(dir, changing string) string {
	return "collectors:\n" +
		"  - {name: keep, type: static, path: " + filepath.Join(dir, "a.yaml") + ", interval: 1h}\n" +
		"  - {name: change, type: static, path: " + filepath.Join(dir, "b.yaml") + ", interval: " + changing + "}\n"
}

// TestSaveMethods edits the config each way editors and Kubernetes save a
// file, and checks that the reload happens once, restarts the changed
// collector and leaves the unchanged one alone (same start time, no extra
// poll).
func TestSaveMethods(t *testing.T) {
	for _, tc := range []struct {
		name string
		// layout writes the first config and returns its path; save
		// replaces its content.
		layout func(t *testing.T, dir, body string) string
		save   func(t *testing.T, dir, path, body string)
	}{
		{"write in place",
			func(t *testing.T, dir, body string) string {
				p := filepath.Join(dir, "config.yaml")
				writeFile(t, p, body)
				return p
			},
			func(t *testing.T, dir, path, body string) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
				if err != nil {
					t.Fatal(err)
				}
				// Two writes, as an editor flushing its buffer may do.
				f.WriteString(body[:len(body)/2])
				f.Sync()
				f.WriteString(body[len(body)/2:])
				f.Close()
			}},
		{"write and rename",
			func(t *testing.T, dir, body string) string {
				p := filepath.Join(dir, "config.yaml")
				writeFile(t, p, body)
				return p
			},
			func(t *testing.T, dir, path, body string) { saveRename(t, path, body) }},
		{"configmap symlink swap",
			func(t *testing.T, dir, body string) string {
				cm := filepath.Join(dir, "cm")
				os.MkdirAll(filepath.Join(cm, "..2026_11_25_01"), 0o755)
				writeFile(t, filepath.Join(cm, "..2026_11_25_01", "config.yaml"), body)
				must(t, os.Symlink("..2026_11_25_01", filepath.Join(cm, "..data")))
				must(t, os.Symlink("..data/config.yaml", filepath.Join(cm, "config.yaml")))
				return filepath.Join(cm, "config.yaml")
			},
			func(t *testing.T, dir, path, body string) {
				// What the kubelet's atomic writer does.
				cm := filepath.Dir(path)
				os.MkdirAll(filepath.Join(cm, "..2026_11_25_02"), 0o755)
				writeFile(t, filepath.Join(cm, "..2026_11_25_02", "config.yaml"), body)
				must(t, os.Symlink("..2026_11_25_02", filepath.Join(cm, "..data_tmp")))
				must(t, os.Rename(filepath.Join(cm, "..data_tmp"), filepath.Join(cm, "..data")))
				must(t, os.RemoveAll(filepath.Join(cm, "..2026_11_25_01")))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			topology(t, filepath.Join(dir, "a.yaml"), 2, "available")
			topology(t, filepath.Join(dir, "b.yaml"), 3, "available")
			path := tc.layout(t, dir, header(dir)+twoCollectors(dir, "1h"))
			h := startAt(t, dir, path)
			before := h.settle()
			keep, _ := before.unit("keep")
			change, _ := before.unit("change")

			tc.save(t, dir, path, header(dir)+twoCollectors(dir, "2h"))
			var after status
			waitFor(t, "reload", 10*time.Second, func() bool {
				after = h.status()
				c, _ := after.unit("change")
				return c.Interval == "2h0m0s"
			})
			time.Sleep(300 * time.Millisecond) // six debounce periods: any second reload would show
			after = h.status()
			if after.Config.Reloads != before.Config.Reloads+1 {
				t.Errorf("reloads %d -> %d, want one reload\n%s", before.Config.Reloads, after.Config.Reloads, h.log)
			}
			if after.Config.LastError != "" || after.Config.Hash == before.Config.Hash {
				t.Errorf("config after reload: %s", after)
			}
			k, _ := after.unit("keep")
			if k.Polls != keep.Polls || !k.StartedAt.Equal(keep.StartedAt) {
				t.Errorf("unchanged collector restarted or polled: before %+v after %+v", keep, k)
			}
			c, _ := after.unit("change")
			if !c.StartedAt.After(change.StartedAt) {
				t.Errorf("changed collector not restarted: before %+v after %+v", change, c)
			}
			if strings.Contains(h.log.String(), "config reload failed") {
				t.Errorf("a partly written file was read\n%s", h.log)
			}
			if n := strings.Count(h.log.String(), "msg=\"config reloaded\""); n != 1 {
				t.Errorf("%d reload log lines\n%s", n, h.log)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDataFileChangeTriggersPoll edits a static topology file: its
// collector polls at once (its interval is an hour) and the other does not.
func TestDataFileChangeTriggersPoll(t *testing.T) {
	h := start(t, twoCollectors("", "1h"))
	before := h.settle()
	topology(t, filepath.Join(h.dir, "b.yaml"), 3, "unavailable")
	waitFor(t, "poll after the topology edit", 10*time.Second, func() bool {
		c, _ := h.status().unit("change")
		return c.Polls == 2
	})
	after := h.status()
	k0, _ := before.unit("keep")
	k1, _ := after.unit("keep")
	if k1.Polls != k0.Polls || after.Config.Reloads != before.Config.Reloads {
		t.Errorf("unrelated collector polled or config reloaded: %s", after)
	}
	if after.ChangeLog.LastSeq != before.ChangeLog.LastSeq+3 {
		t.Errorf("change log %d -> %d, want 3 updates", before.ChangeLog.LastSeq, after.ChangeLog.LastSeq)
	}
}

// TestSIGHUPForcesReload: a forced reload of an unchanged file restarts
// nothing.
func TestSIGHUPForcesReload(t *testing.T) {
	h := start(t, twoCollectors("", "1h"))
	before := h.settle()
	h.reload <- struct{}{}
	waitFor(t, "forced reload", 10*time.Second, func() bool { return h.status().Config.Reloads == before.Config.Reloads+1 })
	after := h.status()
	untouched(t, "a reload of the same file", before, after, "keep", "change")
}

// TestDependencyFileRestartsItsUser edits the clouds.yaml an openstack
// collector reads when it is built: that collector alone is rebuilt and
// restarted; a clouds.yaml without the cloud is a failed reload that keeps
// it running.
func TestDependencyFileRestartsItsUser(t *testing.T) {
	dir := t.TempDir()
	topology(t, filepath.Join(dir, "a.yaml"), 2, "available")
	clouds := func(region string) string {
		return "clouds:\n  test:\n    region_name: " + region + "\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n" +
			"      username: u\n      password: secret\n      project_name: p\n      user_domain_name: Default\n      project_domain_name: Default\n"
	}
	writeFile(t, filepath.Join(dir, "clouds.yaml"), clouds("RegionOne"))
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, header(dir)+`collectors:
  - {name: keep, type: static, path: a.yaml, interval: 1h}
  - {name: cloud, type: openstack, cloud: test, clouds_file: clouds.yaml, interval: 1h, retries: 0, request_timeout: 1s}
`)
	h := startAt(t, dir, path)
	var before status
	waitFor(t, "first polls", 10*time.Second, func() bool {
		before = h.status()
		k, _ := before.unit("keep")
		c, _ := before.unit("cloud")
		return k.Polls == 1 && c.Polls == 1
	})
	saveRename(t, filepath.Join(dir, "clouds.yaml"), clouds("RegionTwo"))
	h.restartedAlone(before, "cloud", "keep")
	if strings.Contains(h.log.String(), "secret") {
		t.Errorf("a password reached the log")
	}
	writeFile(t, filepath.Join(dir, "clouds.yaml"), "clouds: {}\n")
	waitFor(t, "reload error", 10*time.Second, func() bool { return h.status().Config.LastError != "" })
	st := h.status()
	if c, ok := st.unit("cloud"); !ok || !strings.Contains(st.Config.LastError, `line 6: collectors[1] (cloud): openstack collector "cloud": openstack: cloud "test" not found in `) {
		t.Errorf("after a clouds.yaml without the cloud: %+v, error %q", c, st.Config.LastError)
	}
}

// TestWatcherSetupFailureIsRetried: a process at its descriptor limit
// cannot create the inotify watcher at start. The sidecar keeps serving,
// logs it, reloads on SIGHUP meanwhile and follows file edits once the
// watcher can be set up.
func TestWatcherSetupFailureIsRetried(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var attempts atomic.Int32
	orig, origRetry := newFSWatcher, watcherRetry
	newFSWatcher = func() (*fsnotify.Watcher, error) {
		attempts.Add(1)
		if failing.Load() {
			return nil, fmt.Errorf("inotify_init1: %w", syscall.EMFILE)
		}
		return orig()
	}
	watcherRetry = 20 * time.Millisecond
	t.Cleanup(func() { newFSWatcher, watcherRetry = orig, origRetry })

	h := start(t, twoCollectors("", "1h"))
	before := h.firstPolls()
	waitFor(t, "a second attempt", 10*time.Second, func() bool { return attempts.Load() >= 2 })
	if !strings.Contains(h.log.String(), "cannot watch the config files") {
		t.Fatalf("failure not logged:\n%s", h.log)
	}
	h.reload <- struct{}{}
	waitFor(t, "SIGHUP reload without a watcher", 10*time.Second, func() bool {
		return h.status().Config.Reloads == before.Config.Reloads+1
	})

	// An edit made while there is no watcher (no event will come for it)
	// is reloaded once the watcher is set up.
	saveRename(t, h.path, header(h.dir)+twoCollectors("", "2h"))
	failing.Store(false)
	waitFor(t, "the watcher set up", 10*time.Second, func() bool {
		return strings.Contains(h.log.String(), "watching the config files again")
	})
	waitFor(t, "the edit made without a watcher reloaded", 10*time.Second, func() bool {
		return h.status().Config.Reloads == before.Config.Reloads+2
	})
	topology(t, filepath.Join(h.dir, "b.yaml"), 3, "unavailable")
	waitFor(t, "poll after the topology edit", 10*time.Second, func() bool {
		c, _ := h.status().unit("change")
		return c.Polls == 2
	})
}

// rulesCollector is a collector type with a file-valued setting no other
// code knows of: it is watched because the collector reports reading it.
type rulesCollector struct{ file string }

func (c rulesCollector) Collect(context.Context) (*entity.Snapshot, error) {
	return &entity.Snapshot{}, nil
}

func (c rulesCollector) Files() []string { return []string{c.file} }

func init() {
	collectors.Register("rulesfile", func(s collectors.Settings) (collectors.Collector, error) {
		var st struct {
			config.Common `yaml:",inline"`
			RulesFile     string `yaml:"rules_file"`
		}
		if err := config.DecodeStrict(s.Node, &st); err != nil {
			return nil, err
		}
		f := filepath.Join(s.Dir, st.RulesFile)
		if _, err := os.ReadFile(f); err != nil {
			return nil, err
		}
		return rulesCollector{file: f}, nil
	})
}

// TestReportedFileRestartsItsUser: a collector rebuilt when a file it
// reports reading (collectors.FileReader) is edited, with no list of
// file-valued settings anywhere in the sidecar; the others are untouched.
func TestReportedFileRestartsItsUser(t *testing.T) {
	dir := t.TempDir()
	topology(t, filepath.Join(dir, "a.yaml"), 2, "available")
	writeFile(t, filepath.Join(dir, "rules.txt"), "one\n")
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, header(dir)+`collectors:
  - {name: keep, type: static, path: a.yaml, interval: 1h}
  - {name: rules, type: rulesfile, rules_file: rules.txt, interval: 1h}
`)
	h := startAt(t, dir, path)
	before := h.settle()
	saveRename(t, filepath.Join(dir, "rules.txt"), "two\n")
	h.restartedAlone(before, "rules", "keep")
}

// restartedAlone waits for collector changed to restart after an edit of
// a file it reads, and checks that the edit was one reload that left
// collector kept alone (same start, no extra poll).
func (h *harness) restartedAlone(before status, changed, kept string) {
	h.t.Helper()
	var after status
	waitFor(h.t, changed+" restarted", 10*time.Second, func() bool {
		after = h.status()
		c, _ := after.unit(changed)
		b, _ := before.unit(changed)
		return c.StartedAt.After(b.StartedAt)
	})
	k0, _ := before.unit(kept)
	k1, _ := after.unit(kept)
	if k1.Polls != k0.Polls || !k1.StartedAt.Equal(k0.StartedAt) || after.Config.Reloads != before.Config.Reloads+1 {
		h.t.Errorf("%s touched by an edit of a file %s reads: %+v -> %+v", kept, changed, k0, k1)
	}
}
