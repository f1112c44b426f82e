package listeners

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/eventually"
	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// queueDepth returns the ready messages of a queue (unacknowledged ones
// are not counted: stop the listener first to have them requeued).
func queueDepth(t testing.TB, q string) int {
	t.Helper()
	return queueDepthAt(t, amqptest.Broker, q)
}

func queueDepthAt(t testing.TB, url, q string) int {
	t.Helper()
	info, err := amqptest.AdminAt(t, url).QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect queue %s: %v", q, err)
	}
	return info.Messages
}

// testBus makes a listener bound to an exchange of its own.
func testBus(t testing.TB, extra string) (l *amqpListener, exchange, queue string) {
	t.Helper()
	return testBusAt(t, amqptest.Broker, extra)
}

// testBusAt is testBus on another broker URL: a virtual host or a node of
// the test's own, whose removal takes the exchange and queue with it.
func testBusAt(t testing.TB, url, extra string) (l *amqpListener, exchange, queue string) {
	t.Helper()
	exchange, name := amqptest.Name("ex"), amqptest.Name("bus")
	if url == amqptest.Broker {
		amqptest.DeleteExchangeAfter(t, exchange)
	}
	l = newTestListener(t, name, fmt.Sprintf("urls: [%q]\nexchanges: [%s]\ntopics: [notifications]\nmin_backoff: 20ms\n%s", url, exchange, extra))
	if url == amqptest.Broker {
		amqptest.DeleteQueueAfter(t, l.cfg.Queue)
	}
	return l, exchange, l.cfg.Queue
}

// instanceBody is a versioned instance notification for server id.
func instanceBody(t testing.TB, id, state string, ts time.Time) []byte {
	t.Helper()
	inner := amqptest.Fixture(t, "nova-versioned/instance-create-end.json")
	d := inner["payload"].(map[string]any)["nova_object.data"].(map[string]any)
	d["uuid"], d["state"] = id, state
	return amqptest.Envelope(t, inner, ts)
}

func TestAMQPSinkErrorRedelivers(t *testing.T) {
	l, ex, q := testBus(t, "")
	sink := &recSink{fail: func(n int, _ []entity.Event) error {
		if n == 1 {
			return errors.New("database is locked")
		}
		return nil
	}}
	stop := run(t, l, sink)
	amqptest.NewPublisher(t).PublishWait(ex, "notifications.info", instanceBody(t, "11111111-0000-4000-8000-000000000001", "active", time.Now()))
	eventually.True(t, "the redelivered message to be applied", 10*time.Second, func() bool { return len(sink.got()) == 1 })
	eventually.True(t, "the ack", 5*time.Second, func() bool { return l.Status().Acked == 1 })
	st := l.Status()
	if st.ApplyErrors != 1 || st.Received != 2 || st.Redelivered != 1 {
		t.Fatalf("status: %v", st)
	}
	if !strings.Contains(st.LastError, "database is locked") {
		t.Fatalf("last_error %q", st.LastError)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := queueDepth(t, q); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}

// A batch is received and decoded while the one before it is applied; when
// that apply fails, both go back to the queue and are applied again in
// order, nothing lost, nothing left unacknowledged.
func TestAMQPPipelineFailureRequeuesBoth(t *testing.T) {
	l, ex, q := testBus(t, "batch_size: 1\n")
	a, b := "11111111-0000-4000-8000-00000000000a", "11111111-0000-4000-8000-00000000000b"
	overlapped := make(chan bool, 1)
	sink := &recSink{fail: func(n int, _ []entity.Event) error {
		if n != 1 {
			return nil
		}
		// The first apply waits for the second message to be decoded.
		deadline := time.Now().Add(eventually.Min)
		for l.Status().Received < 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		overlapped <- l.Status().Received >= 2
		return errors.New("disk I/O error")
	}}
	stop := run(t, l, sink)
	pub := amqptest.NewPublisher(t)
	pub.PublishWait(ex, "notifications.info", instanceBody(t, a, "active", time.Now()))
	pub.PublishWait(ex, "notifications.info", instanceBody(t, b, "active", time.Now()))
	if !<-overlapped {
		t.Fatal("the second message was not received while the first was applied")
	}
	eventually.True(t, "both applied", 10*time.Second, func() bool { return len(sink.got()) == 2 })
	eventually.True(t, "the acks", 5*time.Second, func() bool { return l.Status().Acked == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := sink.got()
	if got[0].Entity.ID != a || got[1].Entity.ID != b {
		t.Fatalf("applied %s then %s, want %s then %s", got[0].Entity.ID, got[1].Entity.ID, a, b)
	}
	st := l.Status()
	if st.ApplyErrors != 1 || st.Received != 4 || st.Redelivered != 2 {
		t.Fatalf("status: %v", st)
	}
	if n := queueDepth(t, q); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}

func TestAMQPBadMessages(t *testing.T) {
	l, ex, q := testBus(t, "")
	sink := &recSink{}
	stop := run(t, l, sink)
	pub := amqptest.NewPublisher(t)
	now := time.Now()
	bodies := [][]byte{
		instanceBody(t, "22222222-0000-4000-8000-000000000001", "active", now),
		[]byte("this is not json"),
		[]byte(`{"oslo.version": "2.0", "oslo.message": "{\"payload\": {}}"}`),
		amqptest.Envelope(t, map[string]any{"event_type": "identity.project.created", "payload": map[string]any{}}, now),
		amqptest.Envelope(t, map[string]any{"event_type": "instance.update", "payload": map[string]any{}}, now),
		instanceBody(t, "22222222-0000-4000-8000-000000000002", "stopped", now),
	}
	for _, b := range bodies {
		pub.PublishWait(ex, "notifications.info", b)
	}
	eventually.True(t, "all messages", 10*time.Second, func() bool {
		st := l.Status()
		return st.Acked == 2 && st.BadTotal == 4
	})
	got := sink.got()
	if len(got) != 2 || got[0].Entity.State != "ACTIVE" || got[1].Entity.State != "SHUTOFF" {
		t.Fatalf("got %+v", got)
	}
	want := map[string]int64{"not_json": 1, "no_event_type": 1, "unknown_event_type": 1, "bad_payload": 1}
	if bad := l.Status().Bad; fmt.Sprint(bad) != fmt.Sprint(want) {
		t.Fatalf("bad = %v, want %v", bad, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := queueDepth(t, q); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}

func TestAMQPDeadLetter(t *testing.T) {
	dlx, dlq := amqptest.Name("dlx"), amqptest.Name("dlq")
	ch := amqptest.Admin(t)
	if err := ch.ExchangeDeclare(dlx, "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	amqptest.DeleteExchangeAfter(t, dlx)
	if _, err := ch.QueueDeclare(dlq, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	amqptest.DeleteQueueAfter(t, dlq)
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	l, ex, _ := testBus(t, "dead_letter_exchange: "+dlx+"\n")
	sink := &recSink{}
	run(t, l, sink)
	pub := amqptest.NewPublisher(t)
	pub.PublishWait(ex, "notifications.info", []byte("garbage"))
	pub.PublishWait(ex, "notifications.info", instanceBody(t, "33333333-0000-4000-8000-000000000001", "active", time.Now()))
	eventually.True(t, "the good message", 10*time.Second, func() bool { return len(sink.got()) == 1 })
	eventually.True(t, "the dead letter", 5*time.Second, func() bool { return queueDepth(t, dlq) == 1 })
	d, ok, err := amqptest.Admin(t).Get(dlq, true)
	if err != nil || !ok || string(d.Body) != "garbage" {
		t.Fatalf("dead letter: %v %v %q", ok, err, d.Body)
	}
	if st := l.Status(); st.DeadLettered != 1 {
		t.Fatalf("status %v", st)
	}
}

func TestAMQPDurableMismatch(t *testing.T) {
	for _, what := range []string{"exchange", "queue"} {
		t.Run(what, func(t *testing.T) {
			exchange, name := amqptest.Name("durable"), amqptest.Name("durable")
			queue := "synchronizer." + name
			ch := amqptest.Admin(t)
			if what == "exchange" {
				// The deployment declared it durable (amqp_durable_queues = True).
				if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				// An earlier version declared our queue non-durable.
				if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
					t.Fatal(err)
				}
			}
			amqptest.DeleteExchangeAfter(t, exchange)
			amqptest.DeleteQueueAfter(t, queue)
			l := newTestListener(t, name, fmt.Sprintf("urls: [%q]\nexchanges: [%s]\nqueue: %s\n", amqptest.Broker, exchange, queue))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := l.Run(ctx, &recSink{})
			if ctx.Err() != nil {
				t.Fatal("Run kept retrying a durable mismatch")
			}
			hint := map[string]string{"exchange": "amqp_durable_queues", "queue": "queue_durable now true"}[what]
			if !errors.Is(err, errFatal) || !strings.Contains(err.Error(), "inequivalent arg 'durable'") ||
				!strings.Contains(err.Error(), hint) || !strings.Contains(err.Error(), what) {
				t.Fatalf("err = %v", err)
			}
			if st := l.Status(); st.State != "failed" || !strings.Contains(st.LastError, "durable") {
				t.Fatalf("status %v", st)
			}
		})
	}
}

// TestAMQPFailover: the first broker URL refuses connections; the listener
// goes on to the second, and no password reaches status.
func TestAMQPFailover(t *testing.T) {
	ex, name := amqptest.Name("ex"), amqptest.Name("failover")
	amqptest.DeleteExchangeAfter(t, ex)
	l := newTestListener(t, name, fmt.Sprintf("urls: [\"amqp://guest:s3cret-pw@127.0.0.1:1/\", %q]\nexchanges: [%s]\nmin_backoff: 10ms\n", amqptest.Broker, ex))
	amqptest.DeleteQueueAfter(t, l.cfg.Queue)
	run(t, l, &recSink{})
	st := l.Status()
	if st.Broker != "127.0.0.1:5672" || !strings.Contains(st.LastError, "127.0.0.1:1") {
		t.Fatalf("status %v", st)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), "s3cret") || strings.Contains(string(b), "guest") {
		t.Fatalf("status leaks credentials: %s", b)
	}
}

// dedupSink applies events as the engine does: an event whose content
// equals the stored one changes nothing. It counts the changes.
type dedupSink struct {
	recSink
	mu      sync.Mutex
	hashes  map[string][32]byte
	changes int
}

func (s *dedupSink) Apply(ctx context.Context, evs []entity.Event) error {
	if err := s.recSink.Apply(ctx, evs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		e := ev.Entity
		b, _ := json.Marshal([]any{ev.Action, e.Name, e.State, e.ParentKey, e.Project, e.Data, e.Links})
		h := sha256.Sum256(b)
		if old, ok := s.hashes[e.Key]; ok && old == h {
			continue
		}
		s.hashes[e.Key] = h
		s.changes++
	}
	return nil
}

func (s *dedupSink) counts() (keys, changes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hashes), s.changes
}

// TestAMQPReconnectBurst closes every connection of its virtual host while
// a burst of 10,000 notifications is being consumed, with a batch applied
// but not yet acknowledged: the listener reconnects, every notification is
// reflected and, redeliveries being idempotent, none makes a second change.
func TestAMQPReconnectBurst(t *testing.T) {
	const total = 10000
	vhost, url := amqptest.VHost(t)
	l, ex, q := testBusAt(t, url, "prefetch: 1000\nbatch_size: 200\n")
	hold, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	sink := &dedupSink{hashes: map[string][32]byte{}}
	sink.fail = func(n int, _ []entity.Event) error {
		if sink.count() >= total/3 {
			once.Do(func() { close(hold); <-release })
		}
		return nil
	}
	stop := run(t, l, sink)

	start := time.Now()
	tmpl := string(instanceBody(t, "178b0921-8f85-4257-88b6-2e743b5a975c", "active", time.Now()))
	pub := amqptest.NewPublisherAt(t, url)
	var last *amqp.DeferredConfirmation
	for i := range total {
		last = pub.Publish(ex, "notifications.info", []byte(strings.Replace(tmpl, "178b0921-8f85-4257-88b6-2e743b5a975c", fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), 1)))
	}
	if ok, err := last.WaitContext(context.Background()); !ok || err != nil {
		t.Fatalf("burst not confirmed: %v", err)
	}
	t.Logf("published after %s", time.Since(start))
	select {
	case <-hold:
	case <-time.After(60 * time.Second):
		t.Fatal("the sink never reached a third of the burst")
	}
	err := amqptest.CloseConnections(vhost, "synchronizer test: broker drops connections")
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("connections closed after %s", time.Since(start))
	eventually.True(t, "every notification", 120*time.Second, func() bool {
		k, _ := sink.counts()
		if k != total && time.Now().Second()%5 == 0 {
			t.Logf("keys %d status %v", k, l.Status())
			time.Sleep(time.Second)
		}
		return k == total
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	keys, changes := sink.counts()
	st := l.Status()
	t.Logf("applied %d events for %d notifications, %d changes; status %v", sink.count(), total, changes, st)
	if keys != total || changes != total {
		t.Fatalf("keys %d changes %d, want %d each", keys, changes, total)
	}
	if st.Reconnects < 1 || st.Redelivered < 1 {
		t.Fatalf("no reconnect or no redelivery: %v", st)
	}
	if n := queueDepthAt(t, url, q); n != 0 {
		t.Fatalf("%d messages left in the queue", n)
	}
}

// latencySink records publish-to-Apply latency from the notifications'
// own timestamps.
type latencySink struct {
	mu  sync.Mutex
	lat []time.Duration
}

func (s *latencySink) Apply(_ context.Context, evs []entity.Event) error {
	now := time.Now()
	s.mu.Lock()
	for _, ev := range evs {
		s.lat = append(s.lat, now.Sub(ev.Entity.Timestamp))
	}
	s.mu.Unlock()
	return nil
}

func (s *latencySink) n() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.lat) }

// BenchmarkAMQPThroughput: notifications per second through the real
// broker into a sink that returns at once.
// The non-durable queue (the old default) is the yardstick of the durable
// one (the default): persistent messages in a durable queue go to disk.
func BenchmarkAMQPThroughput(b *testing.B) {
	for _, durable := range []bool{true, false} {
		b.Run(fmt.Sprintf("queue_durable=%v", durable), func(b *testing.B) {
			benchAMQPThroughput(b, fmt.Sprintf("queue_durable: %v\n", durable))
		})
	}
}

func benchAMQPThroughput(b *testing.B, extra string) {
	l, ex, _ := testBus(b, extra)
	sink := &latencySink{}
	run(b, l, sink)
	tmpl := string(instanceBody(b, "178b0921-8f85-4257-88b6-2e743b5a975c", "active", time.Now()))
	pub := amqptest.NewPublisher(b)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		pub.Publish(ex, "notifications.info", []byte(strings.Replace(tmpl, "178b0921-8f85-4257-88b6-2e743b5a975c", fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), 1)))
	}
	published := time.Since(start)
	eventually.True(b, "all", 60*time.Second, func() bool { return sink.n() == b.N })
	b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkAMQPLatency publishes b.N notifications at 1,000/s and reports
// the publish-to-Apply latency percentiles. Run it with -benchtime 2000x.
func BenchmarkAMQPLatency(b *testing.B) {
	l, ex, _ := testBus(b, "")
	sink := &latencySink{}
	run(b, l, sink)
	pub := amqptest.NewPublisher(b)
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	for i := range b.N {
		<-tick.C
		pub.Publish(ex, "notifications.info", instanceBody(b, fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), "active", time.Now()))
	}
	tick.Stop()
	eventually.True(b, "all", 30*time.Second, func() bool { return sink.n() == b.N })
	sort.Slice(sink.lat, func(i, j int) bool { return sink.lat[i] < sink.lat[j] })
	b.ReportMetric(float64(sink.lat[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(sink.lat[b.N*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(sink.lat[b.N-1].Microseconds())/1000, "max-ms")
}
