package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/engine"
)

// memBackend is an in-memory log: enough to test the server's protocol and
// fan-out without SQLite.
type memBackend struct {
	mu     sync.Mutex
	log    []engine.Published
	srv    *Server
	amu    sync.Mutex
	active []string // nil: every type
}

var _ Backend = (*memBackend)(nil)

func (m *memBackend) GetAll(ctx context.Context, types []string, fn func([]byte) error) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.log {
		if err := fn(p.JSON); err != nil {
			return 0, err
		}
	}
	return int64(len(m.log)), nil
}

func (m *memBackend) Changes(ctx context.Context, since int64, types []string, limit int, fn func(int64, []byte) error) (int64, error) {
	m.mu.Lock()
	log := m.log
	m.mu.Unlock()
	if since > int64(len(log)) {
		return 0, ErrResyncNeeded
	}
	n := 0
	for _, p := range log[since:] {
		if limit > 0 && n == limit {
			break
		}
		if err := fn(p.Seq, p.JSON); err != nil {
			return 0, err
		}
		n++
	}
	return int64(len(log)), nil
}

func (m *memBackend) Join(fn func(int64)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(int64(len(m.log)))
}

func (m *memBackend) ActiveTypes(t []string) []string {
	m.amu.Lock()
	active := m.active
	m.amu.Unlock()
	if active == nil {
		if len(t) == 0 {
			return nil
		}
		return t
	}
	if len(t) == 0 {
		return active
	}
	out := []string{}
	for _, x := range t {
		for _, a := range active {
			if x == a {
				out = append(out, x)
			}
		}
	}
	return out
}
func (m *memBackend) Status(context.Context) (any, error) { return map[string]any{}, nil }
func (m *memBackend) DatabaseID() string                  { return "0123456789abcdef0123456789abcdef" }
func (m *memBackend) Collect(context.Context, string, bool) (any, error) {
	return nil, ErrNotFound
}

// commit appends n changes and publishes them, as the engine does.
func (m *memBackend) commit(n int, payload string) { m.commitType(n, payload, "nova.instance") }

func (m *memBackend) commitType(n int, payload, typ string) {
	m.mu.Lock()
	pubs := make([]engine.Published, n)
	for i := range pubs {
		seq := int64(len(m.log) + 1)
		pubs[i] = engine.Published{Seq: seq, Type: typ,
			JSON: []byte(fmt.Sprintf(`{"seq":%d,"action":"update","key":"%s:%d","type":"%s","data":%s}`, seq, typ, seq, typ, payload))}
		m.log = append(m.log, pubs[i])
	}
	// Published under the log's lock, as the engine publishes under its
	// own: that is what makes the register seam exact.
	m.srv.Publish(pubs)
	m.mu.Unlock()
}

// startServer serves a memBackend on a fresh socket until the test ends.
func startServer(t testing.TB, o Options) (*memBackend, string) {
	t.Helper()
	b := &memBackend{}
	_, path := serve(t, b, o, nil)
	return b, path
}

// serve serves b with o on a fresh socket until the test ends; wrap, when
// set, replaces the listener (to inject accept failures).
func serve(t testing.TB, b *memBackend, o Options, wrap func(net.Listener) net.Listener) (*Server, string) {
	t.Helper()
	srv, path, cancel, done := serveMem(t, b, o, wrap)
	t.Cleanup(func() { cancel(); <-done })
	return srv, path
}

// serveMem is serve until cancel; done closes when Serve has returned.
func serveMem(t testing.TB, b *memBackend, o Options, wrap func(net.Listener) net.Listener) (srv *Server, path string, cancel context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	srv = New(b, o)
	b.srv = srv
	path = filepath.Join(t.TempDir(), "s.sock")
	if err := srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		srv.ln = wrap(srv.ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx); close(served) }()
	return srv, path, cancel, served
}

// dialRegistered dials path and registers for every change; the client is
// closed when the test ends.
func dialRegistered(t testing.TB, path string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Call(context.Background(), "register", nil, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRegisterSinceSeam: changes committed while a subscriber replays the
// log arrive once each, in order, with no gap.
func TestRegisterSinceSeam(t *testing.T) {
	b, path := startServer(t, Options{NotifyBatch: 7})
	b.commit(1000, `{}`)
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b.commit(10, `{}`)
		}
	}()
	if err := c.Call(context.Background(), "register", map[string]any{"since": 10}, nil); err != nil {
		t.Fatal(err)
	}
	want := int64(11)
	deadline := time.After(10 * time.Second)
	for want <= 2000 {
		select {
		case n := <-c.Notifications():
			for _, ch := range n.Change.Changes {
				var x struct{ Seq int64 }
				json.Unmarshal(ch, &x)
				if x.Seq != want {
					t.Fatalf("got seq %d, want %d", x.Seq, want)
				}
				want++
			}
		case <-deadline:
			t.Fatalf("stuck at seq %d", want)
		}
	}
	close(stop)
}

// BenchmarkSubscriber measures how many changes per second one Go
// subscriber receives (decoding each notification into raw changes).
// Target: >= 200k changes/s.
func BenchmarkSubscriber(b *testing.B) {
	payload := `{"OS-EXT-SRV-ATTR:host":"compute-1","status":"ACTIVE","name":"vm","flavor":{"original_name":"m1.small","vcpus":1,"ram":2048},"addresses":{"private":[{"addr":"10.0.0.1","version":4}]},"tenant_id":"6f70656e737461636b20342065766572","updated":"2026-01-01T00:00:00Z","metadata":{}}`
	be, path := startServer(b, Options{QueueLimit: 1 << 20, NotifyBatch: 1000})
	c := dialRegistered(b, path)
	const per = 100000
	b.ResetTimer()
	start := time.Now()
	got := 0
	for i := 0; i < b.N; i++ {
		go func() {
			for j := 0; j < per; j += 10000 {
				be.commit(10000, payload)
			}
		}()
		for n := 0; n < per; {
			nt := <-c.Notifications()
			n += len(nt.Change.Changes)
			got += len(nt.Change.Changes)
		}
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "changes/s")
}

// TestActiveTypesApplyAtDelivery: a subscriber follows changes of
// active_entity_types made after it registered.
func TestActiveTypesApplyAtDelivery(t *testing.T) {
	b, path := startServer(t, Options{})
	b.active = []string{"nova.instance"}
	c := dialRegistered(t, path)
	recv := func() string {
		select {
		case n := <-c.Notifications():
			var x struct{ Type string }
			json.Unmarshal(n.Change.Changes[0], &x)
			return x.Type
		case <-time.After(5 * time.Second):
			t.Fatal("no notification")
		}
		return ""
	}
	b.commitType(1, `{}`, "nova.host") // inactive: not delivered
	b.commitType(1, `{}`, "nova.instance")
	if got := recv(); got != "nova.instance" {
		t.Fatalf("got %s", got)
	}
	b.amu.Lock()
	b.active = []string{"nova.instance", "nova.host"}
	b.amu.Unlock()
	b.commitType(1, `{}`, "nova.host")
	if got := recv(); got != "nova.host" {
		t.Fatalf("after activating nova.host got %s", got)
	}
}

func TestSplitChange(t *testing.T) {
	cases := []struct {
		line string
		n    int
		ok   bool
	}{
		{changePrefix + `s1","changes":[{"a":"}"},{"b":[1,{"c":"\\\""}]}]}}` + "\n", 2, true},
		{changePrefix + `s1","changes":[]}}`, 0, true},
		{changePrefix + `s1","changes":[{"a":1}`, 0, false},
		{`{"jsonrpc":"2.0","method":"resync","params":{}}`, 0, false},
	}
	for _, tc := range cases {
		cp, ok := splitChange([]byte(tc.line))
		if ok {
			var full struct {
				Params ChangeParams `json:"params"`
			}
			if err := json.Unmarshal([]byte(tc.line), &full); err != nil || len(full.Params.Changes) != len(cp.Changes) {
				t.Errorf("%s: encoding/json disagrees: %v", tc.line, err)
			}
		}
		if ok != tc.ok || (ok && len(cp.Changes) != tc.n) {
			t.Errorf("%s: ok %v, %v", tc.line, ok, cp)
			continue
		}
		for _, ch := range cpChanges(cp) {
			if !json.Valid(ch) {
				t.Errorf("%s: invalid piece %s", tc.line, ch)
			}
		}
	}
}

func cpChanges(cp *ChangeParams) []json.RawMessage {
	if cp == nil {
		return nil
	}
	return cp.Changes
}

func TestChangeSeq(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{`{"seq":42,"action":"create"}`, 42, false},
		{`{"seq":7}`, 7, false},
		{`{"action":"delete","seq":9}`, 9, false}, // written otherwise: decoded
		{`{"seq": 11 ,"type":"x"}`, 11, false},
		{`{"seq":99999999999999999999,"x":1}`, 0, true}, // overflows int64
		{`{"action":"delete"}`, 0, true},
		{`not json`, 0, true},
	}
	for _, tt := range tests {
		got, err := ChangeSeq(json.RawMessage(tt.in))
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ChangeSeq(%s) = %d, %v; want %d, error %t", tt.in, got, err, tt.want, tt.err)
		}
	}
}
