package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/openstack-synchronizer/synchronizer/engine"
)

// itemOverhead is what one queued change costs beside its JSON (the item,
// counted once however many subscribers hold it), entryCost what each
// subscriber's queue adds (its pointer, and the slack of a growing slice).
// With hundreds of subscribers the entries outweigh the changes.
const (
	itemOverhead = 96
	entryCost    = 16
)

// item is one published change as queued for subscribers. The subscribers
// that take it share it: its bytes count once in the server's total while
// any of them holds it.
type item struct {
	p    engine.Published
	size int64
	refs atomic.Int32
}

func (s *Server) hold(it *item) {
	if it.refs.Add(1) == 1 {
		s.queuedBytes.Add(it.size)
	}
}

func (s *Server) release(it *item) {
	if it.refs.Add(-1) == 0 {
		s.queuedBytes.Add(-it.size)
		// The items of one commit share an array: the last holder lets
		// the JSON go, whoever still holds a neighbour.
		it.p.JSON = nil
	}
}

// subscriber is one registration: a bounded queue of changes and a
// goroutine that writes them as batched notifications. A subscriber whose
// queue overflows, or that has the most queued when all subscribers
// together pass subscriber_memory, gets a final resync notification and
// its connection is closed.
type subscriber struct {
	id    string
	ss    *session
	types map[string]bool // nil: every type

	mu       sync.Mutex
	q        []*item // waiting
	qBytes   int64   // bytes of q
	inflight int64   // bytes of the batch being sent
	overflow string  // why it was cut off; "" while it is not
	closed   bool
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
func (sub *subscriber) offer(items []item, active map[string]bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.overflow != "" || sub.closed {
		return
	}
	n := 0
	for i := range items {
		if sub.wants(items[i].p.Type) && active[items[i].p.Type] {
			n++
		}
	}
	if n == 0 {
		return
	}
	if len(sub.q)+n > sub.ss.s.o.QueueLimit {
		sub.cutLocked(fmt.Sprintf("more than subscriber_queue (%d) changes waited for this subscriber", sub.ss.s.o.QueueLimit))
		return
	}
	s := sub.ss.s
	for i := range items {
		if it := &items[i]; sub.wants(it.p.Type) && active[it.p.Type] {
			s.hold(it)
			sub.q = append(sub.q, it)
			sub.qBytes += it.size + entryCost
		}
	}
	s.queuedBytes.Add(entryCost * int64(n))
	sub.signal()
}

func (sub *subscriber) signal() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// cuttable returns the bytes queued for a subscriber that can still be
// cut off, or 0.
func (sub *subscriber) cuttable() int64 {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.overflow != "" || sub.closed {
		return 0
	}
	return sub.qBytes + sub.inflight
}

// cut frees the subscriber's queue; its goroutine sends resync once the
// batch in flight is written, and closes the connection.
func (sub *subscriber) cut(reason string) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.overflow == "" && !sub.closed {
		sub.cutLocked(reason)
	}
}

func (sub *subscriber) cutLocked(reason string) {
	sub.overflow = reason
	sub.dropLocked()
	sub.signal()
}

func (sub *subscriber) dropLocked() {
	s := sub.ss.s
	for _, it := range sub.q {
		s.release(it)
	}
	s.queuedBytes.Add(-entryCost * int64(len(sub.q)))
	sub.q, sub.qBytes = nil, 0
}

func (sub *subscriber) queued() int {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return len(sub.q)
}

func (sub *subscriber) stop() {
	sub.stopOnce.Do(func() {
		sub.mu.Lock()
		sub.closed = true
		sub.dropLocked()
		sub.mu.Unlock()
		close(sub.quit)
	})
}

// run replays the log after since up to joinSeq (when since >= 0), then
// streams live changes until the subscription ends.
func (sub *subscriber) run(ctx context.Context, since, joinSeq int64) {
	s := sub.ss.s
	defer sub.stop()
	if since >= 0 && since < joinSeq {
		if err := sub.replay(ctx, since, joinSeq); err != nil {
			if errors.Is(err, ErrResyncNeeded) {
				sub.ss.s.resyncs.replay.Add(1)
				sub.resync("the change log was pruned during replay")
			} else {
				s.log.Warn("subscriber replay failed", "subscription", sub.id, "err", err)
			}
			sub.ss.close()
			return
		}
	}
	batch := make([]*item, 0, s.o.NotifyBatch)
	for {
		select {
		case <-sub.quit:
			return
		case <-sub.wake:
		}
		for {
			sub.mu.Lock()
			if sub.closed {
				sub.mu.Unlock()
				return
			}
			if reason := sub.overflow; reason != "" {
				sub.mu.Unlock()
				s.log.Warn("subscriber too slow: sending resync and disconnecting", "subscription", sub.id, "reason", reason)
				s.resyncs.overflow.Add(1)
				sub.resync(reason)
				sub.ss.close()
				return
			}
			n := min(len(sub.q), s.o.NotifyBatch)
			if n == 0 {
				sub.mu.Unlock()
				break
			}
			batch = append(batch[:0], sub.q[:n]...)
			clear(sub.q[:n])
			if sub.q = sub.q[n:]; len(sub.q) == 0 {
				sub.q = nil
			}
			var bytes int64
			for _, it := range batch {
				bytes += it.size + entryCost
			}
			sub.qBytes -= bytes
			sub.inflight = bytes
			sub.mu.Unlock()
			err := sub.send(batch)
			last := batch[n-1].p.Seq
			sub.mu.Lock()
			sub.inflight = 0
			sub.mu.Unlock()
			for i, it := range batch {
				s.release(it)
				batch[i] = nil
			}
			s.queuedBytes.Add(-entryCost * int64(n))
			if err != nil {
				sub.ss.close()
				return
			}
			sub.lastSent = last
		}
	}
}

// page is a run of changes read from the log, already joined with commas.
type page struct {
	joined []byte
	last   int64
}

// pageBytes is about the most bytes of changes one page holds.
const pageBytes = 1 << 20

var errPageFull = errors.New("page full")

// readPage reads, in one short read of the log, the changes after since
// and through until of the given types, at most limit of them and about
// pageBytes, joined with commas into buf. A slow client then holds no
// read transaction while it reads.
func (s *Server) readPage(ctx context.Context, since, until int64, types []string, limit int, buf []byte) ([]byte, int, int64, error) {
	n := 0
	var last int64
	_, err := s.b.Changes(ctx, since, types, limit, func(seq int64, c []byte) error {
		if seq > until {
			return errPageFull
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, c...)
		n++
		last = seq
		if len(buf) >= pageBytes {
			return errPageFull
		}
		return nil
	})
	if errors.Is(err, errPageFull) {
		err = nil
	}
	return buf, n, last, err
}

// replay streams the log (since, joinSeq] to the subscriber, a page at a
// time. Reading the next page and writing the socket overlap.
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
	pages := make(chan page, 2)
	spare := make(chan []byte, 3)
	readErr := make(chan error, 1)
	go func() {
		defer close(pages)
		cursor := since
		for cursor < joinSeq {
			var buf []byte
			select {
			case buf = <-spare:
			default:
			}
			joined, n, last, err := s.readPage(rctx, cursor, joinSeq, types, s.o.NotifyBatch, buf[:0])
			if err != nil {
				readErr <- err
				return
			}
			if n == 0 {
				break
			}
			select {
			case pages <- page{joined, last}:
			case <-rctx.Done():
				readErr <- rctx.Err()
				return
			}
			cursor = last
		}
		readErr <- nil
	}()
	for pg := range pages {
		if err := sub.sendJoined(pg.joined); err != nil {
			return err
		}
		sub.lastSent = pg.last
		select {
		case spare <- pg.joined:
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
func (sub *subscriber) send(changes []*item) error {
	return sub.ss.stream.writeWith(func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","method":"change","params":{"subscription":"`)
		w.WriteString(sub.id)
		w.WriteString(`","changes":[`)
		for i, c := range changes {
			if i > 0 {
				w.WriteByte(',')
			}
			w.Write(c.p.JSON)
		}
		_, err := w.WriteString("]}}\n")
		return err
	})
}

func (sub *subscriber) resync(reason string) {
	sub.ss.stream.writeFinal(notification("resync", map[string]any{
		"subscription": sub.id,
		"seq":          sub.lastSent,
		"reason":       reason + ": register again with since=" + strconv.FormatInt(sub.lastSent, 10) + " or call get_all",
	}))
}
