package sidecar

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/listeners"
	"github.com/openstack-synchronizer/synchronizer/rpc"
)

// testBus is a listener type for these tests: it pushes the events handed
// to it and reports message figures like the AMQP listener does.
type testBus struct {
	mu       sync.Mutex
	received int64
}

var (
	busEvents  = make(chan []entity.Event, 10)
	busApplied = make(chan error, 10)
)

func init() {
	listeners.Register("testbus", func(s listeners.Settings) (listeners.Listener, error) { return &testBus{}, nil })
}

func (b *testBus) Run(ctx context.Context, sink listeners.Sink) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case evs := <-busEvents:
			b.mu.Lock()
			b.received++
			b.mu.Unlock()
			busApplied <- sink.Apply(ctx, evs)
		}
	}
}

func (b *testBus) Status() listeners.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	one := 1
	return listeners.Status{Received: b.received, BadTotal: 2, OtherConsumers: &one}
}

var _ listeners.StatusReporter = (*testBus)(nil)

// TestMetrics scrapes the endpoint: poll outcomes and durations, entities
// per type, changes by action, subscribers, listener messages and the
// reload outcome, which turns 0 on a bad edit.
func TestMetrics(t *testing.T) {
	h := start(t, "metrics: {listen: \"127.0.0.1:0\"}\nlisteners:\n  - {name: bus, type: testbus}\n"+twoCollectors("", "1h"))
	h.settle()
	m := regexp.MustCompile(`msg="metrics endpoint listening" .*addr=(\S+)`).FindStringSubmatch(h.log.String())
	if m == nil {
		t.Fatalf("no metrics address in the log\n%s", h.log)
	}
	busEvents <- []entity.Event{{Action: entity.Update, Entity: entity.Entity{Type: "nova.instance", ID: "pushed", State: "ACTIVE"}}}
	if err := <-busApplied; err != nil {
		t.Fatal(err)
	}
	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + m[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// A consumer whose since is ahead of the log is told to resync: counted.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, h.socket)
	if err != nil {
		t.Fatal(err)
	}
	var res any
	if err := c.Call(ctx, "changes", map[string]any{"since": 1000}, &res); err == nil {
		t.Errorf("changes since 1000 of 8: no error")
	}
	if err := c.Call(ctx, "changes", map[string]any{"since": 1, "database_id": "another"}, &res); err == nil {
		t.Errorf("changes with another database's id: no error")
	}
	c.Close()
	out := scrape()
	for _, want := range []string{
		`synchronizer_rpc_resyncs_total{reason="since_outside_log"} 1`,
		`synchronizer_rpc_resyncs_total{reason="queue_overflow"} 0`,
		`synchronizer_rpc_resyncs_total{reason="other_database"} 1`,
		`synchronizer_collector_interval_seconds{collector="change"} 3600`,
		`synchronizer_polls_total{collector="change",outcome="success"} 1`,
		`synchronizer_poll_duration_seconds_count{collector="keep"} 1`,
		`synchronizer_entities{source="change",type="nova.host"} 3`,
		`synchronizer_entities{source="bus",type="nova.instance"} 1`,
		`synchronizer_changes_total{action="create",source="change"} 4`,
		`synchronizer_changes_total{action="create",source="bus"} 1`,
		`synchronizer_rpc_subscribers 0`,
		`synchronizer_rpc_queued_changes 0`,
		`synchronizer_rpc_queued_bytes 0`,
		`synchronizer_rpc_rejected_connections_total 0`,
		`synchronizer_rpc_idle_closed_total 0`,
		`synchronizer_rpc_memory_resyncs_total 0`,
		`synchronizer_rpc_accept_errors_total 0`,
		`synchronizer_rpc_get_all_cut_total 0`,
		`synchronizer_listener_messages_total{listener="bus"} 1`,
		`synchronizer_listener_bad_messages_total{listener="bus"} 2`,
		`synchronizer_listener_catch_up_polls_total{listener="bus"} 0`,
		`synchronizer_listener_queue_other_consumers{listener="bus"} 1`,
		`synchronizer_change_log_last_seq 8`,
		`synchronizer_config_last_reload_successful 1`,
		`synchronizer_wal_checkpoint_failing 0`,
		`synchronizer_store_failing 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !regexp.MustCompile(`\nsynchronizer_build_info\{goversion="go[^"]+",revision="[^"]*",version="[^"]+"\} 1\n`).MatchString(out) {
		t.Errorf("no synchronizer_build_info")
	}
	// The last success is the poll's, not the start's: within the test.
	if m := regexp.MustCompile(`\nsynchronizer_collector_last_success_timestamp_seconds\{collector="keep"\} (\S+)\n`).FindStringSubmatch(out); m == nil {
		t.Errorf("no last success timestamp")
	} else if v, _ := strconv.ParseFloat(m[1], 64); time.Since(time.Unix(int64(v), 0)) > time.Minute || v > float64(time.Now().Unix()+1) {
		t.Errorf("last success %s is not this test's poll", m[1])
	}
	// The checkpointer runs after the commits, in the background: on a
	// loaded machine it may not have run by the first scrape.
	checkpointed := regexp.MustCompile(`\nsynchronizer_wal_checkpoints_total [1-9]`)
	deadline := time.Now().Add(20 * time.Second)
	for !checkpointed.MatchString(out) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		out = scrape()
	}
	if !checkpointed.MatchString(out) {
		t.Errorf("no background checkpoint counted")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", out)
	}
	// A bad edit: reload failed, old config (and endpoint) still running.
	saveRename(t, h.path, header(h.dir)+"collectors: [\n")
	waitFor(t, "failed reload", 10*time.Second, func() bool {
		return strings.Contains(scrape(), "synchronizer_config_last_reload_successful 0\n")
	})
	if !strings.Contains(scrape(), `synchronizer_config_reloads_total{outcome="failure"} 1`) {
		t.Errorf("reload failure not counted")
	}
	st := h.status()
	if l := st.Listeners; len(l) != 1 || l[0].Messages == nil || *l[0].Messages != 1 || l[0].BadMessages == nil || *l[0].BadMessages != 2 ||
		l[0].Entities["nova.instance"] != 1 || l[0].LastSuccess.IsZero() {
		t.Errorf("listener status %+v", st.Listeners)
	}
}

// TestListenerActiveTypes: a listener's updates of inactive types are
// dropped, its deletes still apply.
func TestListenerActiveTypes(t *testing.T) {
	h := start(t, "active_entity_types: [nova.host]\nlisteners:\n  - {name: bus, type: testbus}\n")
	push := func(action, typ, id string) {
		busEvents <- []entity.Event{{Action: action, Entity: entity.Entity{Type: typ, ID: id, State: "x"}}}
		if err := <-busApplied; err != nil {
			t.Fatal(err)
		}
	}
	push(entity.Update, "nova.instance", "i1")
	push(entity.Update, "nova.host", "h1")
	if st := h.status(); st.Entities != 1 || st.ChangeLog.LastSeq != 1 {
		t.Errorf("after an inactive and an active update: %d entities, seq %d", st.Entities, st.ChangeLog.LastSeq)
	}
}
