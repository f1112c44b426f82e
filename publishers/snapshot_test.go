package publishers

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// readAll returns every message of the stream, snapshots included, until
// stop says so.
func readAll(t *testing.T, stream string, stop func([]Message) bool) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []Message
	done := errors.New("done")
	err := ReadStream(ctx, ReadOptions{URL: amqptest.Broker, Stream: stream, Since: -1, Snapshots: true}, func(m Message) error {
		m.Body = append([]byte(nil), m.Body...)
		out = append(out, m)
		if stop(out) {
			return done
		}
		return nil
	})
	if err != done {
		t.Fatalf("read stream %s: %v (got %d messages)", stream, err, len(out))
	}
	return out
}

// snapshotAt assembles the snapshot of generation gen from msgs: the keys
// of its entities, and its end.
func snapshotAt(t *testing.T, msgs []Message, gen int64) (map[string]bool, Message) {
	t.Helper()
	keys := map[string]bool{}
	var parts int64
	for _, m := range msgs {
		if m.Generation != gen || !m.IsSnapshot() {
			continue
		}
		switch m.Kind {
		case "snapshot":
			parts++
			if m.Part != parts {
				t.Fatalf("snapshot %d: part %d after %d", gen, m.Part, parts-1)
			}
			var es []struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal(m.Body, &es); err != nil || int64(len(es)) != m.Entities {
				t.Fatalf("snapshot %d part %d: %v, %d entities, header %d", gen, m.Part, err, len(es), m.Entities)
			}
			for _, e := range es {
				keys[e.Key] = true
			}
		case "snapshot-end":
			if m.Parts != parts || m.Entities != int64(len(keys)) {
				t.Fatalf("snapshot %d end: %+v, but %d parts and %d entities read", gen, m, parts, len(keys))
			}
			return keys, m
		}
	}
	t.Fatalf("no end of snapshot %d", gen)
	return nil, Message{}
}

func TestStreamSnapshots(t *testing.T) {
	r := openRig(t, t.TempDir())
	stream := newStream(t)
	r.changes(3000)
	conf := streamConf(stream, amqptest.Broker, "snapshot_part_bytes: 20000\nmax_lag: 100\n")
	set := r.publisher(conf)
	stop := run(set)
	waitCursor(t, set, 3000)
	// The first session begins with a snapshot of the 3000 entities (the
	// log held them all, but a consumer cannot know it would stay so).
	msgs := readAll(t, stream, func(ms []Message) bool { return ms[len(ms)-1].Seq == 3000 && !ms[len(ms)-1].IsSnapshot() })
	if msgs[0].Kind != "snapshot-begin" || msgs[0].Generation != 1 {
		t.Fatalf("first message: %+v", msgs[0])
	}
	keys, end := snapshotAt(t, msgs, 1)
	if len(keys) != 3000 || end.SnapshotSeq != 3000 || end.Parts < 10 {
		t.Errorf("snapshot 1: %d entities, end %+v", len(keys), end)
	}
	if st := set.Status()["s"]; st.Snapshot == nil || st.Snapshot.Generation != 1 || st.Snapshot.Seq != 3000 || st.Published != 3000 {
		t.Errorf("status: %+v %+v", st, st.Snapshot)
	}
	// Later changes carry generation 1.
	r.changes(10)
	waitCursor(t, set, 3010)
	// One snapshot: the periodic check does not take one awaiting its
	// confirm for none.
	if st := set.Status()["s"]; st.Snapshots != 1 {
		t.Errorf("first session wrote %d snapshots, want 1", st.Snapshots)
	}
	stop()
	msgs = readAll(t, stream, func(ms []Message) bool { return ms[len(ms)-1].Seq == 3010 && !ms[len(ms)-1].IsSnapshot() })
	if m := msgs[len(msgs)-1]; m.Generation != 1 || m.Kind != "change" {
		t.Errorf("a change after the snapshot: %+v", m)
	}
	// A restart with its snapshot recent writes none.
	set = r.session(conf, 5)
	if st := set.Status()["s"]; st.Snapshots != 0 {
		t.Errorf("restart wrote %d snapshots, want 0", st.Snapshots)
	}
	// Changes pruned before they were published: a resync marker, then a
	// new snapshot, so that a consumer starting there is complete again.
	r.changes(200)
	if _, err := r.st.PruneAbove(context.Background(), 10, 0, time.Now(), set.Floor()); err != nil {
		t.Fatal(err)
	}
	set = r.publisher(conf)
	stop = run(set)
	defer stop()
	waitCursor(t, set, 3215)
	if st := set.Status()["s"]; st.Snapshots != 1 {
		t.Errorf("the session after the marker wrote %d snapshots, want 1", st.Snapshots)
	}
	msgs = readAll(t, stream, func(ms []Message) bool { return ms[len(ms)-1].Seq == 3215 && !ms[len(ms)-1].IsSnapshot() })
	var marker int
	for i, m := range msgs {
		if m.Resync {
			marker = i
		}
	}
	if marker == 0 || msgs[marker+1].Kind != "snapshot-begin" || msgs[marker+1].Generation != 2 {
		t.Fatalf("after the marker %+v: %+v", msgs[marker], msgs[marker+1])
	}
	keys, end = snapshotAt(t, msgs, 2)
	if len(keys) != 3215 || end.SnapshotSeq != 3215 {
		t.Errorf("snapshot 2: %d entities, end %+v", len(keys), end)
	}
	// The reader without Snapshots sees only changes and markers.
	for _, m := range collect(t, amqptest.Broker, stream, 3000, 3215) {
		if m.IsSnapshot() {
			t.Fatalf("snapshot message without Snapshots: %+v", m)
		}
	}
}

// TestStreamReaderGap: a stream that no longer holds the changes after a
// reader's since (here deleted and made again by the publisher, which
// begins it with a snapshot) gives the reader a gap first, never a silent
// skip.
func TestStreamReaderGap(t *testing.T) {
	r := openRig(t, t.TempDir())
	stream := newStream(t)
	conf := streamConf(stream, amqptest.Broker, "")
	r.session(conf, 100)
	if _, err := amqptest.Admin(t).QueueDelete(stream, false, false, false); err != nil {
		t.Fatal(err)
	}
	r.changes(10)
	set := r.publisher(conf)
	stop := run(set)
	defer stop()
	waitCursor(t, set, 110)
	msgs := collect(t, amqptest.Broker, stream, 50, 110)
	if g := msgs[0]; g.Kind != "gap" || !g.Resync || g.LostFrom != 51 || g.LostThrough != 100 {
		t.Fatalf("first message read after 50: %+v", g)
	}
	checkSeqs(t, msgs[1:], 101, 110)
	// A reader inside what the stream holds gets no gap.
	checkSeqs(t, collect(t, amqptest.Broker, stream, 105, 110), 106, 110)
}
