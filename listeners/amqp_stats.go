package listeners

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// amqpStats are the figures of `status`. No URL with credentials goes in.
type amqpStats struct {
	mu            sync.Mutex
	state, broker string
	lastErr       string
	down          string // why the last connection attempt failed, until one consumes
	since         time.Time
	received      int64
	events        int64
	acked         int64
	ignored       int64
	redelivered   int64
	deadLettered  int64
	batches       int64
	applyErrors   int64
	reconnects    int64
	bad           map[string]int64
	lastMessage   time.Time
	// Possible gaps (catch-ups asked for) and the last one.
	gaps      int64
	lastGap   string
	lastGapAt time.Time
	// Our queue at the last check: consumers (ours included), the others,
	// ready messages.
	consumers, otherConsumers, queueDepth int
	checkedAt                             time.Time
}

func (s *amqpStats) add(p *int64, n int64) {
	s.mu.Lock()
	*p += n
	s.mu.Unlock()
}

func (s *amqpStats) snapshot(queue string) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := make(map[string]int64, len(s.bad))
	var total int64
	for k, v := range s.bad {
		bad[k] = v
		total += v
	}
	st := Status{
		State: s.state, Broker: s.broker, Queue: queue, StateSince: s.since,
		Received: s.received, Events: s.events, Acked: s.acked, Ignored: s.ignored,
		Redelivered: s.redelivered, DeadLettered: s.deadLettered, Batches: s.batches,
		ApplyErrors: s.applyErrors, Reconnects: s.reconnects,
		Bad: bad, BadTotal: total, LastError: s.lastErr,
		Down: s.down, LastMessageAt: s.lastMessage, Gaps: s.gaps,
	}
	if s.lastGap != "" {
		st.LastGap, st.LastGapAt = s.lastGap, s.lastGapAt
	}
	if !s.checkedAt.IsZero() {
		consumers, others, depth := s.consumers, s.otherConsumers, s.queueDepth
		st.QueueConsumers, st.OtherConsumers, st.QueueMessages, st.QueueCheckedAt = &consumers, &others, &depth, s.checkedAt
		if s.otherConsumers > 0 {
			st.Warning = fmt.Sprintf("queue %s has %d other consumer(s): they take notifications away from this sidecar; "+
				"give every sidecar a queue of its own (leave queue unset)", queue, s.otherConsumers)
		}
	}
	return st
}

func (l *amqpListener) setState(state, broker string, err error) {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	if l.st.state != state {
		l.st.since = time.Now().UTC()
	}
	l.st.state, l.st.broker = state, broker
	if err != nil {
		l.st.lastErr = err.Error()
	}
}

// logLimiter logs one line per key at most every 10s and says how many it
// held back.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func (r *logLimiter) log(l *slog.Logger, key string, level slog.Level, msg string, args ...any) {
	r.mu.Lock()
	if r.last == nil {
		r.last, r.held = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if now.Sub(r.last[key]) < 10*time.Second {
		r.held[key]++
		r.mu.Unlock()
		return
	}
	held := r.held[key]
	r.last[key], r.held[key] = now, 0
	r.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	l.Log(context.Background(), level, msg, args...)
}
