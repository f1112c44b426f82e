package publishers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message is one message of a change stream as a reader sees it.
type Message struct {
	Offset      int64  // the stream offset (not a seq)
	Seq         int64  // for a resync marker: the last seq lost
	DatabaseID  string // the sidecar database the seq belongs to
	Type        string // the entity type of a change
	Resync      bool   // a marker: LostFrom..LostThrough were never published
	LostFrom    int64
	LostThrough int64
	Body        []byte // the change object (a marker's own JSON)
	// Kind is the message's AMQP type: change, resync, or one of a
	// snapshot's snapshot-begin, snapshot (a part: a JSON array of
	// entities) and snapshot-end (publishers/snapshot.go). ReadStream
	// also delivers a "gap" (with Resync set): the stream no longer holds
	// the changes LostFrom..LostThrough after Since.
	Kind string
	// Generation is the last snapshot begun before this message (-1: a
	// message of a publisher that wrote no generation).
	Generation int64
	// Of a snapshot-end: the seq the snapshot is the state at, its parts
	// and entities. Of a part: Part is its number.
	SnapshotSeq, Part, Parts, Entities int64
}

// IsSnapshot says whether m belongs to a snapshot (begin, part or end).
func (m Message) IsSnapshot() bool {
	return m.Kind == "snapshot-begin" || m.Kind == "snapshot" || m.Kind == "snapshot-end"
}

// ReadOptions configure ReadStream.
type ReadOptions struct {
	URL    string
	VHost  string
	Stream string
	// Since: read the changes with seq > Since (< 0: from the stream's
	// first message).
	Since int64
	// Prefetch is the consumer's credit (default 1000).
	Prefetch int
	// Snapshots: deliver the snapshot messages too (they never count in
	// the deduplication by seq). Without it they are skipped.
	Snapshots bool
}

// ErrStreamEnd is what a probe gets on an offset past the last message.
var errNoMessage = errors.New("no message at or after the offset")

func parseDelivery(d amqp.Delivery) (Message, error) {
	m := Message{Body: d.Body, Kind: d.Type, Generation: -1}
	if m.Kind == "" {
		m.Kind = "change"
	}
	var err error
	if m.Offset, err = headerInt(d.Headers, "x-stream-offset"); err != nil {
		return m, err
	}
	if m.Seq, err = headerInt(d.Headers, "seq"); err != nil {
		return m, err
	}
	m.DatabaseID, _ = d.Headers["database_id"].(string)
	m.Type, _ = d.Headers["type"].(string)
	if r, _ := d.Headers["resync"].(bool); r {
		m.Resync = true
		m.LostFrom, _ = headerInt(d.Headers, "lost_from")
		m.LostThrough, _ = headerInt(d.Headers, "lost_through")
	}
	if g, err := headerInt(d.Headers, "generation"); err == nil {
		m.Generation = g
	}
	m.SnapshotSeq, _ = headerInt(d.Headers, "snapshot_seq")
	m.Part, _ = headerInt(d.Headers, "part")
	m.Parts, _ = headerInt(d.Headers, "parts")
	if m.IsSnapshot() {
		m.Entities, _ = headerInt(d.Headers, "entities")
	}
	return m, nil
}

func headerInt(h amqp.Table, k string) (int64, error) {
	switch v := h[k].(type) {
	case int64:
		return v, nil
	case int32:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case uint8:
		return int64(v), nil
	case string:
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("stream message without a %s header", k)
}

// consume opens a stream consumer at offset ("first", "last", "next" or an
// int64 offset) on a channel of its own.
func consume(conn *amqp.Connection, stream string, offset any, prefetch int) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		ch.Close()
		return nil, nil, fmt.Errorf("qos: %w", err)
	}
	ds, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": offset})
	if err != nil {
		ch.Close()
		return nil, nil, fmt.Errorf("consume stream %s: %w", stream, err)
	}
	return ch, ds, nil
}

// probe returns the first message at or after offset.
func probe(ctx context.Context, conn *amqp.Connection, stream string, offset any) (Message, error) {
	ch, ds, err := consume(conn, stream, offset, 1)
	if err != nil {
		return Message{}, err
	}
	defer ch.Close()
	select {
	case d, ok := <-ds:
		if !ok {
			return Message{}, fmt.Errorf("stream %s: consumer closed", stream)
		}
		return parseDelivery(d)
	case <-time.After(2 * time.Second):
		return Message{}, errNoMessage
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// startOffset finds an offset whose message has a seq <= since, as late as
// a binary search over offsets finds it ("first" when none): reading from
// there and skipping seq <= since gives every change after since. Seqs
// grow along the stream except for the resent tails after a publisher's
// reconnect, which only repeat seqs: a probe's seq <= since still means
// every later seq is further on.
//
// gap, when not nil, is a marker for the changes after since that the
// stream no longer holds: its first message is a change past since+1, or a
// snapshot message whose seq (the last change published before it) is past
// since (retention dropped them, or the stream was made again).
func startOffset(ctx context.Context, conn *amqp.Connection, stream string, since int64) (_ any, gap *Message, _ error) {
	if since < 0 {
		return "first", nil, nil
	}
	first, err := probe(ctx, conn, stream, "first")
	if errors.Is(err, errNoMessage) {
		return "first", nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if first.Seq > since {
		through := first.Seq - 1
		if first.IsSnapshot() {
			through = first.Seq
		}
		if through > since && !first.Resync {
			gap = &Message{Kind: "gap", Resync: true, Seq: through, DatabaseID: first.DatabaseID,
				LostFrom: since + 1, LostThrough: through, Generation: first.Generation, Offset: first.Offset}
		}
		return "first", gap, nil
	}
	lo := first.Offset
	last, err := probe(ctx, conn, stream, "last")
	if err != nil {
		return nil, nil, err
	}
	if last.Seq <= since {
		return last.Offset, nil, nil
	}
	hi := last.Offset // seq > since
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		m, err := probe(ctx, conn, stream, mid)
		if err != nil {
			return nil, nil, err
		}
		if m.Seq <= since && m.Offset < hi {
			lo = m.Offset
		} else {
			hi = mid
		}
	}
	return lo, nil, nil
}

// ReadStream reads a change stream from the message that holds o.Since on,
// calling fn for each change with a seq above the last one delivered of its
// database (at-least-once publishing, deduplicated here) and for each resync
// marker. A message of another database id than the last starts the
// deduplication over: seqs belong to one database. It returns when ctx ends
// (nil), fn fails, or the connection does.
func ReadStream(ctx context.Context, o ReadOptions, fn func(Message) error) error {
	if o.Prefetch <= 0 {
		o.Prefetch = 1000
	}
	conn, err := amqp.DialConfig(o.URL, amqp.Config{Vhost: o.VHost, Heartbeat: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("stream: connect: %w", err)
	}
	defer conn.Close()
	start, gap, err := startOffset(ctx, conn, o.Stream, o.Since)
	if err != nil {
		return fmt.Errorf("stream %s: find seq %d: %w", o.Stream, o.Since, err)
	}
	if gap != nil {
		if err := fn(*gap); err != nil {
			return err
		}
	}
	ch, ds, err := consume(conn, o.Stream, start, o.Prefetch)
	if err != nil {
		return err
	}
	defer ch.Close()
	last, id := o.Since, ""
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-ds:
			if !ok {
				return fmt.Errorf("stream %s: consumer closed: %v", o.Stream, conn.IsClosed())
			}
			// Streams keep messages whatever is acknowledged; acks only
			// return credit.
			if n++; n%(o.Prefetch/2+1) == 0 {
				if err := d.Ack(true); err != nil {
					return fmt.Errorf("stream %s: ack: %w", o.Stream, err)
				}
			}
			m, err := parseDelivery(d)
			if err != nil {
				return fmt.Errorf("stream %s: offset %v: %w", o.Stream, d.Headers["x-stream-offset"], err)
			}
			if m.IsSnapshot() {
				// A copy of the state between two changes: no seq of
				// its own, so it never moves the deduplication.
				if o.Snapshots {
					if err := fn(m); err != nil {
						return err
					}
				}
				continue
			}
			if id != "" && m.DatabaseID != id {
				last = -1
			}
			id = m.DatabaseID
			if m.Seq <= last {
				continue
			}
			last = m.Seq
			if err := fn(m); err != nil {
				return err
			}
		}
	}
}
