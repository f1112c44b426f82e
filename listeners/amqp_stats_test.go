package listeners

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/golden"
)

// TestAMQPStatusJSON pins the bytes of an AMQP listener's status details
// (docs/contract.md), fresh and with every optional figure set.
func TestAMQPStatusJSON(t *testing.T) {
	at := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	full := &amqpListener{cfg: amqpConfig{Queue: "q", QueueDurable: true}}
	full.st = amqpStats{state: "connected", broker: "127.0.0.1:5672", lastErr: "e", down: "d", since: at,
		received: 1, events: 2, acked: 3, ignored: 4, redelivered: 5, deadLettered: 6, batches: 7, applyErrors: 8, reconnects: 9,
		bad: map[string]int64{"unknown_event_type": 10, "bad_json": 1}, lastMessage: at,
		gaps: 11, lastGap: "queue_created", lastGapAt: at,
		consumers: 0, otherConsumers: 2, queueDepth: 0, checkedAt: at}
	checked := &amqpListener{cfg: amqpConfig{Queue: "q"}}
	checked.st = amqpStats{checkedAt: at}
	for _, tc := range []struct {
		name string
		l    *amqpListener
	}{
		{"fresh", &amqpListener{}},
		{"checked", checked},
		{"full", full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.l.Status())
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "status", tc.name+".json"), got)
		})
	}
}
