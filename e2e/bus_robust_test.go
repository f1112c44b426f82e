package e2e

// The bus in the real world, through the real binary: several sidecars on
// one broker, a broker restart, secrets in notification contexts.

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/rpc"
)

// TestBusTwoSidecarsEachGetAll: two sidecars with the same listener config
// on one broker (two controllers) each get every notification: each has a
// queue of its own by default. A third sidecar given the first one's queue
// explicitly shares it, and status warns on both.
func TestBusTwoSidecarsEachGetAll(t *testing.T) {
	b := newBusSetupVHost(t)
	conf := b.listenerWith("", "", ", consumer_check: 200ms")
	var subs []*busSub
	var clients []*rpc.Client
	for range 2 {
		s := startSidecar(t, "", conf)
		c := s.client()
		waitConnected(t, c)
		subs, clients = append(subs, subscribe(t, s.socket, "nova.instance")), append(clients, c)
	}
	pub := amqptest.NewPublisherAt(t, b.url)
	create := amqptest.Fixture(t, "nova-versioned/instance-create-end.json")
	for i := range 4 {
		pub.PublishWait(b.exchange, busKey, busEnvelope(t, create, fmt.Sprintf("cccccccc-0000-4000-8000-%012d", i), "", time.Now()))
	}
	for i, sub := range subs {
		waitFor(t, fmt.Sprintf("sidecar %d to get all four", i+1), 10*time.Second, func() bool { return sub.count() >= 4 })
	}
	time.Sleep(300 * time.Millisecond) // room for an unwanted fifth
	var queues []string
	for i, sub := range subs {
		d := listenerDetails(t, clients[i])
		t.Logf("sidecar %d: %d of 4 notifications, queue %v, other consumers %v", i+1, sub.count(), d["queue"], d["other_consumers"])
		if sub.count() != 4 || d["other_consumers"] != 0.0 || d["warning"] != nil {
			t.Fatalf("sidecar %d: %d changes, status %v", i+1, sub.count(), d)
		}
		queues = append(queues, d["queue"].(string))
	}
	if queues[0] == queues[1] || !strings.HasPrefix(queues[0], "synchronizer."+b.name+".") {
		t.Fatalf("queues %v: want one per sidecar, synchronizer.<name>.<host>.<database hash>", queues)
	}

	// A third sidecar configured with the first one's queue.
	s3 := startSidecar(t, "", b.listenerWith("", queues[0], ", consumer_check: 200ms"))
	c3 := s3.client()
	waitConnected(t, c3)
	for _, c := range []*rpc.Client{c3, clients[0]} {
		waitFor(t, "the other-consumers warning", 10*time.Second, func() bool {
			d := listenerDetails(t, c)
			w, _ := d["warning"].(string)
			return d["other_consumers"] == 1.0 && strings.Contains(w, "other consumer")
		})
	}
	if d := listenerDetails(t, clients[1]); d["other_consumers"] != 0.0 {
		t.Fatalf("the second sidecar's own queue: %v", d)
	}
	t.Logf("shared queue: %v", listenerDetails(t, c3)["warning"])
}

// TestBusBrokerRestartNothingMissing: 5,000 servers are created in a fake
// cloud, each announced by a notification, and the broker (a node of the
// test's own) is restarted with stop_app / start_app midway, with 500
// notifications waiting in the sidecar's queue (the sidecar is paused with
// SIGSTOP while they are published, so the backlog is certain). Whatever
// the bus lost, the catch-up poll that follows the reconnect lists: every
// server is in the baseline at the end, none missing. With the default
// durable queue the backlog survives (and the restart drops our bindings to
// oslo's default non-durable exchanges: a catch-up covers what was
// published before we bound again); with a non-durable queue the backlog
// is lost with the queue, and only the catch-up poll brings it back.
func TestBusBrokerRestartNothingMissing(t *testing.T) {
	// The longest test here (minutes, mostly a RabbitMQ node of its own
	// stopping and starting): the others run beside it.
	t.Parallel()
	node := amqptest.StartNode(t)
	for _, tc := range []struct {
		name, extra string
		durable     bool
	}{
		{"defaults", "", true},
		{"queue_durable=false", ", queue_durable: false", false},
	} {
		t.Run(tc.name, func(t *testing.T) { testBrokerRestart(t, node, tc.extra, tc.durable) })
	}
}

func testBrokerRestart(t *testing.T, node *amqptest.Node, extra string, durable bool) {
	const total, chunk, pausedChunks = 5000, 250, 2
	dir := t.TempDir()
	cloud := fakeCloud(t, dir, 1000)
	b := busSetup{exchange: amqptest.Name("ex"), name: amqptest.Name("bus"), url: node.URL}
	s := startSidecar(t, dir, "collectors:\n  - {name: cloud, type: openstack, cloud: fakecloud, clouds_file: clouds.yaml, types: [nova.instance], interval: 1h}\n"+
		b.listenerWith("cloud", "", ", max_backoff: 500ms"+extra))
	c := s.client()
	waitConnected(t, c)
	// The first connect's catch-up poll is over before anything is
	// published: the polls that count are those after the restart.
	waitFor(t, "the first-connect catch-up", 20*time.Second, func() bool {
		l := listenerEntry(t, c)
		return l["catch_up_polls"] == 1.0
	})
	before := len(allKeys(t, c, "nova.instance"))

	create := amqptest.Fixture(t, "nova-versioned/instance-create-end.json")
	var ids []string
	start := time.Now()
	pub := amqptest.NewPublisherAt(t, node.URL)
	pauseAt := total / 3 / chunk * chunk
	for lo := 0; lo < total; lo += chunk {
		if lo == pauseAt {
			if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.cmd.Process.Signal(syscall.SIGCONT) })
		}
		// The truth first (the cloud has the server), then its notification.
		batch := cloud.AddServers(chunk)
		ids = append(ids, batch...)
		var bodies [][]byte
		for _, id := range batch {
			bodies = append(bodies, busEnvelope(t, create, id, "", time.Now()))
		}
		publishChunk(t, pub, b.exchange, bodies)
		if lo == pauseAt+(pausedChunks-1)*chunk {
			if err := node.StopApp(); err != nil {
				t.Fatal(err)
			}
			if err := node.StartApp(); err != nil {
				t.Fatal(err)
			}
			if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			t.Logf("broker restarted with %d notifications published while the sidecar was paused", pausedChunks*chunk)
		}
	}
	t.Logf("published %d notifications across the restart in %s", total, time.Since(start))
	want := map[string]bool{}
	for _, id := range ids {
		want["nova.instance:"+id] = true
	}
	var missing int
	waitFor(t, "every server in the baseline", 60*time.Second, func() bool {
		missing = 0
		for _, k := range allKeys(t, c, "nova.instance") {
			if want[k] {
				missing--
			}
		}
		missing += len(want)
		if missing != 0 {
			time.Sleep(200 * time.Millisecond)
		}
		return missing == 0
	})
	waitFor(t, "the catch-up polls to finish", 20*time.Second, func() bool {
		l := listenerEntry(t, c)
		return l["catch_up_polls"] == l["catch_ups"]
	})
	l := listenerEntry(t, c)
	d := l["details"].(map[string]any)
	last, _ := l["last_catch_up"].(map[string]any)
	keys := allKeys(t, c, "nova.instance")
	acked := int(d["acked"].(float64))
	t.Logf("%d of %d servers reflected (%d before); bus: %v notifications received, %d acked, %v reconnects; catch-ups: %v asked, %v polls, last %v",
		len(keys)-before, total, before, d["received"], acked, d["reconnects"], l["catch_ups"], l["catch_up_polls"], last)
	if r := last["reason"]; len(keys)-before != total || d["reconnects"].(float64) < 1 || l["catch_ups"].(float64) < 2 ||
		r != "queue_created" && r != "reconnect_non_durable_exchanges" {
		t.Fatalf("after the restart: %d servers, listener %v", len(keys)-before, l)
	}
	// The durable queue kept the backlog; the non-durable one lost it, and
	// the catch-up poll alone made up for it.
	if durable && acked < total || !durable && acked > total-pausedChunks*chunk {
		t.Fatalf("durable queue %v: %d of %d notifications came through the bus", durable, acked, total)
	}
}

// publishChunk publishes bodies with confirms and, when the broker goes
// away meanwhile, publishes them all again on a new connection once it is
// back (duplicates are fine: the engine suppresses them).
func publishChunk(t *testing.T, p *amqptest.Publisher, exchange string, bodies [][]byte) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var last *amqp.DeferredConfirmation
		var err error
		for _, body := range bodies {
			if last, err = p.TryPublish(exchange, busKey, body); err != nil {
				break
			}
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var ok bool
			ok, err = last.WaitContext(ctx)
			cancel()
			if err == nil && !ok {
				err = fmt.Errorf("nacked")
			}
		}
		if err == nil {
			return
		}
		for {
			if time.Now().After(deadline) {
				t.Fatalf("publisher: broker not back after 60s: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			// A restarted broker has lost the (non-durable) exchange until
			// the listener declares it again: publishing to it fails.
			if p.Redial() == nil {
				break
			}
		}
	}
}

// listenerEntry returns the status entry of the sidecar's only listener.
func listenerEntry(t testing.TB, c *rpc.Client) map[string]any {
	t.Helper()
	var st struct {
		Listeners []map[string]any `json:"listeners"`
	}
	if err := c.Call(context.Background(), "status", nil, &st); err != nil || len(st.Listeners) != 1 {
		t.Fatalf("status: %v %v", err, st.Listeners)
	}
	return st.Listeners[0]
}

func allKeys(t testing.TB, c *rpc.Client, types ...string) []string {
	t.Helper()
	var all struct {
		Entities []struct {
			Key string `json:"key"`
		} `json:"entities"`
	}
	if err := c.Call(context.Background(), "get_all", map[string]any{"types": types}, &all); err != nil {
		t.Fatalf("get_all: %v", err)
	}
	out := make([]string, len(all.Entities))
	for i, e := range all.Entities {
		out[i] = e.Key
	}
	return out
}

// busToken is a user's token as oslo puts it in notification contexts.
const busToken = "gAAAAABsecret-user-token-4f1c0ffee"

// TestBusContextSecretsNotKept: notifications whose context (the
// _context_* keys oslo adds) and payload carry the user's token, a legacy
// scheduler.select_destinations payload with the request context in it,
// and malformed messages carrying it: no trace of the token in the
// database files, the log or status.
func TestBusContextSecretsNotKept(t *testing.T) {
	t.Parallel()
	b, s, c, sub, pub := startBusRig(t, "log: {level: debug}\n")

	create := amqptest.Fixture(t, "nova-versioned/instance-create-end.json")
	inner := map[string]any{}
	for k, v := range create {
		inner[k] = v
	}
	inner["_context_auth_token"] = busToken
	inner["_context_service_token"] = busToken
	inner["_context_user_identity"] = "u p - - -"
	payload := map[string]any{}
	for k, v := range create["payload"].(map[string]any) {
		payload[k] = v
	}
	data := map[string]any{}
	for k, v := range payload["nova_object.data"].(map[string]any) {
		data[k] = v
	}
	data["context"] = map[string]any{"auth_token": busToken}
	data["auth_token"] = busToken
	payload["nova_object.data"] = data
	inner["payload"] = payload
	pub.PublishWait(b.exchange, busKey, amqptest.Envelope(t, inner, time.Now()))

	legacy := map[string]any{
		"event_type": "scheduler.select_destinations.start", "publisher_id": "scheduler.controller",
		"_context_auth_token": busToken,
		"payload": map[string]any{"request_spec": map[string]any{"instance_properties": map[string]any{"uuid": busInstance}},
			"context": map[string]any{"auth_token": busToken, "user_id": "u"}},
	}
	pub.PublishWait(b.exchange, busKey, amqptest.Envelope(t, legacy, time.Now()))
	// Marshalling maps of strings and numbers cannot fail.
	msgJSON, _ := json.Marshal(map[string]any{"event_type": 42, "_context_auth_token": busToken})
	wrongType, _ := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(msgJSON)})
	for _, body := range [][]byte{
		// Cut off: not JSON.
		[]byte(`{"oslo.version": "2.0", "oslo.message": "{\"_context_auth_token\": \"` + busToken + `\", \"event_type`),
		// A JSON envelope whose inner message is not JSON.
		[]byte(`{"oslo.version": "2.0", "oslo.message": "{\"_context_auth_token\": \"` + busToken + `\", oops}"}`),
		// A field of the wrong type.
		wrongType,
		// A bad timestamp, with the token in the context.
		amqptest.Envelope(t, map[string]any{"event_type": "instance.update", "timestamp": "not a time", "_context_auth_token": busToken, "payload": map[string]any{}}, time.Now()),
	} {
		pub.PublishWait(b.exchange, busKey, body)
	}
	waitFor(t, "the good one applied and the bad ones counted", 10*time.Second, func() bool {
		d := listenerDetails(t, c)
		return sub.count() == 1 && d["bad_total"] == 5.0
	})
	var st map[string]any
	if err := c.Call(context.Background(), "status", nil, &st); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(st)
	if strings.Contains(string(raw), busToken) {
		t.Fatalf("status holds the token: %s", raw)
	}
	got, _ := sub.got()
	if len(got) != 1 || got[0].Key != "nova.instance:"+busInstance {
		t.Fatalf("changes %+v", got)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(s.db + "*")
	for _, f := range files {
		b := readFile(t, f)
		if strings.Contains(string(b), busToken) {
			t.Errorf("%s holds the token", filepath.Base(f))
		}
	}
	log := s.log.String()
	if strings.Contains(log, busToken) {
		t.Errorf("the log holds the token:\n%s", log)
	}
	if n := strings.Count(log, "amqp: bad message"); n < 3 {
		t.Errorf("%d bad-message log lines, want the malformed ones logged (without the token):\n%s", n, log)
	}
	if len(files) == 0 {
		t.Fatal("no database files to check")
	}
}
