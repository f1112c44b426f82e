package publishers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Snapshots in the stream. A stream's retention drops its oldest changes, so
// a consumer that starts from nothing (a vitrage-graph on another host)
// cannot rebuild the state from the changes alone. The publisher therefore
// writes the whole state into the stream now and then, between two
// changes:
//
//	snapshot-begin (generation G)
//	snapshot       (part 1: a JSON array of entities) ... part N
//	snapshot-end   (generation G, snapshot_seq S, parts N, entities E)
//
// The parts are the entities as of change S, read in one transaction. A
// consumer takes them as its state and then applies the changes with
// seq > S that follow (those between the previous change message and S come
// after the snapshot and are skipped). Every message carries the header
// generation, the last G begun before it: it never decreases along the
// stream, so a reader binary-searches the offsets for the newest begin.
// A snapshot cut short (a lost connection) is followed by a new begin; a
// reader that sees a begin drops what it collected.

// SnapshotMark is the last snapshot whose end the broker confirmed, as
// kept in meta (publisher.<name>.snapshot) and shown in status.
type SnapshotMark struct {
	Generation int64     `json:"generation"`
	Seq        int64     `json:"seq"`
	Entities   int64     `json:"entities"`
	Parts      int64     `json:"parts"`
	Stream     string    `json:"stream"`
	At         time.Time `json:"at"`
}

// snapshotDue says whether a session must begin with a snapshot: none
// was ever completed into this stream, the stream lost it (it was deleted
// and declared again: it holds no message of that generation), or the last
// is older than snapshot_interval. It also moves the generation past any
// the stream holds, so that generations never decrease along it (a
// database restored with an older meta).
func (p *amqpStream) snapshotDue(ctx context.Context, conn *amqp.Connection) bool {
	if p.cfg.SnapshotInterval == 0 {
		return false
	}
	streamGen := int64(-1)
	m, err := probe(ctx, conn, p.cfg.Stream, "last")
	switch {
	case err == nil:
		streamGen = m.Generation
	case !errors.Is(err, errNoMessage):
		p.log.Warn("cannot read the stream's last generation; writing a snapshot", "err", err)
	}
	p.gen = max(p.gen, streamGen)
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	// The last chunk may begin just before the last snapshot's begin.
	return p.snap.Generation == 0 || p.snap.Stream != p.cfg.Stream || streamGen < 0 ||
		streamGen < p.snap.Generation-1 || time.Since(p.snap.At) >= p.cfg.SnapshotInterval.D()
}

// writeSnapshot publishes a snapshot of every entity after the change sent
// (the last one handed to the stream). It holds one read transaction of the
// store while it publishes.
func (p *amqpStream) writeSnapshot(ctx context.Context, ch *amqp.Channel, link confirmLink, id string, sent int64) error {
	t0 := time.Now()
	p.gen++
	gen := p.gen
	send := func(m amqp.Publishing, done func()) error {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", p.cfg.Stream, true, false, m)
		if err != nil {
			return fmt.Errorf("publish snapshot %d: %w", gen, err)
		}
		return link.enqueue(ctx, inflight{seq: sent, dc: dc, done: done, snapshot: true})
	}
	headers := func(extra amqp.Table) amqp.Table {
		h := amqp.Table{"seq": sent, "database_id": id, "generation": gen}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	msg := func(typ string, h amqp.Table, body []byte) amqp.Publishing {
		return amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent,
			MessageId: fmt.Sprintf("%s:%d", typ, gen), Timestamp: time.Now(), Type: typ, Headers: h, Body: body}
	}
	if err := send(msg("snapshot-begin", headers(nil),
		fmt.Appendf(nil, `{"snapshot_begin":%d,"database_id":%q}`, gen, id)), nil); err != nil {
		return err
	}
	var (
		buf            = make([]byte, 0, p.cfg.SnapshotPart+4096)
		parts, n, inPt int64
	)
	flush := func() error {
		if inPt == 0 {
			return nil
		}
		parts++
		buf = append(buf, ']')
		m := msg("snapshot", headers(amqp.Table{"part": parts, "entities": inPt}), buf)
		m.MessageId += ":" + strconv.FormatInt(parts, 10)
		err := send(m, nil)
		buf, inPt = make([]byte, 0, p.cfg.SnapshotPart+4096), 0
		return err
	}
	seq, err := p.st.All(ctx, nil, func(e []byte) error {
		if inPt > 0 && len(buf)+len(e) > p.cfg.SnapshotPart {
			if err := flush(); err != nil {
				return err
			}
		}
		if inPt == 0 {
			buf = append(buf, '[')
		} else {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
		inPt++
		n++
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("snapshot %d: %w", gen, err)
	}
	mark := SnapshotMark{Generation: gen, Seq: seq, Entities: n, Parts: parts, Stream: p.cfg.Stream, At: t0}
	p.written = mark
	body, _ := json.Marshal(struct {
		End        int64  `json:"snapshot_end"`
		Seq        int64  `json:"seq"`
		Parts      int64  `json:"parts"`
		Entities   int64  `json:"entities"`
		DatabaseID string `json:"database_id"`
	}{gen, seq, parts, n, id})
	return send(msg("snapshot-end", headers(amqp.Table{"snapshot_seq": seq, "parts": parts, "entities": n}), body), func() {
		p.snapMu.Lock()
		p.snap = mark
		p.snapMu.Unlock()
		p.snapshots.Add(1)
		v, _ := json.Marshal(mark)
		if err := p.st.SetMeta(context.Background(), p.snapKey, string(v)); err != nil {
			p.log.Warn("cannot save the snapshot mark; the next start writes another snapshot", "err", err)
		}
		p.log.Info("snapshot written to the stream", "generation", gen, "seq", seq, "entities", n, "parts", parts,
			"took", time.Since(t0).Round(time.Millisecond))
	})
}
