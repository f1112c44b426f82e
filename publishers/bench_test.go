package publishers

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

func benchN() int {
	if n, err := strconv.Atoi(os.Getenv("SYNC_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 50_000
}

// benchPublisher makes a publisher of r, with extra config, to a stream of
// the benchmark's own, declared before the reader starts, as the publisher
// will.
func benchPublisher(b *testing.B, r *rig, extra string) (set *Set, stream string) {
	b.Helper()
	stream = newStream(b)
	set = r.publisher(streamConf(stream, amqptest.Broker, extra))
	if err := set.list()[0].pub.(*amqpStream).declare(amqptest.Admin(b)); err != nil {
		b.Fatal(err)
	}
	return set, stream
}

// brokerRun publishes n messages of body to a fresh stream with pipelined
// confirms (window 5000, as the publisher) while a consumer reads them;
// pace runs before each publish and onRecv on each delivery, with the
// message's index (1..n). It returns when the consumer
// has them all.
func brokerRun(b *testing.B, n int, body []byte, pace func(i int), onRecv func(i int)) time.Duration {
	stream := newStream(b)
	conn, err := amqp.Dial(amqptest.Broker)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	if _, err := ch.QueueDeclare(stream, true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		b.Fatal(err)
	}
	ch.Confirm(false)
	got := make(chan struct{})
	ds, stop := consumeFirst(b, amqptest.Broker, stream)
	defer stop()
	go func() {
		k := 0
		for d := range ds {
			i, _ := strconv.Atoi(d.MessageId)
			if k++; k%500 == 0 {
				d.Ack(true)
			}
			if onRecv != nil {
				onRecv(i)
			}
			if i == n {
				close(got)
				return
			}
		}
	}()
	window := make(chan *amqp.DeferredConfirmation, 5000)
	go func() {
		for dc := range window {
			<-dc.Done()
		}
	}()
	t0 := time.Now()
	for i := 1; i <= n; i++ {
		if pace != nil {
			pace(i)
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", stream, false, false, amqp.Publishing{
			MessageId: strconv.Itoa(i), Body: body, DeliveryMode: amqp.Persistent,
			Headers: amqp.Table{"seq": int64(i), "source": "gen", "database_id": "x", "action": "create", "type": "host"},
		})
		if err != nil {
			b.Fatal(err)
		}
		window <- dc
	}
	close(window)
	<-got
	return time.Since(t0)
}

// BenchmarkStreamThroughput: changes/s from the change log to a consumer
// of the stream, against the broker's own publish → consume rate of the
// same number of messages of the same size on another stream, in one run.
func BenchmarkStreamThroughput(b *testing.B) {
	n := benchN()
	r := openRig(b, b.TempDir())
	r.changes(n)
	// Changes only: BenchmarkStreamSnapshot measures snapshots.
	set, stream := benchPublisher(b, r, "snapshot_interval: 0s\n")
	var body []byte
	got := make(chan time.Duration, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	t0 := time.Now()
	go readOrFail(b, ctx, ReadOptions{URL: amqptest.Broker, Stream: stream, Since: -1}, func(m Message) error {
		if body == nil {
			body = append([]byte(nil), m.Body...)
		}
		if m.Seq == int64(n) {
			got <- time.Since(t0)
		}
		return nil
	})
	stop := run(set)
	ours := <-got
	stop()
	yard := brokerRun(b, n, body, nil, nil)
	b.StopTimer()
	oursRate, yardRate := float64(n)/ours.Seconds(), float64(n)/yard.Seconds()
	b.ReportMetric(oursRate, "changes/s")
	b.ReportMetric(yardRate, "broker-msgs/s")
	b.ReportMetric(oursRate/yardRate, "ratio")
	fmt.Printf("stream throughput, %d changes of %d bytes: publisher %.0f changes/s, broker alone %.0f msgs/s, ratio %.2f\n",
		n, len(body), oursRate, yardRate, oursRate/yardRate)
}

// BenchmarkStreamSnapshot: a snapshot of n entities written into the stream
// and read whole by a consumer, against the same n entities published as n
// changes right after it, in one run (the publisher's first session writes
// the snapshot, then the log).
func BenchmarkStreamSnapshot(b *testing.B) {
	n := benchN()
	r := openRig(b, b.TempDir())
	r.changes(n)
	set, stream := benchPublisher(b, r, "")
	// Timed from the begin's arrival: the publisher's start (connect,
	// declare, a 2 s probe of the empty stream) is not the snapshot's.
	var t0 time.Time
	var snapAt, changesAt time.Duration
	var parts, bytes int64
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	go readOrFail(b, ctx, ReadOptions{URL: amqptest.Broker, Stream: stream, Since: -1, Snapshots: true}, func(m Message) error {
		switch {
		case m.Kind == "snapshot-begin":
			t0 = time.Now()
		case m.Kind == "snapshot":
			parts++
			bytes += int64(len(m.Body))
		case m.Kind == "snapshot-end":
			if m.Entities != int64(n) {
				fmt.Fprintf(os.Stderr, "snapshot of %d entities, want %d\n", m.Entities, n)
				os.Exit(1)
			}
			snapAt = time.Since(t0)
		case m.Seq == int64(n) && !m.IsSnapshot():
			changesAt = time.Since(t0)
			close(done)
		}
		return nil
	})
	stop := run(set)
	<-done
	stop()
	b.StopTimer()
	snap, changes := snapAt, changesAt-snapAt
	b.ReportMetric(float64(n)/snap.Seconds(), "snapshot-entities/s")
	b.ReportMetric(float64(n)/changes.Seconds(), "changes/s")
	b.ReportMetric(changes.Seconds()/snap.Seconds(), "speedup")
	fmt.Printf("stream snapshot of %d entities (%d parts, %d bytes): %v (%.0f entities/s); the same entities as changes: %v (%.0f changes/s); snapshot %.1fx faster\n",
		n, parts, bytes, snap.Round(time.Millisecond), float64(n)/snap.Seconds(), changes.Round(time.Millisecond),
		float64(n)/changes.Seconds(), changes.Seconds()/snap.Seconds())
}

func pct(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkStreamLatency: at 1,000 changes/s (10 every 10 ms), the time from
// the engine's commit to a stream consumer, against the broker's own
// publish → consume time at the same rate, p50 and p99.
func BenchmarkStreamLatency(b *testing.B) {
	const n, batch = 5000, 10
	r := openRig(b, b.TempDir())
	set, stream := benchPublisher(b, r, "snapshot_interval: 0s\n")
	stop := run(set)
	defer stop()
	var mu sync.Mutex
	committed := make(map[int64]time.Time, n)
	var ours []time.Duration
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var body []byte
	go readOrFail(b, ctx, ReadOptions{URL: amqptest.Broker, Stream: stream, Since: -1}, func(m Message) error {
		now := time.Now()
		mu.Lock()
		if c, ok := committed[m.Seq]; ok {
			ours = append(ours, now.Sub(c))
		}
		if body == nil {
			body = append([]byte(nil), m.Body...)
		}
		mu.Unlock()
		if m.Seq == n {
			close(done)
		}
		return nil
	})
	b.ResetTimer()
	tick := time.NewTicker(10 * time.Millisecond)
	for i := 0; i < n/batch; i++ {
		<-tick.C
		r.changes(batch)
		now := time.Now()
		mu.Lock()
		for s := r.eng.LastSeq() - batch + 1; s <= r.eng.LastSeq(); s++ {
			committed[s] = now
		}
		mu.Unlock()
	}
	tick.Stop()
	<-done
	// The yardstick: the same rate straight to the broker.
	sent := make([]time.Time, n+1)
	var yard []time.Duration
	var ymu sync.Mutex
	tick = time.NewTicker(10 * time.Millisecond)
	brokerRun(b, n, body, func(i int) {
		if i%batch == 1 {
			<-tick.C
		}
		ymu.Lock()
		sent[i] = time.Now()
		ymu.Unlock()
	}, func(i int) {
		ymu.Lock()
		yard = append(yard, time.Since(sent[i]))
		ymu.Unlock()
	})
	tick.Stop()
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	o50, o99, y50, y99 := pct(ours, .5), pct(ours, .99), pct(yard, .5), pct(yard, .99)
	b.ReportMetric(float64(o50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(o99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(y99.Microseconds())/1000, "broker-p99-ms")
	b.ReportMetric(float64(o99)/float64(y99), "p99-ratio")
	fmt.Printf("stream lag at 1000 changes/s (%d samples): commit → consumer p50 %v p99 %v; broker alone p50 %v p99 %v; p99 ratio %.2f\n",
		len(ours), o50, o99, y50, y99, float64(o99)/float64(y99))
}

// readOrFail is ReadStream in a goroutine of a benchmark: a failure ends
// the process instead of leaving the benchmark waiting.
func readOrFail(b *testing.B, ctx context.Context, o ReadOptions, fn func(Message) error) {
	if err := ReadStream(ctx, o, fn); err != nil {
		fmt.Fprintf(os.Stderr, "read stream: %v\n", err)
		os.Exit(1)
	}
}
