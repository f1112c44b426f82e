package e2e

// End-to-end tests of the amqp listener through the real binary: oslo 2.0
// envelopes published to the real RabbitMQ on 127.0.0.1:5672 (started by
// scripts/deps.d/rabbitmq.sh), the real engine and SQLite, and a Go
// subscriber registered over the socket. Every test binds exchanges and a
// queue of its own, so runs never see each other's messages.
//
// Benchmarks (not run by make test):
//
//	go test -run '^$' -bench BenchmarkBus -benchtime 30000x ./e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/rpc"
)

// busInstance is the server of the Nova versioned samples.
const busInstance = "178b0921-8f85-4257-88b6-2e743b5a975c"

// busSetup names one listener's exchange and queue and deletes them after
// the test (after the sidecar stopped: cleanups run last-in first-out).
type busSetup struct{ exchange, name, queue, url, vhost string }

func newBusSetup(t testing.TB) busSetup {
	t.Helper()
	b := busSetup{exchange: amqptest.Name("ex"), name: amqptest.Name("bus"), url: amqptest.Broker}
	b.queue = "synchronizer." + b.name
	amqptest.Admin(t) // fails clearly when the broker is not there
	// Last in, first out: the queue goes first, then its exchange.
	amqptest.DeleteExchangeAfter(t, b.exchange)
	amqptest.DeleteQueueAfter(t, b.queue)
	return b
}

// newBusSetupVHost is newBusSetup in a virtual host of the test's own
// (deleted after the test with everything in it): for tests that drop
// connections or leave queues whose names they do not choose.
func newBusSetupVHost(t testing.TB) busSetup {
	t.Helper()
	b := busSetup{exchange: amqptest.Name("ex"), name: amqptest.Name("bus")}
	b.queue = "synchronizer." + b.name
	b.vhost, b.url = amqptest.VHost(t)
	return b
}

// listener is the config entry of the amqp listener; owner may be empty.
// The queue is named: tests that need the default leave it out (queue
// "").
func (b busSetup) listener(owner string) string {
	return b.listenerWith(owner, b.queue, "")
}

func (b busSetup) listenerWith(owner, queue, extra string) string {
	o := ""
	if owner != "" {
		o = ", owner: " + owner
	}
	if queue != "" {
		o += ", queue: " + queue
	}
	return fmt.Sprintf("listeners:\n  - {name: %s, type: amqp, urls: [%q], exchanges: [%s], topics: [versioned_notifications], min_backoff: 20ms%s%s}\n",
		b.name, b.url, b.exchange, o, extra)
}

// busEnvelope stamps and wraps an inner message (amqptest.Envelope); uuid
// and state, when not empty, replace those of a versioned instance payload.
func busEnvelope(t testing.TB, inner map[string]any, uuid, state string, ts time.Time) []byte {
	t.Helper()
	if d, ok := inner["payload"].(map[string]any)["nova_object.data"].(map[string]any); ok && (uuid != "" || state != "") {
		c := make(map[string]any, len(d))
		for k, v := range d {
			c[k] = v
		}
		if uuid != "" {
			c["uuid"] = uuid
		}
		if state != "" {
			c["state"] = state
		}
		p := map[string]any{}
		for k, v := range inner["payload"].(map[string]any) {
			p[k] = v
		}
		p["nova_object.data"] = c
		copied := make(map[string]any, len(inner))
		for k, v := range inner {
			copied[k] = v
		}
		copied["payload"] = p
		inner = copied
	}
	return amqptest.Envelope(t, inner, ts)
}

// busKey is the routing key the listeners of these tests bind.
const busKey = "versioned_notifications.info"

// busChange is what the tests read of a change notification.
type busChange struct {
	change
	Name      string    `json:"name"`
	ParentKey string    `json:"parent_key"`
	Project   string    `json:"project"`
	Timestamp time.Time `json:"timestamp"`
	Data      struct {
		Poll bool `json:"poll"`
	} `json:"data"`
	at time.Time // when the subscriber read it
}

// tapped is a message busTap received, and when.
type tapped struct {
	body []byte
	at   time.Time
}

// busTap consumes, on ch, a copy of what is published to exchange with
// busKey, on a queue of its own: the messages as sent, and when each
// arrived (to tell the broker's share of a latency from the
// synchronizer's). It returns what has arrived so far, in order.
func busTap(tb testing.TB, ch *amqp.Channel, exchange string) func() []tapped {
	tb.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err == nil {
		err = ch.QueueBind(q.Name, busKey, exchange, false, nil)
	}
	if err != nil {
		tb.Fatalf("tap queue: %v", err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		tb.Fatalf("tap consume: %v", err)
	}
	var mu sync.Mutex
	var got []tapped
	go func() {
		for m := range deliveries {
			now := time.Now()
			mu.Lock()
			got = append(got, tapped{m.Body, now})
			mu.Unlock()
		}
	}()
	return func() []tapped {
		mu.Lock()
		defer mu.Unlock()
		return append([]tapped(nil), got...)
	}
}

// busSub is a subscriber registered over the socket; it records every
// change and any resync.
type busSub struct {
	mu      sync.Mutex
	changes []busChange
	resync  []string
	decodes atomic.Int64
	onRecv  func(c *busChange)
}

func subscribe(t testing.TB, socket string, types ...string) *busSub {
	t.Helper()
	c, err := rpc.Dial(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var reg struct {
		Subscription string `json:"subscription"`
	}
	if err := c.Call(context.Background(), "register", map[string]any{"types": types}, &reg); err != nil {
		t.Fatalf("register: %v", err)
	}
	s := &busSub{}
	go func() {
		for n := range c.Notifications() {
			now := time.Now()
			if n.Method != "change" {
				s.mu.Lock()
				s.resync = append(s.resync, n.Method+" "+string(n.Params))
				s.mu.Unlock()
				continue
			}
			batch := make([]busChange, len(n.Change.Changes))
			for i, raw := range n.Change.Changes {
				if err := json.Unmarshal(raw, &batch[i]); err != nil {
					panic(fmt.Sprintf("change %s: %v", raw, err))
				}
				batch[i].at = now
				if s.onRecv != nil {
					s.onRecv(&batch[i])
				}
			}
			s.mu.Lock()
			s.changes = append(s.changes, batch...)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *busSub) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.changes)
}

func (s *busSub) got() ([]busChange, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]busChange(nil), s.changes...), append([]string(nil), s.resync...)
}

// listenerDetails returns the status details of the sidecar's only
// listener.
func listenerDetails(t testing.TB, c *rpc.Client) map[string]any {
	t.Helper()
	d, err := tryListenerDetails(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func tryListenerDetails(c *rpc.Client) (map[string]any, error) {
	var st struct {
		Listeners []struct {
			Details map[string]any `json:"details"`
		} `json:"listeners"`
	}
	if err := c.Call(context.Background(), "status", nil, &st); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if len(st.Listeners) != 1 || st.Listeners[0].Details == nil {
		return nil, fmt.Errorf("status: want one listener with details, got %+v", st.Listeners)
	}
	return st.Listeners[0].Details, nil
}

// waitConnected waits until the listener consumes (its queue is bound).
func waitConnected(t testing.TB, c *rpc.Client) {
	t.Helper()
	var last error
	waitFor(t, "the listener to connect", 20*time.Second, func() bool {
		d, err := tryListenerDetails(c)
		last = err
		return err == nil && d["state"] == "connected"
	})
	if last != nil {
		t.Fatal(last)
	}
}

// startBusRig starts a sidecar whose only source is a listener on a
// bus of its own (config, if any, before the listener), subscribes to its
// nova.instance changes and waits until the listener is connected; pub
// publishes on that bus.
func startBusRig(t *testing.T, config string) (b busSetup, s *sidecar, c *rpc.Client, sub *busSub, pub *amqptest.Publisher) {
	t.Helper()
	b = newBusSetup(t)
	s = startSidecar(t, "", config+b.listener(""))
	c = s.client()
	sub = subscribe(t, s.socket, "nova.instance")
	waitConnected(t, c)
	return b, s, c, sub, amqptest.NewPublisher(t)
}

func TestBusNovaInstanceLifecycle(t *testing.T) {
	t.Parallel()
	b, s, _, sub, pub := startBusRig(t, "")
	ts := time.Now().UTC().Add(-time.Minute)
	for i, f := range []string{"instance-create-end", "instance-power_off-end", "instance-delete-end"} {
		pub.PublishWait(b.exchange, busKey, busEnvelope(t, amqptest.Fixture(t, "nova-versioned/"+f+".json"), "", "", ts.Add(time.Duration(i)*time.Second)))
	}
	waitFor(t, "three changes", 10*time.Second, func() bool { return sub.count() >= 3 })
	time.Sleep(200 * time.Millisecond) // room for an unwanted fourth
	got, resync := sub.got()
	if len(got) != 3 || len(resync) != 0 {
		t.Fatalf("changes %+v, other notifications %v", got, resync)
	}
	want := []struct{ action, state string }{{"create", "ACTIVE"}, {"update", "SHUTOFF"}, {"delete", "SHUTOFF"}}
	for i, ch := range got {
		if ch.Key != "nova.instance:"+busInstance || ch.Action != want[i].action || ch.State != want[i].state ||
			ch.Source != b.name || ch.Seq != got[0].Seq+int64(i) || !ch.Timestamp.Equal(ts.Add(time.Duration(i)*time.Second).Truncate(time.Microsecond)) {
			t.Errorf("change %d: %+v, want %s %s from %s", i, ch, want[i].action, want[i].state, b.name)
		}
		if ch.Name != "some-server" || ch.ParentKey != "nova.host:compute" || ch.Project != "6f70656e737461636b20342065766572" {
			t.Errorf("change %d: name %q parent %q project %q", i, ch.Name, ch.ParentKey, ch.Project)
		}
	}
	if got := sqlite(t, s.db, "SELECT count(*) FROM entities; SELECT group_concat(action) FROM (SELECT action FROM changes ORDER BY seq);"); got != "0\ncreate,update,delete" {
		t.Fatalf("sqlite3: %q", got)
	}
}

func TestBusGarbageBetweenGood(t *testing.T) {
	t.Parallel()
	b, _, c, sub, pub := startBusRig(t, "")
	create := amqptest.Fixture(t, "nova-versioned/instance-create-end.json")
	now := time.Now()
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, create, "aaaaaaaa-0000-4000-8000-000000000001", "", now))
	pub.PublishWait(b.exchange, busKey, []byte("\x00\x01 this is not json {"))
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, create, "aaaaaaaa-0000-4000-8000-000000000002", "", now))
	waitFor(t, "two changes", 10*time.Second, func() bool { return sub.count() == 2 })
	var d map[string]any
	waitFor(t, "the garbage counted", 10*time.Second, func() bool {
		d = listenerDetails(t, c)
		return d["bad_total"] == 1.0 && d["acked"] == 2.0
	})
	if bad, _ := d["bad"].(map[string]any); len(bad) != 1 || bad["not_json"] != 1.0 {
		t.Fatalf("bad: %v", d["bad"])
	}
	got, _ := sub.got()
	for i, ch := range got {
		if ch.Action != "create" || ch.Key != fmt.Sprintf("nova.instance:aaaaaaaa-0000-4000-8000-00000000000%d", i+1) {
			t.Fatalf("change %d: %+v", i, ch)
		}
	}
	if st := listenerDetails(t, c)["state"]; st != "connected" {
		t.Fatalf("listener state %v after a bad message", st)
	}
}

// TestBusBurstReconnect: 5,000 instances, each created (ACTIVE) then
// powered off (SHUTOFF), 10,000 notifications; every connection on the
// broker is closed when a third of the changes reached the subscriber.
// Afterwards the baseline holds 5,000 SHUTOFF instances and the subscriber
// got exactly one create and one update per key, each seq once.
func TestBusBurstReconnect(t *testing.T) {
	const keys = 5000
	b := newBusSetupVHost(t)
	s := startSidecar(t, "", b.listener(""))
	c := s.client()
	sub := subscribe(t, s.socket, "nova.instance")
	waitConnected(t, c)
	create := amqptest.Fixture(t, "nova-versioned/instance-create-end.json")
	off := amqptest.Fixture(t, "nova-versioned/instance-power_off-end.json")
	base := time.Now().UTC().Add(-time.Hour)
	bodies := make([][]byte, 0, 2*keys)
	for i := range keys {
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		bodies = append(bodies,
			busEnvelope(t, create, id, "", base.Add(time.Duration(2*i)*time.Microsecond)),
			busEnvelope(t, off, id, "", base.Add(time.Duration(2*i+1)*time.Microsecond)))
	}

	// The publisher is cut off too: it republishes the unconfirmed chunk
	// on a new connection, which also gives the listener duplicates.
	start := time.Now()
	pubDone := make(chan error, 1)
	go func() {
		p := amqptest.NewPublisherAt(t, b.url)
		const chunk = 500
		for lo := 0; lo < len(bodies); {
			hi := min(lo+chunk, len(bodies))
			var last *amqp.DeferredConfirmation
			var err error
			for _, body := range bodies[lo:hi] {
				if last, err = p.TryPublish(b.exchange, busKey, body); err != nil {
					break
				}
			}
			if err == nil {
				var ok bool
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				ok, err = last.WaitContext(ctx)
				cancel()
				if err == nil && !ok {
					err = fmt.Errorf("nacked")
				}
			}
			if err == nil {
				lo = hi
				continue
			}
			// Redial until the broker takes connections again.
			deadline := time.Now().Add(20 * time.Second)
			for p.Redial() != nil {
				if time.Now().After(deadline) {
					pubDone <- fmt.Errorf("publisher: cannot reconnect after %v", err)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		pubDone <- nil
	}()

	// rabbitmqctl takes seconds to start: trigger it early enough that the
	// connections close mid-burst.
	waitFor(t, "a sixth of the changes", 30*time.Second, func() bool { return sub.count() >= 2*keys/6 })
	before, acked := sub.count(), listenerDetails(t, c)["acked"]
	if err := amqptest.CloseConnections(b.vhost, "synchronizer bus test"); err != nil {
		t.Fatal(err)
	}
	t.Logf("rabbitmqctl started with %d changes received (%v notifications acknowledged), connections closed after %s with %d",
		before, acked, time.Since(start), sub.count())
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every change", 40*time.Second, func() bool { return sub.count() >= 2*keys })
	waitFor(t, "the queue to drain", 10*time.Second, func() bool {
		q, err := amqptest.AdminAt(t, b.url).QueueDeclarePassive(b.queue, false, false, false, false, nil)
		return err == nil && q.Messages == 0 && q.Consumers == 1
	})
	time.Sleep(300 * time.Millisecond) // room for a duplicate
	d := listenerDetails(t, c)
	t.Logf("all changes after %s; listener %v", time.Since(start), d)

	got, resync := sub.got()
	if len(resync) != 0 {
		t.Fatalf("subscriber got %v", resync)
	}
	seqs := map[int64]bool{}
	perKey := map[string][]string{}
	for _, ch := range got {
		if seqs[ch.Seq] {
			t.Fatalf("seq %d received twice", ch.Seq)
		}
		seqs[ch.Seq] = true
		perKey[ch.Key] = append(perKey[ch.Key], ch.Action+" "+ch.State)
	}
	if len(got) != 2*keys || len(perKey) != keys {
		t.Fatalf("%d changes for %d keys, want %d for %d", len(got), len(perKey), 2*keys, keys)
	}
	for k, acts := range perKey {
		if strings.Join(acts, ",") != "create ACTIVE,update SHUTOFF" {
			t.Fatalf("%s: %v", k, acts)
		}
	}
	if d["reconnects"].(float64) < 1 || d["redelivered"].(float64) < 1 && d["received"].(float64) <= 2*keys {
		t.Fatalf("no reconnect, or neither a redelivery nor a duplicate: %v", d)
	}
	stored := sqlite(t, s.db, "SELECT count(*), sum(json_extract(entity, '$.state') = 'SHUTOFF') FROM entities WHERE type = 'nova.instance';"+
		"SELECT count(*), count(DISTINCT key) FROM changes;")
	if want := fmt.Sprintf("%d|%d\n%d|%d", keys, keys, 2*keys, keys); stored != want {
		t.Fatalf("sqlite3: %q, want %q", stored, want)
	}
}

// busPlugin is an exec plugin that reads its snapshot at once, says so in
// polls.log, and prints it a second later: a poll in flight.
const busPlugin = `s=$(cat snap.json); echo start >> polls.log; sleep 1; echo end >> polls.log; printf '%s\n' "$s"`

// busNewInstance is created by a push while a poll is in flight.
const busNewInstance = "bbbbbbbb-0000-4000-8000-000000000001"

// writeSnap atomically writes the plugin's snapshot: instances (id to
// state) with the fields the listener maps from the Nova samples.
func writeSnap(t *testing.T, dir string, states map[string]string) {
	t.Helper()
	var ents []map[string]any
	for id, state := range states {
		ents = append(ents, map[string]any{
			"type": "nova.instance", "id": id, "name": "some-server", "state": state,
			"parent_key": "nova.host:compute", "project": "6f70656e737461636b20342065766572",
			"data": map[string]any{"id": id, "status": state, "poll": true},
		})
	}
	raw, _ := json.Marshal(map[string]any{"types": []string{"nova.instance"}, "entities": ents})
	if err := os.WriteFile(filepath.Join(dir, "snap.json.tmp"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "snap.json.tmp"), filepath.Join(dir, "snap.json")); err != nil {
		t.Fatal(err)
	}
}

func pollLog(dir string) []string {
	raw, _ := os.ReadFile(filepath.Join(dir, "polls.log"))
	return strings.Fields(string(raw))
}

// TestBusPushDuringPoll: a power-off notification, and the creation of
// another instance, land while a poll that read the old state (ACTIVE, no
// second instance) is in flight; that poll neither reverts the one nor
// deletes the other, and later polls that show the pushed state cause at
// most one update each (data) and no state flip.
func TestBusPushDuringPoll(t *testing.T) {
	b := newBusSetup(t)
	dir := t.TempDir()
	writeSnap(t, dir, map[string]string{busInstance: "ACTIVE"})
	s := startSidecar(t, dir, fmt.Sprintf("collectors:\n  - {name: cloud, type: exec, command: [sh, -c, %q], interval: 1500ms}\n", busPlugin)+b.listener("cloud"))
	c := s.client()
	waitConnected(t, c)
	waitFor(t, "the first poll", 10*time.Second, func() bool { return statusOf(t, s).Entities == 1 })
	// The listener's first connect has the owner poll once more (catch-up):
	// let it finish, so that the poll caught in flight below is a
	// scheduled one.
	waitFor(t, "the first-connect catch-up poll", 10*time.Second, func() bool { return listenerEntry(t, c)["catch_up_polls"] == 1.0 })
	sub := subscribe(t, s.socket, "nova.instance")

	n := len(pollLog(dir))
	waitFor(t, "a poll to start", 10*time.Second, func() bool { return len(pollLog(dir)) > n })
	inFlight := len(pollLog(dir))
	pub := amqptest.NewPublisher(t)
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, amqptest.Fixture(t, "nova-versioned/instance-power_off-end.json"), "", "", time.Now()))
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, amqptest.Fixture(t, "nova-versioned/instance-create-end.json"), busNewInstance, "", time.Now()))
	waitFor(t, "the pushed changes", 5*time.Second, func() bool { return sub.count() == 2 })
	if l := pollLog(dir); len(l) != inFlight || l[len(l)-1] != "start" {
		t.Fatalf("the push did not land while the poll was in flight: polls.log %v", l)
	}
	writeSnap(t, dir, map[string]string{busInstance: "SHUTOFF", busNewInstance: "ACTIVE"})
	// The in-flight poll ends, then three more polls that show SHUTOFF.
	polls := func() int64 { return statusOf(t, s).Collectors[0].Polls }
	p0 := polls()
	waitFor(t, "four more polls", 15*time.Second, func() bool { return polls() >= p0+4 })

	got, resync := sub.got()
	if len(resync) != 0 {
		t.Fatalf("subscriber got %v", resync)
	}
	perKey := map[string][]busChange{}
	for _, ch := range got {
		perKey[ch.Key] = append(perKey[ch.Key], ch)
	}
	for _, k := range []struct{ id, first, state string }{{busInstance, "update", "SHUTOFF"}, {busNewInstance, "create", "ACTIVE"}} {
		chs := perKey["nova.instance:"+k.id]
		if len(chs) < 1 || len(chs) > 2 {
			t.Fatalf("%s: %d changes, want the push and at most one data refresh: %+v", k.id, len(chs), got)
		}
		for i, ch := range chs {
			want := "update"
			if i == 0 {
				want = k.first
			}
			if ch.Action != want || ch.State != k.state || ch.Name != "some-server" || ch.ParentKey != "nova.host:compute" || ch.Source != "cloud" ||
				ch.Data.Poll != (i == 1) {
				t.Fatalf("%s change %d: %+v, want %s %s (poll data: %v)", k.id, i, ch, want, k.state, i == 1)
			}
		}
		t.Logf("%s: %d changes after the push (a second is the poll's data refresh)", k.id, len(chs))
	}
	if len(perKey) != 2 {
		t.Fatalf("changes of other keys: %+v", got)
	}
}
