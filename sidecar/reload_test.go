package sidecar

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestBadEdits: every kind of bad edit keeps the running configuration
// (nothing restarted), and status shows the error with the file and line
// until a valid file replaces it.
func TestBadEdits(t *testing.T) {
	good := twoCollectors("", "1h")
	for _, tc := range []struct {
		name, body, want string
	}{
		{"invalid yaml", "collectors:\n  - {name: keep, type: static\n", // the unclosed flow mapping is on line 5 (after 3 header lines)
			"invalid configuration: yaml: line 5: did not find expected ',' or '}'"},
		{"unknown collector type", strings.Replace(good, "name: change, type: static", "name: change, type: statik", 1),
			"line 6: collectors[1] (change): unknown collector type \"statik\""},
		{"duplicate name", strings.Replace(good, "name: change", "name: keep", 1),
			"invalid configuration: line 6: collectors[1].name: \"keep\" is already used by collectors[0]"},
		{"missing required field", strings.Replace(good, "path: b.yaml, ", "", 1),
			"line 6: collectors[1] (change): static: path: required"},
		{"bad interval", strings.Replace(good, "interval: 1h}\n", "interval: 0.5}\n", 1),
			"invalid configuration: collectors[0]: line 5: duration \"0.5\": use a number with a unit such as \"30s\" or \"5m\""},
		{"empty file", "", "invalid configuration: the file is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, good)
			before := h.settle()
			if tc.body == "" {
				saveRename(t, h.path, "\n")
			} else {
				saveRename(t, h.path, header(h.dir)+tc.body)
			}
			var st status
			waitFor(t, "reload error in status", 10*time.Second, func() bool {
				st = h.status()
				return st.Config.LastError != ""
			})
			if !strings.HasPrefix(st.Config.LastError, h.path+": ") || !strings.Contains(st.Config.LastError, tc.want) {
				t.Errorf("status last_error\n got: %s\nwant: %s: ...%s", st.Config.LastError, h.path, tc.want)
			}
			// The log shows the same error (slog quotes it).
			if logged := h.log.String(); !strings.Contains(logged, "config reload failed") || !strings.Contains(logged, strings.Trim(strconv.Quote(tc.want), `"`)) {
				t.Errorf("log does not show the error\n%s", h.log)
			}
			if st.Config.Hash != before.Config.Hash || st.Config.Reloads != before.Config.Reloads {
				t.Errorf("running config changed: %s", st)
			}
			untouched(t, "a bad edit", before, st, "keep", "change")
			// The same file again, made valid: the error goes, nothing restarts.
			saveRename(t, h.path, header(h.dir)+good)
			waitFor(t, "error cleared", 10*time.Second, func() bool {
				st = h.status()
				return st.Config.LastError == ""
			})
			untouched(t, "restoring the same config", before, st, "keep", "change")
		})
	}
}

// TestRemovedCollector removes a collector under both policies.
func TestRemovedCollector(t *testing.T) {
	for _, policy := range []string{"", "keep", "delete"} {
		t.Run("policy="+policy, func(t *testing.T) {
			extra := ""
			if policy != "" {
				extra = "removed_collector: " + policy + "\n"
			}
			h := start(t, extra+twoCollectors("", "1h"))
			before := h.settle()
			if n := len(h.keys()); n != 7 {
				t.Fatalf("%d entities at start, want 7", n)
			}
			saveRename(t, h.path, header(h.dir)+extra+"collectors:\n  - {name: keep, type: static, path: a.yaml, interval: 1h}\n")
			waitFor(t, "collector removed", 10*time.Second, func() bool { return len(h.status().Collectors) == 1 })
			st := h.status()
			want, changes := 7, int64(0)
			if policy == "delete" {
				want, changes = 3, 4
			}
			if n := len(h.keys()); n != want || st.ChangeLog.LastSeq != before.ChangeLog.LastSeq+changes {
				t.Errorf("after removal: %d entities (want %d), seq %d -> %d", n, want, before.ChangeLog.LastSeq, st.ChangeLog.LastSeq)
			}
		})
	}
}

// TestActiveTypes turns types off and on again: inactive types are hidden
// from get_all and from new changes, are not deleted, and the collector
// keeps running.
func TestActiveTypes(t *testing.T) {
	body := "collectors:\n  - {name: topo, type: static, path: b.yaml, interval: 1h}\n"
	h := start(t, body)
	before := h.settle()
	saveRename(t, h.path, header(h.dir)+"active_entity_types: [nova.host]\n"+body)
	waitFor(t, "active types", 10*time.Second, func() bool { return len(h.status().Config.Active) == 1 })
	if keys := h.keys(); len(keys) != 3 || slices.Contains(keys, "nova.instance:b-vm") {
		t.Errorf("get_all with nova.host active: %v", keys)
	}
	if keys := h.keys("nova.instance"); len(keys) != 0 {
		t.Errorf("get_all of an inactive type: %v", keys)
	}
	// A poll hands the engine a snapshot without the instance (filtered
	// out): it is not deleted, as its type is not among the listed ones.
	topology(t, filepath.Join(h.dir, "b.yaml"), 3, "unavailable")
	var st status
	waitFor(t, "poll", 10*time.Second, func() bool {
		u, _ := h.status().unit("topo")
		return u.Polls == 2
	})
	st = h.status()
	u, _ := st.unit("topo")
	b, _ := before.unit("topo")
	if !u.StartedAt.Equal(b.StartedAt) {
		t.Errorf("collector restarted by an active types change")
	}
	if st.Entities != 4 || st.ChangeLog.LastSeq != before.ChangeLog.LastSeq+3 {
		t.Errorf("after a poll with nova.host active: %d entities, seq %d -> %d", st.Entities, before.ChangeLog.LastSeq, st.ChangeLog.LastSeq)
	}
	var ch struct {
		Changes []struct{ Key string } `json:"changes"`
	}
	h.call("changes", map[string]any{"since": 0}, &ch)
	for _, c := range ch.Changes {
		if strings.HasPrefix(c.Key, "nova.instance:") {
			t.Errorf("changes shows an inactive type: %s", c.Key)
		}
	}
	// All types again: the instance is visible again.
	saveRename(t, h.path, header(h.dir)+body)
	waitFor(t, "all types", 10*time.Second, func() bool { return len(h.status().Config.Active) == 0 })
	if keys := h.keys(); len(keys) != 4 {
		t.Errorf("get_all with all types: %v", keys)
	}
}

// TestNoGoroutineLeak reloads 100 times, alternating configs that restart a
// collector, then stops: no goroutine may be left.
func TestNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := start(t, twoCollectors("", "1h"))
	h.settle()
	for i := 0; i < 100; i++ {
		saveRename(t, h.path, header(h.dir)+twoCollectors("", fmt.Sprintf("%dm", 60+i)))
		h.reload <- struct{}{}
		want := (time.Duration(60+i) * time.Minute).String()
		waitFor(t, "reload "+want, 10*time.Second, func() bool {
			c, _ := h.status().unit("change")
			return c.Interval == want
		})
	}
	if err := h.shutdown(); err != nil {
		t.Fatal(err)
	}
}

// TestStatusFields checks what status promises after a reload that needs a
// restart for one of its settings.
func TestStatusFields(t *testing.T) {
	h := start(t, twoCollectors("", "1h"))
	h.settle()
	saveRename(t, h.path, header(h.dir)+"subscriber_queue: 10\n"+twoCollectors("", "1h"))
	var st status
	waitFor(t, "needs_restart", 10*time.Second, func() bool {
		st = h.status()
		return len(st.Config.NeedsRestart) > 0
	})
	if !strings.Contains(st.Config.NeedsRestart[0], "subscriber_queue") {
		t.Errorf("needs_restart %v", st.Config.NeedsRestart)
	}
	// Another reload that changes something else still reports it.
	saveRename(t, h.path, header(h.dir)+"subscriber_queue: 10\n"+twoCollectors("", "2h"))
	waitFor(t, "second reload", 10*time.Second, func() bool {
		st = h.status()
		u, _ := st.unit("change")
		return u.Interval == "2h0m0s" && !u.LastSuccess.IsZero()
	})
	if len(st.Config.NeedsRestart) == 0 || !strings.Contains(st.Config.NeedsRestart[0], "subscriber_queue") {
		t.Errorf("needs_restart after a second reload: %v", st.Config.NeedsRestart)
	}
	if st.Config.Path != h.path || len(st.Config.Hash) != 64 || st.Config.LoadedAt.IsZero() || time.Since(st.Config.LoadedAt) > time.Minute {
		t.Errorf("config status %s", st)
	}
	u, _ := st.unit("change")
	if u.State != "idle" || u.LastSuccess.IsZero() || u.Entities["nova.host"] != 3 || u.Entities["nova.instance"] != 1 {
		t.Errorf("collector status %+v", u)
	}
	if st.ChangeLog.FirstSeq != 1 || st.ChangeLog.LastSeq != 7 {
		t.Errorf("change log %+v", st.ChangeLog)
	}
}
