package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// A notification sent before an instance's delete but delivered after it
// (a late instance.power_off.end) does not bring the deleted instance back:
// the engine keeps a tombstone of the delete, and the late notification's
// own timestamp is older. One with a newer timestamp still creates it.
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
	out, err := exec.Command("sqlite3", s.db, "SELECT count(*) FROM entities;").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("entities after the late notification: %v %q", err, out)
	}
	// A notification newer than the delete (a server of the same id
	// created again: only a key named by its owner can be) creates it.
	pub.PublishWait(b.exchange, busKey, busEnvelope(t, fixture("instance-create-end"), "", "", ts.Add(3*time.Second)))
	waitFor(t, "the newer create", 10*time.Second, func() bool { return sub.count() >= 3 })
	if got, _ := sub.got(); got[2].Action != "create" || got[2].Key != "nova.instance:"+busInstance {
		t.Fatalf("third change %+v, want the create", got[2])
	}
}
