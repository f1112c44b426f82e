package rpc

import (
	"bufio"
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/openstack-synchronizer/synchronizer/engine"
)

// subscriber is one registration: a bounded queue of changes and a
// goroutine that writes them as batched notifications. A subscriber whose
// queue overflows gets a final resync notification and its connection is
// closed: memory per subscriber is bounded by QueueLimit changes (whose
// bytes are shared with every other subscriber).
type subscriber struct {
	id    string
	ss    *session
	types map[string]bool // nil: every type

	mu       sync.Mutex
	q        []engine.Published
	overflow bool
	lastSent int64
	wake     chan struct{}
	quit     chan struct{}
	stopOnce sync.Once
}

func newSubscriber(id string, ss *session, types []string) *subscriber {
	sub := &subscriber{id: id, ss: ss, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	if len(types) > 0 {
		sub.types = map[string]bool{}
		for _, t := range types {
			sub.types[t] = true
		}
	}
	return sub
}

func (sub *subscriber) wants(typ string) bool { return sub.types == nil || sub.types[typ] }

// offer queues the matching changes; called with the server's lock held.
// active says which types are active now.
func (sub *subscriber) offer(pubs []engine.Published, active map[string]bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.overflow {
		return
	}
	n := 0
	for i := range pubs {
		if sub.wants(pubs[i].Type) && active[pubs[i].Type] {
			n++
		}
	}
	if n == 0 {
		return
	}
	if len(sub.q)+n > sub.ss.s.o.QueueLimit {
		sub.overflow = true
		sub.q = nil
	} else {
		for i := range pubs {
			if sub.wants(pubs[i].Type) && active[pubs[i].Type] {
				sub.q = append(sub.q, pubs[i])
			}
		}
	}
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber) queued() int {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return len(sub.q)
}

func (sub *subscriber) stop() { sub.stopOnce.Do(func() { close(sub.quit) }) }

var errStopReplay = errors.New("replay reached the join point")

// run replays the log after since up to joinSeq (when since >= 0), then
// streams live changes until the subscription ends.
func (sub *subscriber) run(ctx context.Context, since, joinSeq int64) {
	s := sub.ss.s
	if since >= 0 && since < joinSeq {
		if err := sub.replay(ctx, since, joinSeq); err != nil {
			if errors.Is(err, ErrResyncNeeded) {
				sub.ss.s.resyncs.replay.Add(1)
				sub.resync("the change log was pruned during replay")
			} else {
				s.log.Warn("subscriber replay failed", "subscription", sub.id, "err", err)
			}
			sub.ss.conn.Close()
			return
		}
	}
	batch := make([][]byte, 0, s.o.NotifyBatch)
	for {
		select {
		case <-sub.quit:
			return
		case <-sub.wake:
		}
		sub.mu.Lock()
		q, overflow := sub.q, sub.overflow
		sub.q = nil
		sub.mu.Unlock()
		if overflow {
			s.log.Warn("subscriber too slow: sending resync and disconnecting", "subscription", sub.id, "queue_limit", s.o.QueueLimit)
			s.resyncs.overflow.Add(1)
			sub.resync("subscriber queue overflowed")
			sub.ss.conn.Close()
			return
		}
		for len(q) > 0 {
			n := min(len(q), s.o.NotifyBatch)
			batch = batch[:0]
			for _, p := range q[:n] {
				batch = append(batch, p.JSON)
			}
			if err := sub.send(batch); err != nil {
				sub.ss.conn.Close()
				return
			}
			sub.lastSent = q[n-1].Seq
			q = q[n:]
		}
	}
}

// replayBatch is a run of changes read from the log, already joined with
// commas.
type replayBatch struct {
	joined []byte
	last   int64
}

// replay streams the log (since, joinSeq] to the subscriber. Reading the
// database and writing the socket overlap: one goroutine fills batches
// while this one sends them.
func (sub *subscriber) replay(ctx context.Context, since, joinSeq int64) error {
	s := sub.ss.s
	var types []string
	for t := range sub.types {
		types = append(types, t)
	}
	types = s.b.ActiveTypes(types)
	if types != nil && len(types) == 0 {
		return nil // none of its types is active: nothing to replay
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan replayBatch, 4)
	// Two spare buffers circulate between reader and sender.
	spare := make(chan []byte, 6)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		var cur replayBatch
		n := 0
		flush := func() bool {
			if n == 0 {
				return true
			}
			select {
			case batches <- cur:
			case <-rctx.Done():
				return false
			}
			var buf []byte
			select {
			case buf = <-spare:
			default:
				buf = make([]byte, 0, cap(cur.joined))
			}
			cur, n = replayBatch{joined: buf[:0]}, 0
			return true
		}
		_, err := s.b.Changes(rctx, since, types, 0, func(seq int64, change []byte) error {
			if seq > joinSeq {
				return errStopReplay
			}
			if n > 0 {
				cur.joined = append(cur.joined, ',')
			}
			cur.joined = append(cur.joined, change...)
			cur.last = seq
			n++
			if n == s.o.NotifyBatch && !flush() {
				return rctx.Err()
			}
			return nil
		})
		if err == nil || errors.Is(err, errStopReplay) {
			err = nil
			flush()
		}
		readErr <- err
	}()
	for b := range batches {
		if err := sub.sendJoined(b.joined); err != nil {
			return err
		}
		sub.lastSent = b.last
		select {
		case spare <- b.joined:
		default:
		}
	}
	return <-readErr
}

// sendJoined writes one change notification of changes already joined
// with commas.
func (sub *subscriber) sendJoined(joined []byte) error {
	return sub.ss.stream.writeWith(func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","method":"change","params":{"subscription":"`)
		w.WriteString(sub.id)
		w.WriteString(`","changes":[`)
		w.Write(joined)
		_, err := w.WriteString("]}}\n")
		return err
	})
}

// send writes one change notification: the changes are already JSON, so the
// notification is assembled from bytes instead of re-encoded.
func (sub *subscriber) send(changes [][]byte) error {
	return sub.ss.stream.writeWith(func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","method":"change","params":{"subscription":"`)
		w.WriteString(sub.id)
		w.WriteString(`","changes":[`)
		for i, c := range changes {
			if i > 0 {
				w.WriteByte(',')
			}
			w.Write(c)
		}
		_, err := w.WriteString("]}}\n")
		return err
	})
}

func (sub *subscriber) resync(reason string) {
	sub.ss.stream.writeLines(notification("resync", map[string]any{
		"subscription": sub.id,
		"seq":          sub.lastSent,
		"reason":       reason + ": register again with since=" + strconv.FormatInt(sub.lastSent, 10) + " or call get_all",
	}))
}
