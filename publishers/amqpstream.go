package publishers

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/listeners"
	"github.com/openstack-synchronizer/synchronizer/store"
)

func init() {
	Register("amqp-stream", newAMQPStream)
}

// streamConfig is the config entry of an amqp-stream publisher
// (publishers/README.md documents every key).
type streamConfig struct {
	Name                 string `yaml:"name"`
	Type                 string `yaml:"type"`
	listeners.AMQPBroker `yaml:",inline"`
	Stream               string          `yaml:"stream"`
	MaxAge               config.Duration `yaml:"max_age"`
	MaxLengthBytes       int64           `yaml:"max_length_bytes"`
	// Window is the most messages awaiting the broker's confirm (at most
	// maxWindow: a return channel of that size is kept per session).
	Window int `yaml:"window"`
	// Page is the most changes read from the log in one read.
	Page int `yaml:"page"`
	// MaxLag is how many changes after the cursor the change log keeps
	// beyond its own retention while the publisher lags; past it,
	// retention prunes anyway and the stream gets a resync marker.
	MaxLag int64 `yaml:"max_lag"`
	// SnapshotInterval is how often the whole state (every entity) is
	// written into the stream, so that a consumer that starts after
	// retention dropped the first changes still gets the complete view
	// (0: never; then only a stream that holds the log from seq 1 is
	// complete).
	SnapshotInterval config.Duration `yaml:"snapshot_interval"`
	// SnapshotPart bounds one snapshot message (bytes of entity JSON).
	SnapshotPart int `yaml:"snapshot_part_bytes"`
}

// unsetInterval marks snapshot_interval as not configured.
const unsetInterval = config.Duration(-1)

type amqpStream struct {
	cfg   streamConfig
	urls  []string // credentials inside: never logged
	hosts []string
	tls   *tls.Config
	st    *store.Store
	log   *slog.Logger
	key   string // meta key of the cursor

	cursor    atomic.Int64 // confirmed through this seq
	saved     atomic.Int64 // cursor as last written to meta
	last      atomic.Int64 // highest committed seq known
	published atomic.Int64
	resyncs   atomic.Int64
	connected atomic.Bool
	wake      chan struct{}

	// Snapshots: gen is the generation of the last snapshot begun (every
	// message carries it, so readers binary-search the newest one);
	// snap is the last complete one, as saved in meta.
	gen     int64
	snapKey string
	snapMu  sync.Mutex
	snap    SnapshotMark
	snapDue bool
	// written is the last snapshot this session wrote, confirmed or not
	// (snap moves only on the broker's confirm): the periodic check goes
	// by it, so that a snapshot awaiting its confirm is not written twice.
	written   SnapshotMark
	snapshots atomic.Int64

	mu      sync.Mutex
	state   string
	host    string
	lastErr string
}

// maxWindow bounds window.
const maxWindow = 100_000

func newAMQPStream(s Settings) (Publisher, error) {
	c := streamConfig{
		AMQPBroker:     listeners.DefaultAMQPBroker(),
		Stream:         "synchronizer.changes",
		MaxAge:         config.Duration(7 * 24 * time.Hour),
		MaxLengthBytes: 20 << 30,
		Window:         5000,
		Page:           1000,
		MaxLag:         1_000_000,

		SnapshotInterval: unsetInterval,
		SnapshotPart:     256 << 10,
	}
	if err := config.DecodeStrict(s.Node, &c); err != nil {
		return nil, fmt.Errorf("amqp-stream %s: %w", s.Name, err)
	}
	c.Name = s.Name
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("urls: at least one broker URL is required"))
	}
	urls, hosts, tc, err := listeners.AMQPEndpoints(c.URLs, c.TLS, s.Dir)
	if err != nil {
		errs = append(errs, err)
	}
	if c.Stream == "" || len(c.Stream) > 255 {
		errs = append(errs, errors.New("stream: a queue name of 1 to 255 bytes"))
	}
	if c.MaxAge < 0 || c.MaxAge > 0 && c.MaxAge.D() < time.Second {
		errs = append(errs, errors.New("max_age: 0 (no bound) or at least 1s"))
	}
	if c.MaxLengthBytes < 0 {
		errs = append(errs, errors.New("max_length_bytes: must be >= 0 (0: no bound)"))
	}
	if c.Window < 1 || c.Page < 1 {
		errs = append(errs, errors.New("window and page: must be > 0"))
	}
	if c.Window > maxWindow {
		errs = append(errs, fmt.Errorf("window: at most %d messages awaiting confirms", maxWindow))
	}
	if c.MaxLag < 0 {
		errs = append(errs, errors.New("max_lag: must be >= 0 (0: retention never waits for the publisher)"))
	}
	if c.SnapshotInterval == unsetInterval {
		// Default: hourly, and always within retention.
		c.SnapshotInterval = config.Duration(time.Hour)
		if c.MaxAge > 0 && c.MaxAge/2 < c.SnapshotInterval {
			c.SnapshotInterval = c.MaxAge / 2
		}
	}
	if c.SnapshotInterval < 0 || c.SnapshotInterval > 0 && c.MaxAge > 0 && c.SnapshotInterval > c.MaxAge/2 {
		errs = append(errs, errors.New("snapshot_interval: 0 (never) or at most max_age/2, so that the stream always holds a complete snapshot"))
	}
	if c.SnapshotPart < 1024 || c.SnapshotPart > 64<<20 {
		errs = append(errs, errors.New("snapshot_part_bytes: 1024 to 67108864"))
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("0 < min_backoff <= max_backoff required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("amqp-stream %s: %w", s.Name, err)
	}
	p := &amqpStream{cfg: c, urls: urls, hosts: hosts, tls: tc, st: s.Store, log: s.Logger,
		key: "publisher." + s.Name + ".cursor", snapKey: "publisher." + s.Name + ".snapshot",
		wake: make(chan struct{}, 1), state: "stopped"}
	if p.log == nil {
		p.log = slog.Default()
	}
	if s.Store == nil {
		// Validation only (check-config): it cannot run.
		return p, nil
	}
	// The cursor is read now, before the first prune can run: until Run
	// starts, the floor already keeps what is unpublished.
	ctx := context.Background()
	v, err := s.Store.Meta(ctx, p.key)
	if err != nil {
		return nil, fmt.Errorf("amqp-stream %s: %w", s.Name, err)
	}
	if v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("amqp-stream %s: meta %s = %q: %w", s.Name, p.key, v, err)
		}
		p.cursor.Store(n)
		p.saved.Store(n)
	}
	if v, err := s.Store.Meta(ctx, p.snapKey); err != nil {
		return nil, fmt.Errorf("amqp-stream %s: %w", s.Name, err)
	} else if v != "" {
		if err := json.Unmarshal([]byte(v), &p.snap); err != nil {
			// A snapshot is then due: nothing is lost.
			p.log.Warn("unreadable snapshot mark; writing a new snapshot", "key", p.snapKey, "err", err)
		}
		p.gen = p.snap.Generation
	}
	last, _, err := s.Store.LogBounds(ctx)
	if err != nil {
		return nil, fmt.Errorf("amqp-stream %s: %w", s.Name, err)
	}
	p.last.Store(last)
	return p, nil
}

func (p *amqpStream) Wake(seq int64) {
	for {
		l := p.last.Load()
		if seq <= l || p.last.CompareAndSwap(l, seq) {
			break
		}
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *amqpStream) Floor() int64 {
	c, l := p.cursor.Load(), p.last.Load()
	if p.cfg.MaxLag > 0 && l-c > p.cfg.MaxLag {
		return l - p.cfg.MaxLag
	}
	if p.cfg.MaxLag == 0 {
		return -1
	}
	return c
}

func (p *amqpStream) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, l := p.cursor.Load(), p.last.Load()
	p.snapMu.Lock()
	snap := p.snap
	p.snapMu.Unlock()
	st := Stats{State: p.state, Connected: p.connected.Load(), Host: p.host, Stream: p.cfg.Stream,
		Cursor: c, LastSeq: l, Lag: max(l-c, 0), Published: p.published.Load(), Resyncs: p.resyncs.Load(), LastError: p.lastErr,
		Snapshots: p.snapshots.Load()}
	if snap.Generation > 0 && snap.Stream == p.cfg.Stream {
		st.Snapshot = &snap
	}
	return st
}

func (p *amqpStream) setState(state, host string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state, p.host = state, host
	if err != nil {
		p.lastErr = err.Error()
	}
}

// save writes the cursor to meta when it moved. A crash loses at most what
// was confirmed since the last save: those changes go out again (at least
// once; consumers dedupe by seq).
func (p *amqpStream) save(ctx context.Context) {
	c := p.cursor.Load()
	if c == p.saved.Load() {
		return
	}
	if err := p.st.SetMeta(ctx, p.key, strconv.FormatInt(c, 10)); err != nil {
		p.log.Warn("cannot save publisher cursor", "err", err)
		return
	}
	p.saved.Store(c)
}

// Run publishes until ctx ends: a session per connection, reconnecting with
// back-off and to the next URL when one fails.
func (p *amqpStream) Run(ctx context.Context) error {
	saveCtx, stopSave := context.WithCancel(context.Background())
	saved := make(chan struct{})
	go func() {
		defer close(saved)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-saveCtx.Done():
				p.save(context.Background())
				return
			case <-t.C:
				p.save(saveCtx)
			}
		}
	}()
	defer func() { stopSave(); <-saved }()
	retry := backoff.New(p.cfg.MinBackoff.D(), p.cfg.MaxBackoff.D())
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(p.urls) {
		p.setState("connecting", p.hosts[i], nil)
		t0 := time.Now()
		err := p.session(ctx, i)
		p.connected.Store(false)
		if ctx.Err() != nil {
			break
		}
		// Only a session that lasted resets the back-off: a broker that
		// drops us at once is not "back".
		if time.Since(t0) > 10*time.Second {
			retry.Reset()
		}
		wait := retry.Next()
		p.setState("disconnected", p.hosts[i], err)
		p.log.Warn("stream publisher disconnected; retrying", "host", p.hosts[i], "err", err, "in", wait, "lag", p.last.Load()-p.cursor.Load())
		backoff.Wait(ctx, wait)
	}
	p.setState("stopped", "", nil)
	return nil
}

// confirmLink is what a session hands published messages on to and waits
// on while it publishes: the queue of the goroutine that awaits the
// broker's confirms, the channel's close, and that goroutine's failure.
type confirmLink struct {
	queue   chan<- inflight
	closed  <-chan *amqp.Error
	confErr <-chan error
}

// enqueue hands a published message to the confirm goroutine, unless the
// session ends first (ctx, a closed channel, a failed confirm).
func (l confirmLink) enqueue(ctx context.Context, m inflight) error {
	select {
	case l.queue <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case e := <-l.closed:
		return fmt.Errorf("channel closed: %v", e)
	case err := <-l.confErr:
		return err
	}
}

type inflight struct {
	seq int64
	dc  *amqp.DeferredConfirmation
	// done, when set, runs once the message is confirmed (a snapshot's
	// end: the snapshot is complete in the stream). A snapshot message
	// carries the seq already sent before it and is not counted as a
	// published change.
	done     func()
	snapshot bool
}

func (p *amqpStream) dial(ctx context.Context, i int) (*amqp.Connection, error) {
	host, _ := os.Hostname()
	conn, err := p.cfg.Dial(ctx, p.urls[i], p.tls, "synchronizer publisher "+p.cfg.Name+" on "+host)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", p.hosts[i], err)
	}
	return conn, nil
}

// Declare declares the stream with the configured retention.
func (p *amqpStream) declare(ch *amqp.Channel) error {
	args := amqp.Table{"x-queue-type": "stream"}
	if p.cfg.MaxAge > 0 {
		args["x-max-age"] = strconv.FormatInt(int64(p.cfg.MaxAge.D()/time.Second), 10) + "s"
	}
	if p.cfg.MaxLengthBytes > 0 {
		args["x-max-length-bytes"] = p.cfg.MaxLengthBytes
	}
	if _, err := ch.QueueDeclare(p.cfg.Stream, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare stream %s: %w", p.cfg.Stream, err)
	}
	return nil
}

func (p *amqpStream) session(ctx context.Context, i int) error {
	conn, err := p.dial(ctx, i)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The end of ctx closes the connection at once: confirms still awaited
	// then resolve as not confirmed (the cursor stays before them), so a
	// stop or a reload never waits on a broker that stopped answering.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := p.declare(ch); err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	// Messages go out mandatory: one the broker cannot route (the stream
	// was deleted under the publisher) comes back before its confirm,
	// which the broker still sends. The returned message is not counted as
	// published: the session ends, the next one declares the stream again
	// and sends from the cursor. The buffer holds every message in flight,
	// so that the connection's reader never blocks on it.
	returned := ch.NotifyReturn(make(chan amqp.Return, p.cfg.Window+64))
	p.connected.Store(true)
	p.setState("connected", p.hosts[i], nil)
	p.log.Info("stream publisher connected", "host", p.hosts[i], "stream", p.cfg.Stream, "cursor", p.cursor.Load())

	// Confirms are awaited in publication order by one goroutine: the
	// cursor moves only over a prefix of confirmed messages. A message
	// not confirmed when the channel closes counts as lost: the next
	// session sends again from the cursor.
	queue := make(chan inflight, p.cfg.Window)
	confErr := make(chan error, 1)
	confDone := make(chan struct{})
	go func() {
		defer close(confDone)
		for m := range queue {
			<-m.dc.Done()
			err := error(nil)
			if !m.dc.Acked() {
				err = fmt.Errorf("broker did not confirm seq %d", m.seq)
			}
			select {
			case r := <-returned:
				err = fmt.Errorf("stream %s: the broker returned message %s (%d %s): the stream is gone; declaring it again", p.cfg.Stream, r.MessageId, r.ReplyCode, r.ReplyText)
			default:
			}
			if err != nil {
				select {
				case confErr <- err:
				default:
				}
				for range queue {
				}
				return
			}
			p.cursor.Store(m.seq)
			if m.done != nil {
				m.done()
			}
			if !m.snapshot {
				p.published.Add(1)
			}
		}
	}()
	defer func() { close(queue); <-confDone }()
	link := confirmLink{queue: queue, closed: closed, confErr: confErr}
	p.snapDue = p.snapshotDue(ctx, conn)
	p.snapMu.Lock()
	p.written = p.snap
	p.snapMu.Unlock()
	// The unconfirmed tail of the last session goes out again.
	sent := p.cursor.Load()
	id := p.st.DatabaseID()
	var page []amqp.Publishing
	var seqs []int64
	for {
		last, pruned, err := p.st.LogBounds(ctx)
		if err != nil {
			return err
		}
		if last > p.last.Load() {
			p.Wake(last)
		}
		if p.cfg.SnapshotInterval > 0 && !p.snapDue {
			// An unchanged state needs no new snapshot until the last
			// one comes near the end of the stream's age retention.
			age := time.Since(p.written.At)
			p.snapDue = age >= p.cfg.SnapshotInterval.D() &&
				(last > p.written.Seq || p.cfg.MaxAge > 0 && age >= p.cfg.MaxAge.D()/2)
		}
		if p.snapDue && sent >= pruned {
			if err := p.writeSnapshot(ctx, ch, link, id, sent); err != nil {
				return err
			}
			p.snapDue = false
		}
		page, seqs = page[:0], seqs[:0]
		if sent < pruned {
			// The log no longer holds what the stream lacks: tell consumers.
			page = append(page, resyncMarker(id, sent+1, pruned, p.gen))
			seqs = append(seqs, pruned)
			p.resyncs.Add(1)
			// Consumers that start now need a complete view again.
			p.snapDue = p.cfg.SnapshotInterval > 0
			p.log.Warn("changes pruned before they were published; writing a resync marker", "from", sent+1, "through", pruned)
		} else {
			now := time.Now()
			if _, err := p.st.Changes(ctx, sent, nil, p.cfg.Page, func(r store.LogRow) error {
				page = append(page, changeMessage(id, r, now, p.gen))
				seqs = append(seqs, r.Seq)
				return nil
			}); err != nil {
				return err
			}
		}
		if len(page) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case e := <-closed:
				return fmt.Errorf("channel closed: %v", e)
			case err := <-confErr:
				return err
			case <-p.wake:
			case <-time.After(time.Second):
			}
			continue
		}
		for k := range page {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", p.cfg.Stream, true, false, page[k])
			if err != nil {
				return fmt.Errorf("publish seq %d: %w", seqs[k], err)
			}
			// A session that ctx ended returns ctx's error: Run ignores it.
			if err := link.enqueue(ctx, inflight{seq: seqs[k], dc: dc}); err != nil {
				return err
			}
			sent = seqs[k]
		}
	}
}

// changeMessage is one change as the stream carries it: the body is the
// change object of the contract, byte for byte what the socket sends.
func changeMessage(id string, r store.LogRow, now time.Time, gen int64) amqp.Publishing {
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    strconv.FormatInt(r.Seq, 10),
		Timestamp:    now,
		Type:         "change",
		Headers: amqp.Table{
			"seq": r.Seq, "source": r.Source, "database_id": id,
			"action": r.Action, "type": r.Type, "generation": gen,
		},
		Body: engine.AppendChangeJSON(make([]byte, 0, len(r.Entity)+40), r.Seq, r.Action, r.Entity),
	}
}

// resyncMarker tells consumers that the changes from..through were pruned
// from the change log before they could be published: a consumer must
// resynchronize (get_all) instead of relying on the stream alone.
func resyncMarker(id string, from, through, gen int64) amqp.Publishing {
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    fmt.Sprintf("resync:%d-%d", from, through),
		Timestamp:    time.Now(),
		Type:         "resync",
		Headers: amqp.Table{
			"resync": true, "seq": through, "database_id": id,
			"lost_from": from, "lost_through": through, "generation": gen,
		},
		Body: fmt.Appendf(nil, `{"resync":true,"database_id":%q,"lost_from":%d,"lost_through":%d}`, id, from, through),
	}
}
