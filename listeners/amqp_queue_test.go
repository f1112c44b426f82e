package listeners

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config/configtest"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/eventually"
	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// TestAMQPSharedQueueWarns: a second consumer on our queue (another
// sidecar given the same explicit queue) shows in both listeners' status
// as a warning, and goes away when it leaves; two listeners with the
// default queue of different databases each get every notification.
func TestAMQPSharedQueueWarns(t *testing.T) {
	ex, queue := amqptest.Name("ex"), amqptest.Name("shared")
	amqptest.DeleteExchangeAfter(t, ex)
	amqptest.DeleteQueueAfter(t, queue)
	conf := fmt.Sprintf("urls: [%q]\nexchanges: [%s]\ntopics: [notifications]\nqueue: %s\nconsumer_check: 100ms\n", amqptest.Broker, ex, queue)
	a, b := newTestListener(t, "a", conf), newTestListener(t, "b", conf)
	run(t, a, &recSink{})
	eventually.True(t, "the first check", 5*time.Second, func() bool { return a.Status().QueueConsumers != nil })
	if st := a.Status(); !intIs(st.OtherConsumers, 0) || st.Warning != "" {
		t.Fatalf("alone on the queue: %v", st)
	}
	stopB := run(t, b, &recSink{})
	for _, l := range []*amqpListener{a, b} {
		eventually.True(t, "the other consumer to show", 5*time.Second, func() bool { return intIs(l.Status().OtherConsumers, 1) })
		if w := l.Status().Warning; !strings.Contains(w, "1 other consumer") || !strings.Contains(w, queue) {
			t.Fatalf("warning %q", w)
		}
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "the warning to clear", 5*time.Second, func() bool { st := a.Status(); return intIs(st.OtherConsumers, 0) && st.Warning == "" })
}

func TestAMQPDefaultQueuesPerDatabase(t *testing.T) {
	ex, name := amqptest.Name("ex"), amqptest.Name("bus")
	amqptest.DeleteExchangeAfter(t, ex)
	var ls []*amqpListener
	var sinks []*recSink
	for _, db := range []string{"/srv/one/s.db", "/srv/two/s.db"} {
		doc := fmt.Sprintf("name: %s\ntype: amqp\nurls: [%q]\nexchanges: [%s]\ntopics: [notifications]\n", name, amqptest.Broker, ex)
		l, err := New("amqp", Settings{Name: name, Node: configtest.Node(t, doc), Dir: t.TempDir(), Database: db})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l.(*amqpListener))
		amqptest.DeleteQueueAfter(t, ls[len(ls)-1].cfg.Queue)
		sinks = append(sinks, &recSink{})
	}
	for i := range ls {
		run(t, ls[i], sinks[i])
	}
	pub := amqptest.NewPublisher(t)
	for i := range 4 {
		pub.PublishWait(ex, "notifications.info", instanceBody(t, fmt.Sprintf("44444444-0000-4000-8000-%012d", i), "active", time.Now()))
	}
	for i, s := range sinks {
		eventually.True(t, "all four notifications", 10*time.Second, func() bool { return s.count() == 4 })
		if st := ls[i].Status(); !intIs(st.OtherConsumers, 0) {
			t.Fatalf("listener %d: %v", i, st)
		}
	}
}

// TestAMQPCatchUpReasons: the listener asks for a catch-up exactly when
// notifications may have been missed: its queue is new, it starts
// consuming for the first time, or it reconnects to a non-durable queue or
// to non-durable exchanges (a broker restart would have removed our
// bindings); not when it reconnects to a durable queue bound to durable
// exchanges, which kept everything.
func TestAMQPCatchUpReasons(t *testing.T) {
	for _, tc := range []struct {
		queueDurable, durable bool
		afterCutOff           []string
	}{
		{true, true, nil},
		{true, false, []string{"reconnect_non_durable_exchanges"}},
		{false, true, []string{"reconnect_non_durable_queue"}},
	} {
		t.Run(fmt.Sprintf("queue_durable=%v,durable=%v", tc.queueDurable, tc.durable), func(t *testing.T) {
			vhost, url := amqptest.VHost(t)
			l, _, q := testBusAt(t, url, fmt.Sprintf("queue_durable: %v\ndurable: %v\nowner: cloud\n", tc.queueDurable, tc.durable))
			sink := &gapSink{}
			stop := run(t, l, sink)
			if got := sink.reasons(); !slices.Equal(got, []string{"queue_created"}) {
				t.Fatalf("first start: catch-ups %v, want queue_created", got)
			}
			sink.gmu.Lock()
			g := sink.gaps[0]
			sink.gmu.Unlock()
			if g.Owner != "cloud" || !slices.Contains(g.Types, entity.TypeInstance) {
				t.Fatalf("gap %+v", g)
			}
			if err := amqptest.CloseConnections(vhost, "test: broker drops connections"); err != nil {
				t.Fatal(err)
			}
			eventually.True(t, "the reconnect", 20*time.Second, func() bool {
				st := l.Status()
				return st.Reconnects >= 1 && st.State == "connected"
			})
			want := append([]string{"queue_created"}, tc.afterCutOff...)
			if got := sink.reasons(); !slices.Equal(got, want) {
				t.Fatalf("after the connections were closed: catch-ups %v, want %v", got, want)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			// A new Run (a restarted listener) on the existing queue: what
			// came in meanwhile is in the queue, but the bindings may be
			// new, so it catches up once.
			sink2 := &gapSink{}
			stop = run(t, l, sink2)
			if got := sink2.reasons(); !slices.Equal(got, []string{"first_connect"}) {
				t.Fatalf("restart: catch-ups %v, want first_connect", got)
			}
			// The queue is deleted under the listener: the next session
			// declares a new one and catches up.
			if _, err := amqptest.AdminAt(t, url).QueueDelete(q, false, false, false); err != nil {
				t.Fatal(err)
			}
			eventually.True(t, "a catch-up for the new queue", 20*time.Second, func() bool {
				r := sink2.reasons()
				return len(r) == 2 && r[1] == "queue_created"
			})
			want = append(want, "first_connect", "queue_created")
			if st := l.Status(); st.Gaps != int64(len(want)) || st.LastGap != "queue_created" {
				t.Fatalf("status %v", st)
			}
			stop()
		})
	}
}

// TestAMQPQueueFullCatchesUp: a queue at its max-length bound has dropped
// notifications; the next check asks for a catch-up.
func TestAMQPQueueFullCatchesUp(t *testing.T) {
	l, ex, _ := testBus(t, "queue_max_length: 5\nprefetch: 1\nbatch_size: 1\nconsumer_check: 100ms\n")
	release := make(chan struct{})
	sink := &gapSink{}
	sink.fail = func(n int, _ []entity.Event) error {
		if n == 1 {
			<-release
		}
		return nil
	}
	run(t, l, sink)
	defer close(release)
	pub := amqptest.NewPublisher(t)
	for i := range 10 {
		pub.PublishWait(ex, "notifications.info", instanceBody(t, fmt.Sprintf("55555555-0000-4000-8000-%012d", i), "active", time.Now()))
	}
	eventually.True(t, "a queue_full catch-up", 10*time.Second, func() bool { return slices.Contains(sink.reasons(), "queue_full") })
	if st := l.Status(); !intIs(st.QueueMessages, 5) {
		t.Fatalf("status %v", st)
	}
}

// TestAMQPBrokerRestart restarts a broker node of the test's own
// (stop_app / start_app) with notifications waiting: a durable queue on
// durable exchanges keeps them and its bindings (no catch-up needed, none
// asked for); a non-durable one loses them with the queue, and the
// listener asks for a catch-up as it declares the new queue.
func TestAMQPBrokerRestart(t *testing.T) {
	node := amqptest.StartNode(t)
	for _, durable := range []bool{true, false} {
		t.Run(fmt.Sprintf("queue_durable=%v", durable), func(t *testing.T) {
			const n = 50
			l, ex, _ := testBusAt(t, node.URL, fmt.Sprintf("queue_durable: %v\ndurable: %v\nmax_backoff: 200ms\n", durable, durable))
			release := make(chan struct{})
			sink := &gapSink{}
			// The first batch is held until the broker went down: every
			// notification is still in the queue (unacknowledged) then.
			sink.fail = func(k int, _ []entity.Event) error {
				if k == 1 {
					<-release
					return fmt.Errorf("broker went away")
				}
				return nil
			}
			stop := run(t, l, sink)
			pub := amqptest.NewPublisherAt(t, node.URL)
			for i := range n {
				pub.PublishWait(ex, "notifications.info", instanceBody(t, fmt.Sprintf("66666666-0000-4000-8000-%012d", i), "active", time.Now()))
			}
			eventually.True(t, "the first batch", 10*time.Second, func() bool { return l.Status().Received >= 1 })
			if err := node.StopApp(); err != nil {
				t.Fatal(err)
			}
			close(release)
			if err := node.StartApp(); err != nil {
				t.Fatal(err)
			}
			eventually.True(t, "the reconnect", 30*time.Second, func() bool {
				st := l.Status()
				return st.Reconnects >= 1 && st.State == "connected"
			})
			if durable {
				eventually.True(t, "every notification", 20*time.Second, func() bool { return sink.count() == n })
				if got := sink.reasons(); !slices.Equal(got, []string{"queue_created"}) {
					t.Fatalf("catch-ups %v: a durable queue kept everything, none needed after the restart", got)
				}
			} else {
				eventually.True(t, "the catch-up", 20*time.Second, func() bool { return len(sink.reasons()) == 2 })
				if got := sink.reasons(); got[1] != "queue_created" {
					t.Fatalf("catch-ups %v, want queue_created after the restart", got)
				}
				time.Sleep(300 * time.Millisecond)
				t.Logf("non-durable queue: %d of %d notifications survived the restart", sink.count(), n)
				if sink.count() == n {
					t.Fatal("the non-durable queue kept its messages across a restart: the test proves nothing")
				}
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// intIs says whether a figure of status is known and equal to want.
func intIs(p *int, want int) bool { return p != nil && *p == want }
