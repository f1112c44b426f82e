package e2e

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
	"github.com/openstack-synchronizer/synchronizer/openstack/testcloud"
)

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
	ch := amqptest.AdminAt(t, c.AMQPURL)
	capture := amqptest.Name("capture")
	if _, err := ch.QueueDeclare(capture, false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(capture, busKey, "nova", false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(capture, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen [][]byte
	go func() {
		for m := range msgs {
			mu.Lock()
			seen = append(seen, m.Body)
			mu.Unlock()
		}
	}()
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
		mu.Lock()
		defer mu.Unlock()
		for _, b := range seen {
			var env struct {
				Msg string `json:"oslo.message"`
			}
			if json.Unmarshal(b, &env) == nil && strings.Contains(env.Msg, `"instance.create.end"`) && strings.Contains(env.Msg, id) {
				createEnd = b
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
