package sidecar

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/golden"
)

// TestStatusJSON pins the bytes of the status RPC's answer (docs/contract.md):
// which keys, in which order, when, and of which JSON type, for a collector
// that succeeds, one that fails, a listener with details and a catch-up,
// and a failed reload. Values that change from run to run (times,
// durations, paths, ids, counters) are masked; the rest is compared byte
// for byte, so a refactor of how status is built cannot change it unseen.
func TestStatusJSON(t *testing.T) {
	dir := t.TempDir()
	body := "listeners:\n  - {name: bus, type: testbus}\n" + twoCollectors(dir, "1h") +
		"  - {name: broken, type: exec, command: [false], interval: 1h}\n"
	topology(t, filepath.Join(dir, "a.yaml"), 2, "available")
	topology(t, filepath.Join(dir, "b.yaml"), 3, "available")
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, header(dir)+body)
	h := startAt(t, dir, path)
	waitFor(t, "every collector polled", 10*time.Second, func() bool {
		st := h.status()
		n := 0
		for _, u := range st.Collectors {
			if u.Polls > 0 {
				n++
			}
		}
		return n == 3
	})
	busEvents <- []entity.Event{{Action: entity.Update, Entity: entity.Entity{Type: "nova.instance", ID: "pushed", State: "ACTIVE"}}}
	if err := <-busApplied; err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, header(dir)+body+"bogus: [\n")
	waitFor(t, "the failed reload", 10*time.Second, func() bool { return h.status().Config.LastError != "" })

	var raw json.RawMessage
	h.call("status", struct{}{}, &raw)
	golden.Check(t, filepath.Join("testdata", "status.golden.json"), maskStatus(raw, dir))
}

var statusMasks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)"`), `"TIME"`},
	{regexp.MustCompile(`("(?:last_duration|full_every)":)"[^"]*"`), `$1"DUR"`},
	{regexp.MustCompile(`("(?:database_id|hash|revision|goversion|version|last_error)":)"[^"]*"`), `$1"STR"`},
	{regexp.MustCompile(`(":)-?\d+(\.\d+)?([eE][+-]?\d+)?([,}\]])`), `${1}0$4`},
}

func maskStatus(raw []byte, dir string) []byte {
	out := regexp.MustCompile(regexp.QuoteMeta(dir)).ReplaceAll(raw, []byte("DIR"))
	for _, m := range statusMasks {
		out = m.re.ReplaceAll(out, []byte(m.with))
	}
	return out
}
