package e2e

// The engine's tombstones: a notification delivered after the delete of
// its entity, but older than the delete, does not bring the entity back;
// on a bus of the test's own and on the real test cloud.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/openstack/testcloud"
)

// TestBusLateNotificationAfterDelete: a notification sent before an
// instance's delete but delivered after it (a late
// instance.power_off.end) does not bring the deleted instance back: the
// engine keeps a tombstone of the delete, and the late notification's own
// timestamp is older. One with a newer timestamp still creates it.
func TestBusLateNotificationAfterDelete(t *testing.T) {
	t.Parallel()
	b := newBusSetup(t)
	s := startSidecar(t, "", b.listener(""))
	sub := subscribe(t, s.socket, "nova.instance")
	waitConnected(t, s.client())
	pub := amqptest.NewPublisher(t)
	ts := time.Now().UTC().Add(-time.Minute)
	fixture := func(name string) map[string]any { return amqptest.Fixture(t, "nova-versioned/"+name+".json") }
	// create at ts, delete at ts+2s, then the power-off of ts+1s, late.
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, fixture("instance-create-end"), "", "", ts))
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, fixture("instance-delete-end"), "", "", ts.Add(2*time.Second)))
	waitFor(t, "create and delete", 10*time.Second, func() bool { return sub.count() >= 2 })
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, fixture("instance-power_off-end"), "", "", ts.Add(time.Second)))
	time.Sleep(time.Second) // room for the unwanted create
	got, _ := sub.got()
	if len(got) != 2 || got[0].Action != "create" || got[1].Action != "delete" {
		t.Fatalf("changes %+v, want a create and a delete only", got)
	}
	if n := sqlite(t, s.db, "SELECT count(*) FROM entities;"); n != "0" {
		t.Fatalf("entities after the late notification: %q", n)
	}
	// A notification newer than the delete (a server of the same id
	// created again: only a key named by its owner can be) creates it.
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, fixture("instance-create-end"), "", "", ts.Add(3*time.Second)))
	waitFor(t, "the newer create", 10*time.Second, func() bool { return sub.count() >= 3 })
	if got, _ := sub.got(); got[2].Action != "create" || got[2].Key != "nova.instance:"+busInstance {
		t.Fatalf("third change %+v, want the create", got[2])
	}
}

// TestRealCloudLateNotificationAfterDelete: on the real test cloud, a
// server's own instance.create.end, captured from Nova's bus and delivered
// again after the delete reached the sidecar (a late notification, as a
// broker redelivery or a slow consumer makes it), does not bring the
// server back: the engine's tombstone is newer than the notification's own
// timestamp. Without tombstones the server is created again.
func TestRealCloudLateNotificationAfterDelete(t *testing.T) {
	t.Parallel()
	c := testcloud.Start(t)
	// A queue of the test's own beside the sidecar's, to capture Nova's
	// versioned notifications as sent.
	captured := busTap(t, amqptest.AdminAt(t, c.AMQPURL), "nova")
	s := startCloudSidecar(t, c, "1h", busListener(c, amqptest.Name("testcloud")))
	waitConnected(t, s.client())
	sub := subscribe(t, s.socket, "nova.instance")

	id := c.CreateServer(t, testcloud.Name("late"), "")
	key := "nova.instance:" + id
	has := func(action, state string) func() bool {
		return func() bool {
			chs, _ := sub.got()
			for _, x := range chs {
				if x.Key == key && (action == "" || x.Action == action) && (state == "" || x.State == state) {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, "the server ACTIVE through the bus", 2*time.Minute, has("", "ACTIVE"))
	// Nova's own instance.create.end of this server, as it was sent.
	var createEnd []byte
	waitFor(t, "instance.create.end on the capture queue", 30*time.Second, func() bool {
		for _, m := range captured() {
			var env struct {
				Msg string `json:"oslo.message"`
			}
			if json.Unmarshal(m.body, &env) == nil && strings.Contains(env.Msg, `"instance.create.end"`) && strings.Contains(env.Msg, id) {
				createEnd = m.body
				return true
			}
		}
		return false
	})
	c.DeleteServer(t, id)
	waitFor(t, "the delete through the bus", 2*time.Minute, has("delete", ""))
	time.Sleep(2 * time.Second) // Nova's own late notifications, if any
	mark := sub.count()
	// The late delivery: the sidecar's queue is bound to the same
	// exchange and key.
	amqptest.NewPublisherAt(t, c.AMQPURL).PublishWait("nova", busKey, createEnd)
	time.Sleep(3 * time.Second)
	chs, _ := sub.got()
	for _, x := range chs[mark:] {
		if x.Key == key {
			t.Fatalf("the late instance.create.end brought %s back: %+v", key, x)
		}
	}
	all, _ := getAllCloud(t, s)
	if _, ok := all[key]; ok {
		t.Fatalf("%s in get-all after its delete", key)
	}
	// And a poll of the cloud, begun after the delete, agrees.
	collectNow(t, s)
	if all, _ := getAllCloud(t, s); all[key].State != "" {
		t.Fatalf("%s back after a poll", key)
	}
}
