package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners"
)

// gapBus is a listener type for these tests: it reports the gaps handed to
// gapReqs as a real listener reports a new queue or a lost connection.
type gapBus struct{}

var gapReqs = make(chan listeners.Gap, 10)

func init() {
	listeners.Register("gapbus", func(s listeners.Settings) (listeners.Listener, error) { return gapBus{}, nil })
}

func (gapBus) Run(ctx context.Context, sink listeners.Sink) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case g := <-gapReqs:
			sink.(listeners.CatchUpper).CatchUp(g)
		}
	}
}

// execLister is an exec collector that lists no entity and says it listed
// types completely.
func execLister(t *testing.T, dir, name string, types ...string) string {
	out, _ := json.Marshal(map[string]any{"types": types, "entities": []any{}})
	path := filepath.Join(dir, name+".json")
	writeFile(t, path, string(out))
	return fmt.Sprintf("  - {name: %s, type: exec, command: [cat, %s], interval: 1h}\n", name, path)
}

// TestCatchUpPollsOwners: when a listener may have missed notifications,
// the collectors that list its types, and the one it names as owner, poll
// at once; the others do not; status tells.
func TestCatchUpPollsOwners(t *testing.T) {
	dir := t.TempDir()
	h := start(t, "listeners:\n  - {name: bus, type: gapbus}\ncollectors:\n"+
		execLister(t, dir, "nova", "nova.instance")+execLister(t, dir, "named", "other.type")+execLister(t, dir, "switches", "switch"))
	h.settle()
	gapReqs <- listeners.Gap{Reason: "queue_created", Owner: "named", Types: []string{"nova.host", "nova.instance"}}
	polls := func(st map[string]any) map[string]float64 {
		out := map[string]float64{}
		for _, c := range st["collectors"].([]any) {
			c := c.(map[string]any)
			out[c["name"].(string)] = c["polls"].(float64)
		}
		return out
	}
	var st map[string]any
	waitFor(t, "the catch-up polls", 10*time.Second, func() bool {
		st = map[string]any{}
		h.call("status", struct{}{}, &st)
		l := st["listeners"].([]any)[0].(map[string]any)
		return l["catch_up_polls"] == 2.0
	})
	time.Sleep(200 * time.Millisecond) // room for an unwanted third
	h.call("status", struct{}{}, &st)
	if p := polls(st); p["nova"] != 2 || p["named"] != 2 || p["switches"] != 1 {
		t.Fatalf("polls %v: want nova and named polled again, switches not", p)
	}
	l := st["listeners"].([]any)[0].(map[string]any)
	last, _ := l["last_catch_up"].(map[string]any)
	var names []string
	for _, c := range last["collectors"].([]any) {
		names = append(names, c.(string))
	}
	if l["catch_ups"] != 1.0 || l["catch_up_polls"] != 2.0 || l["catch_up_failures"] != 0.0 || last["reason"] != "queue_created" ||
		!slices.Equal(names, []string{"named", "nova"}) || last["last_poll_done_at"] == nil {
		t.Fatalf("listener status %v", l)
	}
}
