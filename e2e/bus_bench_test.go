package e2e

// Benchmarks of the bus path through the real binary (not run by make
// test): go test -run '^$' -bench BenchmarkBus -benchtime 20000x ./e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/openstack-synchronizer/synchronizer/listeners/amqptest"
)

// benchSync is the sidecar's sync setting for the bus benchmarks: full (the
// default, an fsync per commit) unless BENCH_SYNC says normal.
func benchSync() string {
	if s := os.Getenv("BENCH_SYNC"); s != "" {
		return s
	}
	return "full"
}

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(tb testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the parenthesised command: utime and stime are the
	// 12th and 13th, in clock ticks (100 per second on Linux).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// benchBus starts a sidecar (sync as benchSync says) with an amqp listener
// and a subscriber.
func benchBus(b *testing.B) (busSetup, *sidecar, *busSub, *amqptest.Publisher) {
	setup := newBusSetup(b)
	s := startSidecarSync(b, "", benchSync(), setup.listener(""))
	waitConnected(b, s.client())
	return setup, s, subscribe(b, s.socket, "nova.instance"), amqptest.NewPublisher(b)
}

// BenchmarkBusThroughput publishes b.N instance.create.end notifications
// (distinct instances) as fast as the broker confirms them and reports
// notifications/s from the first publish to the last change read by the
// subscriber.
func BenchmarkBusThroughput(b *testing.B) {
	setup, s, sub, pub := benchBus(b)
	pid := s.cmd.Process.Pid
	create := amqptest.Fixture(b, "nova-versioned/instance-create-end.json")
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = busEnvelope(b, create, fmt.Sprintf("%08d-1111-4000-8000-000000000000", i), "", time.Now())
	}
	b.ResetTimer()
	cpu0 := cpuTime(b, pid)
	start := time.Now()
	var last *amqp.DeferredConfirmation
	for _, body := range bodies {
		var err error
		if last, err = pub.TryPublish(setup.exchange, busKey, body); err != nil {
			b.Fatal(err)
		}
	}
	if ok, err := last.WaitContext(context.Background()); !ok || err != nil {
		b.Fatalf("not confirmed: %v", err)
	}
	published := time.Since(start)
	waitFor(b, "every change", 2*time.Minute, func() bool { return sub.count() >= b.N })
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "notifications/s")
	b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
	b.ReportMetric(float64((cpuTime(b, pid)-cpu0).Microseconds())/float64(b.N), "sidecar-cpu-µs/notification")
	b.ReportMetric(0, "ns/op")
}

// percentiles sorts lat and returns its p50, p99 and maximum in ms.
func percentiles(lat []time.Duration) (p50, p99, max float64) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e6 }
	return ms(0.5), ms(0.99), ms(1)
}

// BenchmarkBusLatency publishes b.N notifications at 1,000/s, each stamped
// with its publish time, and reports publish-to-subscriber latency, and
// publish-to-broker-consumer latency of a plain consumer bound beside the
// listener (broker-*).
func BenchmarkBusLatency(b *testing.B) {
	setup, s, sub, pub := benchBus(b)
	tap := busTap(b, amqptest.Admin(b), setup.exchange)
	create := amqptest.Fixture(b, "nova-versioned/instance-create-end.json")
	sent := make([]time.Time, b.N)
	b.ResetTimer()
	start := time.Now()
	var last *amqp.DeferredConfirmation
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		sent[i] = time.Now()
		body := busEnvelope(b, create, fmt.Sprintf("%08d-2222-4000-8000-000000000000", i), "", sent[i])
		var err error
		if last, err = pub.TryPublish(setup.exchange, busKey, body); err != nil {
			b.Fatal(err)
		}
	}
	if ok, err := last.WaitContext(context.Background()); !ok || err != nil {
		b.Fatalf("not confirmed: %v", err)
	}
	waitFor(b, "every change", time.Minute, func() bool { return sub.count() >= b.N && len(tap()) >= b.N })
	rate := float64(b.N) / time.Since(start).Seconds()
	b.StopTimer()
	got, _ := sub.got()
	lat := make([]time.Duration, len(got))
	for i, ch := range got {
		lat[i] = ch.at.Sub(ch.Timestamp)
	}
	var arrived []time.Time
	for _, m := range tap() {
		arrived = append(arrived, m.at)
	}
	broker := make([]time.Duration, b.N)
	for i := range broker {
		broker[i] = arrived[i].Sub(sent[i])
	}
	// The synchronizer's share: from the tap's delivery of a message to the
	// subscriber's reading of its change.
	own := make([]time.Duration, len(got))
	for i, ch := range got {
		var n int
		fmt.Sscanf(ch.Key, "nova.instance:%08d-", &n)
		own[i] = ch.at.Sub(arrived[n])
	}
	// The change log's "at" is when the engine began the apply: it splits
	// the synchronizer's share into listener (queue, decode) and engine
	// (commit, fan-out to the socket).
	var toEngine, toSub []time.Duration
	for i, line := range strings.Split(sqlite(b, s.db, "SELECT key, at FROM changes ORDER BY seq"), "\n") {
		key, at, _ := strings.Cut(line, "|")
		ts, err := time.Parse(time.RFC3339Nano, at)
		if err != nil || i >= len(got) || got[i].Key != key {
			b.Fatalf("change %d: %q: %v", i, line, err)
		}
		toEngine = append(toEngine, ts.Sub(got[i].Timestamp))
		toSub = append(toSub, got[i].at.Sub(ts))
	}
	b.ReportMetric(rate, "notifications/s")
	// Each share's p50 and p99 in ms, named by the share; the maximum of
	// the whole latency and of the broker's share too.
	for _, share := range []struct {
		prefix  string
		lat     []time.Duration
		withMax bool
	}{
		{"", lat, true},
		{"broker-", broker, true},
		{"sync-", own, false},
		{"to-apply-", toEngine, false},
		{"apply-to-sub-", toSub, false},
	} {
		p50, p99, max := percentiles(share.lat)
		b.ReportMetric(p50, share.prefix+"p50-ms")
		b.ReportMetric(p99, share.prefix+"p99-ms")
		if share.withMax {
			b.ReportMetric(max, share.prefix+"max-ms")
		}
	}
	b.ReportMetric(0, "ns/op")
}
