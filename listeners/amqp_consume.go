package listeners

import (
	"bytes"
	"compress/bzip2"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/oslo"
)

// session connects to URL i, declares, consumes until the connection or ctx
// ends and reports whether it got as far as consuming. *gap is why
// notifications may have been missed before this session consumes ("" when
// none may have been): the catch-up is asked for once consuming started. A
// queue found missing sets it, so that a session that created the queue but
// failed before consuming leaves the gap to the next one.
func (l *amqpListener) session(ctx context.Context, sink Sink, i int, gap *string) (bool, error) {
	conn, err := l.cfg.Dial(ctx, l.urls[i], l.tls, "synchronizer "+l.cfg.Name)
	if err != nil {
		return false, fmt.Errorf("amqp: connect %s: %w", l.hosts[i], err)
	}
	defer conn.Close()
	ch, created, err := l.declare(conn)
	if err != nil {
		return false, err
	}
	if created {
		*gap = "queue_created"
	}
	if err := ch.Qos(l.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("amqp: qos: %w", err)
	}
	tag := fmt.Sprintf("synchronizer-%s-%d", l.cfg.Name, os.Getpid())
	deliveries, err := ch.Consume(l.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("amqp: consume %s: %w", l.cfg.Queue, err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	l.log.Info("amqp listener connected", "broker", l.hosts[i], "queue", l.cfg.Queue, "queue_created", created)
	if *gap != "" {
		l.catchUp(sink, *gap)
	}
	l.setState("connected", l.hosts[i], nil)
	l.setDown("")
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	monitored := make(chan struct{})
	go func() { defer close(monitored); l.monitor(mctx, conn, sink) }()
	defer func() { stop(); <-monitored }()
	return true, l.consume(ctx, sink, ch, deliveries, closed)
}

// catchUp records a possible gap and asks the sink (when it can) to have
// the owning collectors poll.
func (l *amqpListener) catchUp(sink Sink, reason string) {
	l.st.mu.Lock()
	l.st.gaps++
	l.st.lastGap, l.st.lastGapAt = reason, time.Now().UTC()
	l.st.mu.Unlock()
	cu, ok := sink.(CatchUpper)
	l.log.Info("amqp: notifications may have been missed: catching up by polling", "reason", reason, "queue", l.cfg.Queue, "can_poll", ok)
	if ok {
		cu.CatchUp(Gap{Reason: reason, Owner: l.owner, Types: l.mapper.Types()})
	}
}

// monitor looks at our queue once consuming started and then every
// consumer_check: other consumers on it take notifications away from us
// (warned once per change, shown in status), and a queue at its
// max-length bound has dropped notifications (caught up by polling).
func (l *amqpListener) monitor(ctx context.Context, conn *amqp.Connection, sink Sink) {
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	full := false
	t := time.NewTicker(l.cfg.ConsumerCheck.D())
	defer t.Stop()
	for {
		// A passive declare that fails closes the channel: the queue went
		// away, and consuming ends with it; the next session sees why.
		q, err := ch.QueueDeclarePassive(l.cfg.Queue, l.cfg.QueueDurable, false, false, false, nil)
		if err != nil {
			if ctx.Err() == nil && !conn.IsClosed() {
				l.limit.log(l.log, "monitor", slog.LevelWarn, "amqp: cannot inspect our queue", "queue", l.cfg.Queue, "err", err)
			}
			return
		}
		l.observeQueue(q.Consumers, q.Messages)
		if max := l.cfg.QueueMaxLength; max > 0 {
			if q.Messages >= max && !full {
				l.catchUp(sink, "queue_full")
			}
			full = q.Messages >= max
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observeQueue records the queue's consumers (ours included) and ready
// messages, and logs when the number of other consumers changes.
func (l *amqpListener) observeQueue(consumers, messages int) {
	others := max(consumers-1, 0)
	l.st.mu.Lock()
	prev, seen := l.st.otherConsumers, l.st.checkedAt
	l.st.consumers, l.st.otherConsumers, l.st.queueDepth, l.st.checkedAt = consumers, others, messages, time.Now().UTC()
	l.st.mu.Unlock()
	if others == prev && !seen.IsZero() {
		return
	}
	if others > 0 {
		l.log.Warn("amqp: our queue has other consumers: each of them takes notifications away from this sidecar",
			"queue", l.cfg.Queue, "other_consumers", others,
			"fix", "give every sidecar a queue of its own (leave queue unset: the default name is per host and database)")
	} else if !seen.IsZero() {
		l.log.Info("amqp: our queue has no other consumer any more", "queue", l.cfg.Queue)
	}
}

// declare declares the exchanges as oslo.messaging does (topic, durable and
// auto_delete as the deployment's), our own queue, and its bindings
// <topic>.<priority> on every exchange. A refusal is fatal (errFatal).
// created says our queue did not exist: whatever was published before is
// not in it. It returns the channel to consume on (a passive declare of a
// missing queue closes the first one).
func (l *amqpListener) declare(conn *amqp.Connection) (ch *amqp.Channel, created bool, err error) {
	c := &l.cfg
	if ch, err = conn.Channel(); err != nil {
		return nil, false, fmt.Errorf("amqp: open channel: %w", err)
	}
	if c.DeadLetterExchange != "" {
		if err := ch.ExchangeDeclarePassive(c.DeadLetterExchange, "fanout", true, false, false, false, nil); err != nil {
			return nil, false, declareErr(fmt.Sprintf("dead_letter_exchange %q (declare it, and a queue bound to it, before starting)", c.DeadLetterExchange), "durable", c.Durable, err)
		}
	}
	for _, ex := range c.Exchanges {
		if err := ch.ExchangeDeclare(ex, "topic", c.Durable, c.AutoDelete, false, false, nil); err != nil {
			return nil, false, declareErr(fmt.Sprintf("exchange %q", ex), "durable", c.Durable, err)
		}
	}
	if _, err := ch.QueueDeclarePassive(c.Queue, c.QueueDurable, false, false, false, nil); err != nil {
		var ae *amqp.Error
		if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
			return nil, false, declareErr(fmt.Sprintf("queue %q", c.Queue), "queue_durable", c.QueueDurable, err)
		}
		created = true
		if ch, err = conn.Channel(); err != nil {
			return nil, false, fmt.Errorf("amqp: open channel: %w", err)
		}
	}
	args := amqp.Table{}
	if c.DeadLetterExchange != "" {
		args["x-dead-letter-exchange"] = c.DeadLetterExchange
	}
	if c.QueueExpires > 0 {
		args["x-expires"] = c.QueueExpires.D().Milliseconds()
	}
	if c.QueueMaxLength > 0 {
		args["x-max-length"] = int64(c.QueueMaxLength)
	}
	if _, err := ch.QueueDeclare(c.Queue, c.QueueDurable, false, false, false, args); err != nil {
		return nil, false, declareErr(fmt.Sprintf("queue %q", c.Queue), "queue_durable", c.QueueDurable, err)
	}
	for _, ex := range c.Exchanges {
		for _, topic := range c.Topics {
			for _, prio := range c.Priorities {
				key := topic + "." + prio
				if err := ch.QueueBind(c.Queue, key, ex, false, nil); err != nil {
					return nil, false, declareErr(fmt.Sprintf("binding %s to exchange %q", key, ex), "durable", c.Durable, err)
				}
			}
		}
	}
	return ch, created, nil
}

// declareErr explains a broker refusal; 403/404/406 are fatal. key and
// durable name the setting the object's durability comes from.
func declareErr(what, key string, durable bool, err error) error {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return fmt.Errorf("amqp: declare %s: %w", what, err)
	}
	switch ae.Code {
	case amqp.PreconditionFailed:
		if key == "queue_durable" {
			return fmt.Errorf("amqp: declare %s: it exists with other settings (queue_durable now %t, queue_expires, "+
				"queue_max_length, dead_letter_exchange): set them as the queue has them, or delete the old queue "+
				"(rabbitmqctl delete_queue) and let the listener declare it again: %s: %w", what, durable, ae.Reason, errFatal)
		}
		return fmt.Errorf("amqp: declare %s: it exists with other settings: set durable (now %t) to the deployment's "+
			"amqp_durable_queues, auto_delete to amqp_auto_delete, or delete the old one: %s: %w", what, durable, ae.Reason, errFatal)
	case amqp.NotFound, amqp.AccessRefused:
		return fmt.Errorf("amqp: declare %s: %s: %w", what, ae.Reason, errFatal)
	}
	return fmt.Errorf("amqp: declare %s: %w", what, err)
}

// consume reads deliveries in batches: the first one, then what is already
// buffered, then whatever arrives within batch_wait, up to batch_size. A
// batch is decoded while the one before it is being applied (the commit,
// not the decoding, is the longer part), so at most two batches are
// unacknowledged; they are applied and acknowledged in order.
func (l *amqpListener) consume(ctx context.Context, sink Sink, ch *amqp.Channel, deliveries <-chan amqp.Delivery, closed <-chan *amqp.Error) error {
	applyRetry := backoff.New(l.cfg.MinBackoff.D(), l.cfg.MaxBackoff.D())
	var fl *flight
	defer func() {
		if fl != nil {
			<-fl.done
		}
	}()
	// land settles the batch in flight; after a failed apply it sends
	// next (when there is one) back to the queue behind it and backs off.
	land := func(next *prepared) (bool, error) {
		failed, err := l.land(ctx, ch, fl)
		fl = nil
		if err != nil || ctx.Err() != nil {
			return false, err
		}
		if !failed {
			applyRetry.Reset()
			return true, nil
		}
		if next != nil && next.good > 0 {
			if err := ch.Nack(next.lastTag, true, true); err != nil {
				return false, fmt.Errorf("amqp: nack: %w", err)
			}
		}
		if !backoff.Wait(ctx, applyRetry.Next()) {
			return false, nil
		}
		return false, nil
	}
	batch := make([]amqp.Delivery, 0, l.cfg.BatchSize)
	for {
		batch = batch[:0]
		var landed <-chan struct{}
		if fl != nil {
			landed = fl.done
		}
		select {
		case <-ctx.Done():
			if fl != nil {
				<-fl.done
				_, err := l.land(ctx, ch, fl)
				fl = nil
				return err
			}
			return nil
		case <-landed:
			if _, err := land(nil); err != nil || ctx.Err() != nil {
				return err
			}
			continue
		case d, ok := <-deliveries:
			if !ok {
				return connErr(closed)
			}
			batch = append(batch, d)
		}
		if open := l.fill(ctx, &batch, deliveries); !open {
			// Unacknowledged: the broker redelivers the lot.
			return connErr(closed)
		}
		next, err := l.prepare(ch, batch)
		if err != nil {
			return err
		}
		if fl != nil {
			<-fl.done
			ok, err := land(next)
			if err != nil || ctx.Err() != nil {
				return err
			}
			if !ok {
				continue
			}
		}
		if next.good > 0 {
			fl = l.launch(ctx, sink, next)
		}
	}
}

// fill adds deliveries to batch; false when the delivery channel closed.
func (l *amqpListener) fill(ctx context.Context, batch *[]amqp.Delivery, deliveries <-chan amqp.Delivery) bool {
	var deadline <-chan time.Time
	if l.cfg.BatchWait > 0 {
		t := time.NewTimer(l.cfg.BatchWait.D())
		defer t.Stop()
		deadline = t.C
	}
	yielded := false
	for len(*batch) < l.cfg.BatchSize {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return false
			}
			*batch = append(*batch, d)
			yielded = false
			continue
		default:
		}
		// The library hands buffered deliveries over from a goroutine of
		// its own: let it run once before deciding nothing is waiting.
		if !yielded {
			yielded = true
			runtime.Gosched()
			continue
		}
		if deadline == nil {
			return true
		}
		select {
		case d, ok := <-deliveries:
			if !ok {
				return false
			}
			*batch = append(*batch, d)
		case <-deadline:
			return true
		case <-ctx.Done():
			return true
		}
	}
	return true
}

// prepared is a decoded batch: its events and the deliveries they came
// from (the good ones, up to lastTag; bad ones are settled already).
type prepared struct {
	events  []entity.Event
	lastTag uint64
	good    int64
}

// prepare decodes a batch and settles its bad deliveries at once (ack, or
// nack to the dead-letter exchange). An error means the channel is gone.
func (l *amqpListener) prepare(ch *amqp.Channel, batch []amqp.Delivery) (*prepared, error) {
	p := &prepared{}
	decoded := l.decodeAll(batch)
	for i, d := range batch {
		l.st.mu.Lock()
		l.st.received++
		if d.Redelivered {
			l.st.redelivered++
		}
		l.st.mu.Unlock()
		evs, derr := decoded[i].evs, decoded[i].err
		if derr != nil {
			if err := l.settleBad(ch, d, derr); err != nil {
				return nil, err
			}
			continue
		}
		if len(evs) == 0 {
			l.st.add(&l.st.ignored, 1)
		}
		p.events = append(p.events, evs...)
		p.lastTag = d.DeliveryTag
		p.good++
	}
	return p, nil
}

// flight is a prepared batch being applied.
type flight struct {
	*prepared
	done chan struct{}
	err  error
}

// launch applies a prepared batch in the background.
func (l *amqpListener) launch(ctx context.Context, sink Sink, p *prepared) *flight {
	f := &flight{prepared: p, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		if len(p.events) > 0 {
			f.err = sink.Apply(ctx, p.events)
		}
	}()
	return f
}

// land waits for a flight and settles its deliveries: one multiple ack
// after Apply succeeded, or one multiple nack with requeue when it failed
// (failed = true). An error means the channel is gone.
func (l *amqpListener) land(ctx context.Context, ch *amqp.Channel, f *flight) (failed bool, err error) {
	<-f.done
	if aerr := f.err; aerr != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		l.st.mu.Lock()
		l.st.applyErrors++
		l.st.lastErr = "apply: " + aerr.Error()
		l.st.mu.Unlock()
		l.limit.log(l.log, "apply", slog.LevelError, "amqp: apply failed, messages go back to the queue", "events", len(f.events), "err", aerr)
		if err := ch.Nack(f.lastTag, true, true); err != nil {
			return true, fmt.Errorf("amqp: nack: %w", err)
		}
		return true, nil
	}
	if err := ch.Ack(f.lastTag, true); err != nil {
		return false, fmt.Errorf("amqp: ack: %w", err)
	}
	l.st.mu.Lock()
	l.st.acked += f.good
	l.st.events += int64(len(f.events))
	l.st.batches++
	l.st.lastMessage = time.Now().UTC()
	l.st.mu.Unlock()
	return false, nil
}

type decoded struct {
	evs []entity.Event
	err error
}

// decodeAll decodes a batch, in parallel when it is large: JSON decoding is
// the listener's main cost.
func (l *amqpListener) decodeAll(batch []amqp.Delivery) []decoded {
	out := make([]decoded, len(batch))
	workers := min(runtime.GOMAXPROCS(0), len(batch)/32+1)
	chunk := (len(batch) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < len(batch); lo += chunk {
		hi := min(lo+chunk, len(batch))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				out[i].evs, out[i].err = l.decode(batch[i])
			}
		})
	}
	wg.Wait()
	return out
}

func (l *amqpListener) decode(d amqp.Delivery) ([]entity.Event, error) {
	body, err := decompress(d)
	if err != nil {
		return nil, err
	}
	n, err := oslo.Decode(body)
	if err != nil {
		return nil, err
	}
	return l.mapper.Map(n)
}

// settleBad counts a message that cannot become events and takes it off
// the queue: to the dead-letter exchange when there is one.
func (l *amqpListener) settleBad(ch *amqp.Channel, d amqp.Delivery, derr error) error {
	kind := oslo.Kind(derr)
	if errors.Is(derr, errCompression) {
		kind = "bad_compression"
	}
	l.st.mu.Lock()
	l.st.bad[kind]++
	l.st.mu.Unlock()
	l.limit.log(l.log, "bad:"+kind, slog.LevelWarn, "amqp: bad message", "kind", kind,
		"exchange", d.Exchange, "routing_key", d.RoutingKey, "err", derr)
	if l.cfg.DeadLetterExchange != "" {
		if err := ch.Nack(d.DeliveryTag, false, false); err != nil {
			return fmt.Errorf("amqp: nack: %w", err)
		}
		l.st.add(&l.st.deadLettered, 1)
		return nil
	}
	if err := ch.Ack(d.DeliveryTag, false); err != nil {
		return fmt.Errorf("amqp: ack: %w", err)
	}
	return nil
}

// connErr returns why the connection closed.
func connErr(closed <-chan *amqp.Error) error {
	select {
	case e, ok := <-closed:
		if ok && e != nil {
			return fmt.Errorf("amqp: connection closed: %w", e)
		}
	case <-time.After(100 * time.Millisecond):
	}
	return errors.New("amqp: connection closed")
}

// errCompression: a compressed body that cannot be read.
var errCompression = errors.New("bad compression")

// maxBody bounds a decompressed body.
const maxBody = 64 << 20

// decompress undoes oslo.messaging's kombu_compression: kombu sets the
// "compression" header; its "gzip" is a zlib stream.
func decompress(d amqp.Delivery) ([]byte, error) {
	c, _ := d.Headers["compression"].(string)
	var r io.Reader
	switch c {
	case "":
		return d.Body, nil
	case "application/x-gzip":
		zr, err := zlib.NewReader(bytes.NewReader(d.Body))
		if err != nil {
			return nil, fmt.Errorf("amqp: %s: %v: %w", c, err, errCompression)
		}
		defer zr.Close()
		r = zr
	case "application/x-bz2":
		r = bzip2.NewReader(bytes.NewReader(d.Body))
	default:
		return nil, fmt.Errorf("amqp: compression %q not supported (use gzip or bzip2): %w", c, errCompression)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("amqp: %s: %v: %w", c, err, errCompression)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("amqp: %s: body over %d bytes: %w", c, maxBody, errCompression)
	}
	return b, nil
}
