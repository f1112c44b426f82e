package publishers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/store"
)

type rig struct {
	t    *testing.T
	dir  string
	st   *store.Store
	eng  *engine.Engine
	n    int // entities made so far
	wake *Set
}

func openRig(t *testing.T, dir string) *rig {
	t.Helper()
	schema, err := os.ReadFile("../schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "s.db"), string(schema), store.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng, err := engine.New(context.Background(), st, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, dir: dir, st: st, eng: eng}
}

// publisher makes an amqp-stream publisher from YAML and hooks it to the
// engine as the sidecar does.
func (r *rig) publisher(conf string) *Set {
	r.t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		r.t.Fatal(err)
	}
	p, err := newAMQPStream(Settings{Name: "s", Node: n.Content[0], Dir: r.dir, Store: r.st})
	if err != nil {
		r.t.Fatal(err)
	}
	set := &Set{names: []string{"s"}, pubs: []Publisher{p}, log: p.(*amqpStream).log}
	r.eng.SetPublisher(set)
	r.eng.SetPruneFloor(set.Floor)
	return set
}

// run runs set until the returned stop is called.
func run(set *Set) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); set.Run(ctx) }()
	return func() { cancel(); <-done }
}

// changes commits n creates, in batches.
func (r *rig) changes(n int) {
	r.t.Helper()
	ctx := context.Background()
	for n > 0 {
		b := min(n, 5000)
		evs := make([]entity.Event, b)
		for i := range evs {
			r.n++
			evs[i] = entity.Event{Action: entity.Create, Entity: entity.Entity{
				Key: fmt.Sprintf("host:h%07d", r.n), Type: "host", ID: fmt.Sprintf("h%07d", r.n),
				Name: fmt.Sprintf("h%d", r.n), State: "up", Timestamp: time.Now().UTC(), Data: map[string]any{"i": r.n},
			}}
		}
		if _, err := r.eng.ApplyEvents(ctx, "gen", evs); err != nil {
			r.t.Fatal(err)
		}
		n -= b
	}
}

func streamConf(stream, url string, extra string) string {
	return fmt.Sprintf("name: s\ntype: amqp-stream\nurls: [%q]\nstream: %s\nmin_backoff: 50ms\nmax_backoff: 500ms\n%s", url, stream, extra)
}

// newStream names a stream of the test's own, deleted after it.
func newStream(t *testing.T) string {
	name := amqptest.Name("stream")
	amqptest.DeleteQueueAfter(t, name)
	return name
}

// collect reads the stream from since until the change with seq until has
// been seen, and returns every message delivered to fn, in order.
func collect(t *testing.T, url, stream string, since, until int64) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out []Message
	done := fmt.Errorf("done")
	err := ReadStream(ctx, ReadOptions{URL: url, Stream: stream, Since: since}, func(m Message) error {
		m.Body = append([]byte(nil), m.Body...)
		out = append(out, m)
		if m.Seq >= until {
			return done
		}
		return nil
	})
	if err != done {
		t.Fatalf("read stream %s: %v (got %d messages)", stream, err, len(out))
	}
	return out
}

// checkSeqs fails unless msgs are exactly the changes from..through, in order.
func checkSeqs(t *testing.T, msgs []Message, from, through int64) {
	t.Helper()
	if int64(len(msgs)) != through-from+1 {
		t.Errorf("got %d messages, want %d (seq %d..%d)", len(msgs), through-from+1, from, through)
	}
	for i, m := range msgs {
		if m.Seq != from+int64(i) {
			t.Fatalf("message %d: seq %d, want %d", i, m.Seq, from+int64(i))
		}
	}
}

func waitCursor(t *testing.T, set *Set, seq int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for set.Status()["s"].Cursor < seq {
		if time.Now().After(deadline) {
			t.Fatalf("cursor at %d, want %d: %+v", set.Status()["s"].Cursor, seq, set.Status()["s"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamPublishesEveryChangeToThreeConsumers(t *testing.T) {
	const n = 100_000
	r := openRig(t, t.TempDir())
	stream := newStream(t)
	set := r.publisher(streamConf(stream, amqptest.Broker, ""))
	stop := run(set)
	defer stop()
	r.changes(n)
	waitCursor(t, set, n)
	st := set.Status()["s"]
	if st.Lag != 0 || !st.Connected || st.Published < n {
		t.Errorf("status after catching up: %+v", st)
	}
	// The cursor is in meta: a restart resumes there.
	stop()
	if v, _ := r.st.Meta(context.Background(), "publisher.s.cursor"); v != fmt.Sprint(n) {
		t.Errorf("saved cursor %q, want %d", v, n)
	}
	var wg sync.WaitGroup
	got := make([][]Message, 3)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = collect(t, amqptest.Broker, stream, -1, n) }()
	}
	wg.Wait()
	for i := range got {
		checkSeqs(t, got[i], 1, n)
	}
	// The body is the change object of the contract; headers match it.
	var ch struct {
		Seq    int64  `json:"seq"`
		Action string `json:"action"`
		Key    string `json:"key"`
		Source string `json:"source"`
	}
	m := got[0][41]
	if err := json.Unmarshal(m.Body, &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Seq != 42 || ch.Action != "create" || ch.Key != "host:h0000042" || ch.Source != "gen" || m.DatabaseID != r.st.DatabaseID() {
		t.Errorf("message 42: %+v %s", m, m.Body)
	}
}
