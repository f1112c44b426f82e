package publishers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/config/configtest"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/eventually"
	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/store"
	"github.com/openstack-synchronizer/synchronizer/store/storetest"
)

type rig struct {
	t    testing.TB
	dir  string
	st   *store.Store
	eng  *engine.Engine
	n    int    // entities made so far
	pre  string // key prefix, so that another run's entities are new
	wake *Set
}

func openRig(t testing.TB, dir string) *rig {
	t.Helper()
	st := storetest.Open(t, dir)
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
	set, err := NewSet([]config.Publisher{{Name: "s", Type: "amqp-stream", Node: configtest.Node(r.t, conf)}}, r.dir, r.st, nil)
	if err != nil {
		r.t.Fatal(err)
	}
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

// session runs a publisher of conf while n changes are committed, until it
// has published them all, then stops it: a sidecar's run between restarts.
func (r *rig) session(conf string, n int) *Set {
	r.t.Helper()
	set := r.publisher(conf)
	stop := run(set)
	defer stop()
	r.changes(n)
	waitCursor(r.t, set, r.eng.LastSeq())
	return set
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
				Key: fmt.Sprintf("host:%sh%07d", r.pre, r.n), Type: "host", ID: fmt.Sprintf("%sh%07d", r.pre, r.n),
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
func newStream(t testing.TB) string {
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

func waitCursor(t testing.TB, set *Set, seq int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for set.Status()["s"].Cursor < seq {
		if time.Now().After(deadline) {
			t.Fatalf("cursor at %d, want %d: %+v", set.Status()["s"].Cursor, seq, set.Status()["s"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamConfig(t *testing.T) {
	for _, tc := range []struct {
		name, conf, err string
	}{
		{"minimal", `urls: ["amqp://u:secret@h:5672/"]`, ""},
		{"oslo multi-host", `urls: ["rabbit://u:secret@h1:5672,u:secret@h2:5672/v"]`, ""},
		{"no urls", `stream: s`, "urls: at least one broker URL is required"},
		{"bad scheme", `urls: ["http://u:secret@h/"]`, `scheme "http"`},
		// Every bad entry is named, as in the amqp listener's errors.
		{"second of two bad", `urls: ["amqp://u:secret@h/", "http://u:secret@h2/"]`, `urls[1]: `},
		{"tls and url both bad", "urls: [\"amqp://u:secret@h/\"]\ntls: {ca_file: /nonexistent/ca.pem}", "tls: "},
		{"tls needs amqps", "urls: [\"amqp://u:secret@h/\"]\ntls: {insecure_skip_verify: true}", "use amqps://"},
		{"short max_age", "urls: [\"amqp://h/\"]\nmax_age: 10ms", "max_age: 0 (no bound) or at least 1s"},
		{"negative bytes", "urls: [\"amqp://h/\"]\nmax_length_bytes: -1", "max_length_bytes"},
		{"window", "urls: [\"amqp://h/\"]\nwindow: 0", "window and page"},
		{"max_lag", "urls: [\"amqp://h/\"]\nmax_lag: -5", "max_lag"},
		{"snapshot_interval default within max_age", "urls: [\"amqp://h/\"]\nmax_age: 1h", ""},
		{"snapshot_interval beyond max_age", "urls: [\"amqp://h/\"]\nmax_age: 1h\nsnapshot_interval: 40m", "snapshot_interval"},
		{"snapshot_interval never", "urls: [\"amqp://h/\"]\nsnapshot_interval: 0s", ""},
		{"snapshot part", "urls: [\"amqp://h/\"]\nsnapshot_part_bytes: 10", "snapshot_part_bytes"},
		{"unknown key", "urls: [\"amqp://h/\"]\nretention: 1h", "retention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := configtest.Node(t, "name: s\ntype: amqp-stream\n"+tc.conf)
			_, err := New(config.Publisher{Name: "s", Type: "amqp-stream", Node: n}, Settings{Name: "s", Node: n})
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
	if _, err := New(config.Publisher{Name: "x", Type: "kafka"}, Settings{Name: "x"}); err == nil || !strings.Contains(err.Error(), `unknown type "kafka"`) {
		t.Errorf("unknown type: %v", err)
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
	// A reader that starts after seq n/2 gets exactly the rest.
	checkSeqs(t, collect(t, amqptest.Broker, stream, n/2, n), n/2+1, n)
	checkSeqs(t, collect(t, amqptest.Broker, stream, n-1, n), n, n)
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

// consumeFirst reads stream from its first message on a connection of its
// own, which stop closes.
func consumeFirst(t testing.TB, url, stream string) (ds <-chan amqp.Delivery, stop func()) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	if _, ds, err = consume(conn, stream, "first", 1000); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return ds, func() { conn.Close() }
}

// raw returns the seq of every message in the stream, duplicates included:
// the stream is read from first until nothing comes for 2s (call it once
// everything is confirmed).
func raw(t *testing.T, url, stream string) []int64 {
	t.Helper()
	ds, stop := consumeFirst(t, url, stream)
	defer stop()
	var out []int64
	for {
		select {
		case d, ok := <-ds:
			if !ok {
				t.Fatal("consumer closed")
			}
			m, err := parseDelivery(d)
			if err != nil {
				t.Fatal(err)
			}
			d.Ack(false)
			if !m.IsSnapshot() {
				out = append(out, m.Seq)
			}
		case <-time.After(2 * time.Second):
			return out
		}
	}
}

func TestStreamResumesAtTheCursorAfterARestart(t *testing.T) {
	dir := t.TempDir()
	r := openRig(t, dir)
	stream := newStream(t)
	conf := streamConf(stream, amqptest.Broker, "")
	r.session(conf, 1000)
	// Committed while no publisher runs: kept in the log, sent on start.
	r.changes(500)
	set := r.publisher(conf)
	if st := set.Status()["s"]; st.Cursor != 1000 || st.Lag != 500 {
		t.Errorf("before the restart's first publish: %+v", st)
	}
	stop := run(set)
	defer stop()
	waitCursor(t, set, 1500)
	if st := set.Status()["s"]; st.Published != 500 {
		t.Errorf("second run published %d, want 500 (resume at the cursor)", st.Published)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(set)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"synchronizer_publisher_lag": 0, "synchronizer_publisher_published_total": 500,
		"synchronizer_publisher_connected": 1, "synchronizer_publisher_resync_markers_total": 0}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if w, ok := want[mf.GetName()]; !ok || v != w || m.GetLabel()[0].GetValue() != "s" {
			t.Errorf("metric %s{%v} = %v, want %v", mf.GetName(), m.GetLabel(), v, w)
		}
		delete(want, mf.GetName())
	}
	if len(want) > 0 {
		t.Errorf("metrics missing: %v", want)
	}
	seqs := raw(t, amqptest.Broker, stream)
	if len(seqs) != 1500 {
		t.Fatalf("stream holds %d messages, want 1500", len(seqs))
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, s)
		}
	}
}

func TestStreamBrokerDownKeepsTheLogUpToMaxLag(t *testing.T) {
	r := openRig(t, t.TempDir())
	stream := newStream(t)
	// A port nobody listens on: the broker is down.
	down := fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", closedPort(t))
	set := r.publisher(streamConf(stream, down, "max_lag: 60\n"))
	stop := run(set)
	r.changes(100)
	st := set.Status()["s"]
	if st.Lag != 100 || st.Connected || st.Cursor != 0 {
		t.Errorf("broker down: %+v", st)
	}
	// Retention would keep 10; the publisher holds 60 back (max_lag).
	if _, err := r.st.PruneAbove(context.Background(), 10, 0, time.Now(), set.Floor()); err != nil {
		t.Fatal(err)
	}
	if _, pruned, _ := r.st.LogBounds(context.Background()); pruned != 40 {
		t.Errorf("pruned through %d, want 40 (100 - max_lag)", pruned)
	}
	stop()
	// The broker is back: a marker for 1..40, then 41..100.
	set = r.publisher(streamConf(stream, amqptest.Broker, "max_lag: 60\n"))
	stop = run(set)
	defer stop()
	waitCursor(t, set, 100)
	msgs := collect(t, amqptest.Broker, stream, -1, 100)
	if len(msgs) != 61 || !msgs[0].Resync || msgs[0].LostFrom != 1 || msgs[0].LostThrough != 40 {
		t.Fatalf("got %d messages, first %+v", len(msgs), msgs[0])
	}
	checkSeqs(t, msgs[1:], 41, 100)
	if st := set.Status()["s"]; st.Resyncs != 1 {
		t.Errorf("resync markers %d, want 1", st.Resyncs)
	}
}

func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func TestStreamCatchesUpAfterBrokerStopApp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private RabbitMQ node")
	}
	node := amqptest.StartNode(t)
	r := openRig(t, t.TempDir())
	stream := amqptest.Name("stream")
	set := r.publisher(streamConf(stream, node.URL, ""))
	stop := run(set)
	defer stop()
	// A burst runs through the stop: half before, some while down, the
	// rest after the start.
	burst := make(chan struct{})
	go func() {
		defer close(burst)
		for i := 0; i < 20; i++ {
			r.changes(1000)
		}
	}()
	waitCursor(t, set, 5000)
	if err := node.StopApp(); err != nil {
		t.Fatal(err)
	}
	<-burst
	r.changes(5000) // committed with the broker down: local work goes on
	st := set.Status()["s"]
	if st.Connected || st.Lag == 0 || st.LastSeq != 25000 {
		t.Errorf("broker stopped: %+v", st)
	}
	if err := node.StartApp(); err != nil {
		t.Fatal(err)
	}
	waitCursor(t, set, 25000)
	checkSeqs(t, collect(t, node.URL, stream, -1, 25000), 1, 25000)
}

// TestStreamHelperProcess is the sidecar side of the kill -9 test, run as
// a child process.
func TestStreamHelperProcess(t *testing.T) {
	dir, stream := os.Getenv("STREAM_HELPER_DIR"), os.Getenv("STREAM_HELPER_STREAM")
	if dir == "" {
		t.Skip("helper process of TestStreamKill9")
	}
	r := openRig(t, dir)
	r.pre = os.Getenv("STREAM_HELPER_PREFIX")
	set := r.publisher(streamConf(stream, amqptest.Broker, ""))
	stop := run(set)
	defer stop()
	for i := 0; i < 40; i++ {
		r.changes(1000)
		fmt.Printf("committed %d\n", r.eng.LastSeq())
	}
	waitCursor(t, set, r.eng.LastSeq())
	fmt.Printf("published %d\n", r.eng.LastSeq())
}

func TestStreamKill9WhilePublishing(t *testing.T) {
	dir := t.TempDir()
	stream := newStream(t)
	helper := func(prefix string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStreamHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "STREAM_HELPER_DIR="+dir, "STREAM_HELPER_STREAM="+stream, "STREAM_HELPER_PREFIX="+prefix)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, bufio.NewScanner(out)
	}
	cmd, out := helper("a")
	var killedAt int64
	for out.Scan() {
		if n, err := fmt.Sscanf(out.Text(), "committed %d", &killedAt); n == 1 && err == nil && killedAt >= 15000 {
			break
		}
	}
	if killedAt < 15000 {
		t.Fatalf("helper stopped before 15000 changes: %v", cmd.Wait())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// The second run resumes from the cursor saved before the kill.
	cmd, out = helper("b")
	var last int64
	for out.Scan() {
		if n, _ := fmt.Sscanf(out.Text(), "published %d", &last); n == 1 {
			break
		}
	}
	if err := cmd.Wait(); err != nil || last == 0 {
		t.Fatalf("second run: %v, published through %d", err, last)
	}
	// Deduped, the consumer sees every seq once, in order.
	checkSeqs(t, collect(t, amqptest.Broker, stream, -1, last), 1, last)
	// Raw, the duplicates are one run around the kill.
	seqs := raw(t, amqptest.Broker, stream)
	seen := map[int64]int{}
	var dups []int64
	for _, s := range seqs {
		if seen[s]++; seen[s] == 2 {
			dups = append(dups, s)
		}
	}
	for i, d := range dups {
		if d > killedAt+int64(5000) || i > 0 && d != dups[i-1]+1 {
			t.Fatalf("duplicate seq %d is not in one run around the kill at %d: %d duplicates", d, killedAt, len(dups))
		}
	}
	t.Logf("killed after seq %d committed; %d messages, %d seqs sent twice", killedAt, len(seqs), len(dups))
}

// A stream deleted under the publisher is declared again and gets every
// change from the cursor on: the broker confirms a message it could not
// route, so without mandatory publishing they would all be dropped.
func TestStreamDeletedUnderThePublisher(t *testing.T) {
	r := openRig(t, t.TempDir())
	stream := newStream(t)
	set := r.publisher(streamConf(stream, amqptest.Broker, ""))
	stop := run(set)
	defer stop()
	r.changes(100)
	waitCursor(t, set, 100)
	if _, err := amqptest.Admin(t).QueueDelete(stream, false, false, false); err != nil {
		t.Fatal(err)
	}
	r.changes(100)
	waitCursor(t, set, 200)
	checkSeqs(t, collect(t, amqptest.Broker, stream, 100, 200), 101, 200)
	if st := set.Status()["s"]; st.Lag != 0 {
		t.Errorf("status: %+v", st)
	}
}

// TestSetApply: a config reload changes the publishers while they run. An
// unchanged one goes on; a changed one stops and is made again from its
// cursor (nothing skipped, nothing sent twice); a new one starts from the
// start of the log; a removed one stops; a bad entry changes nothing.
func TestSetApply(t *testing.T) {
	r := openRig(t, t.TempDir())
	s1, s2, s3 := newStream(t), newStream(t), newStream(t)
	entry := func(name, stream, extra string) config.Publisher {
		conf := strings.Replace(streamConf(stream, amqptest.Broker, extra), "name: s\n", "name: "+name+"\n", 1)
		return config.Publisher{Name: name, Type: "amqp-stream", Node: configtest.Node(t, conf)}
	}
	a1 := entry("a", s1, "")
	set, err := NewSet([]config.Publisher{a1}, r.dir, r.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.eng.SetPublisher(set)
	r.eng.SetPruneFloor(set.Floor)
	stop := run(set)
	defer stop()
	r.changes(300)
	waitFor := func(name string, seq int64) {
		t.Helper()
		eventually.True(t, fmt.Sprintf("%s's cursor at %d", name, seq), time.Minute, func() bool {
			return set.Status()[name].Cursor >= seq
		})
	}
	waitFor("a", 300)

	// A new publisher b; a unchanged (its entry written again, keys in
	// another order, with a comment: the same settings).
	a1again := config.Publisher{Name: "a", Type: "amqp-stream", Node: configtest.Node(t,
		"# the stream of the remote consumers\nstream: "+s1+"\nname: a\ntype: amqp-stream\nurls: [\""+amqptest.Broker+"\"]\nmax_backoff: 500ms\nmin_backoff: 50ms\n")}
	if err := set.Apply([]config.Publisher{a1again, entry("b", s2, "")}); err != nil {
		t.Fatal(err)
	}
	r.changes(200)
	waitFor("a", 500)
	waitFor("b", 500)
	if st := set.Status()["a"]; st.Published != 500 {
		t.Errorf("unchanged a published %d, want 500 (it went on)", st.Published)
	}

	// a moves to s3 (same name: its cursor goes on), b is removed, and a
	// bad entry beside them is refused first, changing nothing.
	bad := entry("c", s3, "window: 0")
	if err := set.Apply([]config.Publisher{entry("a", s3, ""), bad}); err == nil || !strings.Contains(err.Error(), "publishers[1] (c)") {
		t.Fatalf("bad entry: %v", err)
	}
	if st := set.Status(); len(st) != 2 || st["a"].Stream != s1 {
		t.Fatalf("after a refused apply: %+v", st)
	}
	// Changes keep coming while a moves: what s1 did not confirm, s3 gets.
	committing := make(chan struct{})
	go func() {
		defer close(committing)
		for i := 0; i < 200; i++ {
			ev := entity.Event{Action: entity.Create, Entity: entity.Entity{Key: fmt.Sprintf("host:m%d", i), Type: "host",
				ID: fmt.Sprintf("m%d", i), Name: "m", State: "up", Timestamp: time.Now().UTC()}}
			if _, err := r.eng.ApplyEvents(context.Background(), "gen", []entity.Event{ev}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := set.Apply([]config.Publisher{entry("a", s3, "")}); err != nil {
		t.Fatal(err)
	}
	if st := set.Status(); len(st) != 1 || st["a"].Stream != s3 {
		t.Fatalf("after the move: %+v", st)
	}
	<-committing
	r.changes(100)
	waitFor("a", 800)

	// s1 holds 1..k, s2 (b from the start of the log) 1..500 at least, s3
	// exactly the changes after s1's last, k+1..800, after a snapshot.
	one := raw(t, amqptest.Broker, s1)
	k := int64(len(one))
	for _, tc := range []struct {
		stream      string
		first, last int64
	}{{s1, 1, k}, {s3, k + 1, 800}} {
		seqs := raw(t, amqptest.Broker, tc.stream)
		if int64(len(seqs)) != tc.last-tc.first+1 || seqs[0] != tc.first || seqs[len(seqs)-1] != tc.last {
			t.Errorf("%s: %d changes, %v..., want %d..%d", tc.stream, len(seqs), seqs[:min(len(seqs), 3)], tc.first, tc.last)
		}
	}
	if k < 500 {
		t.Errorf("s1 holds %d changes, want the 500 before the move at least", k)
	}
	if two := raw(t, amqptest.Broker, s2); len(two) < 500 || two[0] != 1 {
		t.Errorf("s2: %d changes from %v, want 1.. at least 500", len(two), two[:min(len(two), 1)])
	}
	if st := set.Status()["a"]; st.Snapshot == nil || st.Snapshot.Stream != s3 || st.Snapshot.Entities < 500 {
		t.Errorf("a's snapshot in s3: %+v", st.Snapshot)
	}
}

// TestSetApplyBrokerNotAnswering: removing a publisher whose broker
// accepts connections and never answers does not wait for the 30 s
// handshake time-out (an operator edits the URL because the broker is dead).
func TestSetApplyBrokerNotAnswering(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	r := openRig(t, t.TempDir())
	conf := streamConf(newStream(t), "amqp://guest:guest@"+ln.Addr().String()+"/", "")
	set, err := NewSet([]config.Publisher{{Name: "s", Type: "amqp-stream", Node: configtest.Node(t, conf)}}, r.dir, r.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(set)
	defer stop()
	eventually.True(t, "the publisher connecting", time.Minute, func() bool { return set.Status()["s"].State == "connecting" })
	time.Sleep(200 * time.Millisecond) // into the handshake
	t0 := time.Now()
	if err := set.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("Apply took %v: it waited on the broker's handshake", d)
	}
	if n := set.Len(); n != 0 {
		t.Errorf("%d publishers left", n)
	}
}
