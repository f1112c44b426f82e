package listeners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/capool/capooltest"
	"github.com/openstack-synchronizer/synchronizer/config/configtest"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/eventually"
	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// recSink records what it is given. fail, when set, is asked before each
// Apply (numbered from 1) and may fail it or block it.
type recSink struct {
	mu      sync.Mutex
	events  []entity.Event
	applies int
	fail    func(n int, evs []entity.Event) error
}

func (s *recSink) Apply(_ context.Context, evs []entity.Event) error {
	s.mu.Lock()
	s.applies++
	n, fail := s.applies, s.fail
	s.mu.Unlock()
	if fail != nil {
		if err := fail(n, evs); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.mu.Unlock()
	return nil
}

func (s *recSink) got() []entity.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]entity.Event(nil), s.events...)
}

func (s *recSink) count() int { return len(s.got()) }

// gapSink records events and the catch-ups asked for.
type gapSink struct {
	recSink
	gmu  sync.Mutex
	gaps []Gap
}

func (s *gapSink) CatchUp(g Gap) {
	s.gmu.Lock()
	s.gaps = append(s.gaps, g)
	s.gmu.Unlock()
}

func (s *gapSink) reasons() []string {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	var out []string
	for _, g := range s.gaps {
		out = append(out, g.Reason)
	}
	return out
}

// newTestListener builds an amqp listener from a YAML entry.
func newTestListener(t testing.TB, name, conf string) *amqpListener {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := New("amqp", Settings{Name: name, Node: configtest.Node(t, "name: "+name+"\ntype: amqp\n"+conf), Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return l.(*amqpListener)
}

// run starts l and waits until it consumes; stop cancels it and returns
// Run's result (also called at cleanup).
func run(t testing.TB, l *amqpListener, sink Sink) (stop func() error) {
	t.Helper()
	amqptest.Admin(t) // fails with a clear message when the broker is not there
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, sink) }()
	var once sync.Once
	var res error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case res = <-done:
			case <-time.After(10 * time.Second):
				res = errors.New("Run did not return 10s after cancel")
			}
		})
		return res
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	eventually.True(t, "listener to connect", 10*time.Second, func() bool { return l.Status().State == "connected" })
	return stop
}

func TestAMQPConfig(t *testing.T) {
	l := newTestListener(t, "bus", "urls: [\"rabbit://u:pw@h1:5672,u:pw@h2:5673/vh\"]\n")
	c := l.cfg
	if len(c.Exchanges) != 5 || len(c.Topics) != 2 || c.Priorities[0] != "info" || c.Durable {
		t.Fatalf("defaults: %+v", c)
	}
	// The queue is durable, expires a day after its last consumer, is
	// bounded, and is our own: named after the host and the database.
	if !c.QueueDurable || c.QueueExpires.D() != 24*time.Hour || c.QueueMaxLength != 1_000_000 || c.ConsumerCheck.D() != 30*time.Second {
		t.Fatalf("queue defaults: %+v", c)
	}
	host, _ := os.Hostname()
	queueOf := func(conf, db string) string {
		t.Helper()
		l, err := New("amqp", Settings{Name: "bus", Node: configtest.Node(t, "name: bus\ntype: amqp\nurls: [\"amqp://h/\"]\n"+conf), Dir: t.TempDir(), Database: db})
		if err != nil {
			t.Fatal(err)
		}
		return l.(*amqpListener).cfg.Queue
	}
	a, b := queueOf("", "/var/lib/synchronizer/a.db"), queueOf("", "/var/lib/synchronizer/b.db")
	if a == b || !strings.HasPrefix(a, "synchronizer.bus."+host+".") || len(a) != len("synchronizer.bus."+host+".")+8 || a != queueOf("", "/var/lib/synchronizer/a.db") {
		t.Fatalf("default queues %q and %q: want synchronizer.bus.%s.<hash of the database path>, stable, one per database", a, b, host)
	}
	if q := queueOf("queue: shared\n", "/var/lib/synchronizer/a.db"); q != "shared" {
		t.Fatalf("explicit queue: %q", q)
	}
	if c := newTestListener(t, "bus", "urls: [\"amqp://h/\"]\ndurable: true\nqueue_durable: false\nqueue_expires: 0s\nqueue_max_length: 0\n").cfg; !c.Durable || c.QueueDurable || c.QueueExpires != 0 || c.QueueMaxLength != 0 {
		t.Fatalf("exchange and queue durability are separate settings: %+v", c)
	}
	if want := []string{"h1:5672", "h2:5673"}; fmt.Sprint(l.hosts) != fmt.Sprint(want) || !strings.HasPrefix(l.urls[1], "amqp://u:pw@h2:5673/vh") {
		t.Fatalf("urls %v hosts %v", l.urls, l.hosts)
	}
	bad := []struct{ conf, msg string }{
		{"", "urls: at least one"},
		{"urls: [\"http://h/\"]\n", "scheme \"http\""},
		{"urls: [\"amqp://h/\"]\ntls: {insecure_skip_verify: true}\n", "use amqps://"},
		{"urls: [\"amqp://h/\"]\npriorities: [loud]\n", "\"loud\" is not an oslo priority"},
		{"urls: [\"amqp://h/\"]\nexchanges: []\n", "exchanges: must not be empty"},
		{"urls: [\"amqp://h/\"]\nnova_format: xml\n", "nova_format"},
		{"urls: [\"amqp://h/\"]\nqueue_name: x\n", "unknown key \"queue_name\""},
		{"urls: [\"amqp://h/\"]\ntls: {ca_file: missing.pem}\n", "ca_file"},
		{"urls: [\"amqp://h/\"]\nqueue_expires: 10ms\n", "queue_expires"},
		{"urls: [\"amqp://h/\"]\nqueue_max_length: -1\n", "queue_max_length"},
		{"urls: [\"amqp://h/\"]\nconsumer_check: 1ms\n", "consumer_check"},
		{"urls: [\"amqp://h/\"]\nqueue: " + strings.Repeat("q", 256) + "\n", "255"},
	}
	for _, tc := range bad {
		_, err := New("amqp", Settings{Name: "bus", Node: configtest.Node(t, "name: bus\ntype: amqp\n"+tc.conf), Dir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.conf, err, tc.msg)
		}
	}
}

// TestAMQPFixtures publishes every upstream sample, in a real envelope, to
// the exchange and with the routing key its service uses, and checks what
// the sink got: Nova versioned on nova/versioned_notifications.info, legacy
// Nova on nova/notifications.info, Cinder on openstack (cinder's
// control_exchange default), Neutron and Heat on their own exchanges.
func TestAMQPFixtures(t *testing.T) {
	name := amqptest.Name("fixtures")
	l := newTestListener(t, name, "urls: [\""+amqptest.Broker+"\"]\nowner: cloud\n")
	amqptest.DeleteQueueAfter(t, l.cfg.Queue)
	sink := &recSink{}
	run(t, l, sink)
	pub := amqptest.NewPublisher(t)
	ts := time.Date(2026, 11, 25, 12, 0, 0, 123456000, time.UTC)
	net := amqptest.Fixture(t, "neutron/networks-list-response.json")["networks"].([]any)[0]
	stack := amqptest.Fixture(t, "heat/stacks-list-response.json")["stacks"].([]any)[0].(map[string]any)
	msgs := []struct {
		exchange, key string
		inner         map[string]any
		want          string // action key state
	}{
		// Legacy first: in nova_format auto, legacy is used until a versioned one comes.
		{"nova", "notifications.info", amqptest.Fixture(t, "nova-legacy/scenario3_legacy_instance-create-end.json"), "update nova.instance:c03c0bf9-f46e-4e4f-93f1-817568567ee2 ACTIVE"},
		{"nova", "versioned_notifications.info", amqptest.Fixture(t, "nova-versioned/instance-update.json"), "update nova.instance:178b0921-8f85-4257-88b6-2e743b5a975c ACTIVE"},
		{"nova", "versioned_notifications.info", amqptest.Fixture(t, "nova-versioned/instance-create-end.json"), "update nova.instance:178b0921-8f85-4257-88b6-2e743b5a975c ACTIVE"},
		{"nova", "versioned_notifications.info", amqptest.Fixture(t, "nova-versioned/instance-power_off-end.json"), "update nova.instance:178b0921-8f85-4257-88b6-2e743b5a975c SHUTOFF"},
		{"nova", "versioned_notifications.info", amqptest.Fixture(t, "nova-versioned/service-update.json"), "update nova.host:host1 down"},
		{"nova", "versioned_notifications.info", amqptest.Fixture(t, "nova-versioned/instance-delete-end.json"), "delete nova.instance:178b0921-8f85-4257-88b6-2e743b5a975c DELETED"},
		{"openstack", "notifications.info", amqptest.Fixture(t, "cinder/scenario_1_volume-create.json"), "update cinder.volume:990a723f-6c19-4f83-8526-6383c9e9389f available"},
		{"openstack", "notifications.info", map[string]any{"publisher_id": "volume.host", "event_type": "volume.attach.end", "payload": amqptest.Fixture(t, "vitrage/VOLUME_ATTACH_END.json")}, "update cinder.volume:5e41d178-4349-47aa-9be9-a9ee80ccdcc8 in-use"},
		{"neutron", "notifications.info", map[string]any{"publisher_id": "network.controller", "event_type": "network.create.end", "payload": map[string]any{"network": net}}, "update neutron.network:d32019d3-bc6e-4319-9c1d-6722fc136a22 ACTIVE"},
		{"neutron", "notifications.info", map[string]any{"publisher_id": "network.controller", "event_type": "network.delete.end", "payload": map[string]any{"network_id": "d32019d3-bc6e-4319-9c1d-6722fc136a22", "network": net}}, "delete neutron.network:d32019d3-bc6e-4319-9c1d-6722fc136a22 ACTIVE"},
		{"heat", "notifications.info", map[string]any{"publisher_id": "orchestration.controller", "event_type": "orchestration.stack.create.end", "payload": map[string]any{
			"stack_identity": stack["id"], "stack_name": stack["stack_name"], "state": stack["stack_status"], "tenant_id": "eb1c63a4f77141548385f113a28f0f52"}}, "update heat.stack:3095aefc-09fb-4bc7-b1f0-f21a304e864c CREATE_COMPLETE"},
		// Vitrage's extra topic reaches us only if configured: not bound here.
		{"nova", "vitrage_notifications.info", amqptest.Fixture(t, "nova-versioned/instance-create-end.json"), ""},
	}
	var want []string
	for _, m := range msgs {
		pub.PublishWait(m.exchange, m.key, amqptest.Envelope(t, m.inner, ts))
		if m.want != "" {
			want = append(want, m.want)
		}
	}
	eventually.True(t, "all events", 10*time.Second, func() bool { return l.Status().Acked == int64(len(msgs)-1) })
	var got []string
	for _, ev := range sink.got() {
		e := ev.Entity
		got = append(got, ev.Action+" "+e.Key+" "+e.State)
		if e.Source != "cloud" || !e.Timestamp.Equal(ts) {
			t.Errorf("%s: source %q timestamp %v, want cloud %v", e.Key, e.Source, e.Timestamp, ts)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	st := l.Status()
	if st.BadTotal != 0 || st.Ignored != 0 {
		t.Fatalf("status: %v", st)
	}
}

// TestAMQPOsloNotifier publishes with Debian's python3-oslo.messaging
// Notifier (driver messagingv2, rabbit:// transport): a client nobody here
// wrote.
func TestAMQPOsloNotifier(t *testing.T) {
	// kombu_compression "gzip" is an option of the deployment's
	// [oslo_messaging_rabbit]: kombu then sends zlib with a header.
	for _, compression := range []string{"", "gzip", "bzip2"} {
		t.Run("compression="+compression, func(t *testing.T) { testOsloNotifier(t, compression) })
	}
}

func testOsloNotifier(t *testing.T, compression string) {
	exchange, topic, name := amqptest.Name("pyex"), amqptest.Name("pytopic"), amqptest.Name("py")
	amqptest.DeleteQueueAfter(t, topic+".info") // oslo's notifier declares <topic>.<priority> too
	amqptest.DeleteExchangeAfter(t, exchange)
	l := newTestListener(t, name, fmt.Sprintf("urls: [%q]\nexchanges: [%s]\ntopics: [%s]\n", amqptest.Broker, exchange, topic))
	amqptest.DeleteQueueAfter(t, l.cfg.Queue)
	sink := &recSink{}
	run(t, l, sink)

	ver := amqptest.Fixture(t, "nova-versioned/instance-power_off-end.json")
	cinder := amqptest.Fixture(t, "cinder/scenario_1_volume-create.json")
	msgs := []map[string]any{
		{"publisher_id": ver["publisher_id"], "event_type": ver["event_type"], "payload": ver["payload"]},
		{"publisher_id": cinder["publisher_id"], "event_type": cinder["event_type"], "payload": cinder["payload"]},
		{"publisher_id": "identity.host", "event_type": "identity.project.created", "payload": map[string]any{"resource_info": "x"}},
	}
	in, err := json.Marshal(msgs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := time.Now().UTC()
	args := []string{"testdata/amqp/oslo_notify.py", exchange, topic}
	if compression != "" {
		args = append(args, compression)
	}
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", args...)
	cmd.Stdin = strings.NewReader(string(in))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python3 oslo.messaging notifier (install python3-oslo.messaging: scripts/deps.d/rabbitmq.sh): %v\n%s", err, out)
	}
	eventually.True(t, "the notifier's messages", 10*time.Second, func() bool { return l.Status().Received == 3 })
	got := sink.got()
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2: %+v", len(got), got)
	}
	if e := got[0].Entity; e.Key != "nova.instance:178b0921-8f85-4257-88b6-2e743b5a975c" || e.State != "SHUTOFF" || e.ParentKey != "nova.host:compute" {
		t.Fatalf("nova event: %+v", e)
	}
	if e := got[1].Entity; e.Key != "cinder.volume:990a723f-6c19-4f83-8526-6383c9e9389f" || e.State != "available" {
		t.Fatalf("cinder event: %+v", e)
	}
	for _, ev := range got {
		// The notifier's own clock: str(timeutils.utcnow()).
		if ts := ev.Entity.Timestamp; ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) || ev.Entity.Source != name {
			t.Fatalf("timestamp %v source %q", ts, ev.Entity.Source)
		}
	}
	if bad := l.Status().Bad; bad["unknown_event_type"] != 1 {
		t.Fatalf("bad: %v", bad)
	}
}

func TestAMQPConfigTLS(t *testing.T) {
	ca := capooltest.WriteCA(t, t.TempDir(), "ca.pem")
	l := newTestListener(t, "bus", fmt.Sprintf("urls: [\"rabbit://u:p@broker:5671/\"]\ntls: {ca_file: %q, server_name: broker}\n", ca))
	if !strings.HasPrefix(l.urls[0], "amqps://") || l.tls == nil || l.tls.RootCAs == nil || l.tls.ServerName != "broker" {
		t.Fatalf("urls %v tls %+v", l.urls, l.tls)
	}
	doc := configtest.Node(t, "name: bus\ntype: amqp\nurls: [\"amqps://h/\"]\ntls: {cert_file: c.pem}\n")
	if _, err := New("amqp", Settings{Name: "bus", Node: doc, Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "cert_file and key_file go together") {
		t.Fatalf("err = %v", err)
	}
}
