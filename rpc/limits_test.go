package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/eventually"
	"github.com/openstack-synchronizer/synchronizer/rpc/rpctest"
)

// served fails t unless a status call on c is answered; when says at
// what point of the test.
func served(t *testing.T, c *rpctest.Lines, when string) {
	t.Helper()
	if m := c.Call(t, `{"jsonrpc":"2.0","id":"s","method":"status"}`); m["result"] == nil {
		t.Fatalf("status %s: %v", when, m)
	}
}

// closed fails t unless the server closed c: the next read meets the end,
// not a line.
func closed(t *testing.T, c *rpctest.Lines, what string) {
	t.Helper()
	if l, err := c.Line(t); err == nil {
		t.Fatalf("%s: got %.100q, want the connection closed", what, l)
	}
}

// flakyListener fails its first fails accepts with EMFILE, as a process
// out of file descriptors does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: syscall.EMFILE}
	}
	return f.Listener.Accept()
}

// TestAcceptErrorsBackOff: failed accepts are retried; the server keeps
// serving and counts them.
func TestAcceptErrorsBackOff(t *testing.T) {
	fl := &flakyListener{}
	fl.fails.Store(6)
	srv, path := serve(t, &memBackend{}, Options{}, func(ln net.Listener) net.Listener { fl.Listener = ln; return fl })
	c := rpctest.Dial(t, path)
	served(t, c, "after the accept errors")
	if n := srv.Counters().AcceptErrors; n != 6 {
		t.Fatalf("accept errors %d, want 6", n)
	}
}

// TestMaxConnections: past the limit a connection gets one error line and
// EOF; once one closes, a new one is served.
func TestMaxConnections(t *testing.T) {
	srv, path := serve(t, &memBackend{}, Options{MaxConnections: 2}, nil)
	a, b := rpctest.Dial(t, path), rpctest.Dial(t, path)
	for _, c := range []*rpctest.Lines{a, b} {
		c.Call(t, `{"jsonrpc":"2.0","id":1,"method":"status"}`)
	}
	over := rpctest.Dial(t, path)
	if m := over.Msg(t); rpctest.Code(m) != CodeLimit || m["id"] != nil {
		t.Fatalf("third connection: %v", m)
	}
	closed(t, over, "refused connection")
	a.Conn.Close()
	eventually.True(t, "a to be gone", 10*time.Second, func() bool { return srv.Counters().Connections == 1 })
	again := rpctest.Dial(t, path)
	served(t, again, "after a slot freed")
	if n := srv.Counters().Rejected; n != 1 {
		t.Fatalf("rejected %d", n)
	}
}

// TestIdleTimeout: a connection without a subscription that sends nothing
// is closed; one with a subscription stays.
func TestIdleTimeout(t *testing.T) {
	srv, path := serve(t, &memBackend{}, Options{IdleTimeout: time.Second}, nil)
	sub := rpctest.Dial(t, path)
	sub.Call(t, `{"jsonrpc":"2.0","id":1,"method":"register"}`)
	idle := rpctest.Dial(t, path)
	closed(t, idle, "idle connection")
	// Several idle time-outs later the subscriber is still served.
	time.Sleep(2500 * time.Millisecond)
	served(t, sub, "of the subscriber after idle time")
	if n := srv.Counters().IdleClosed; n != 1 {
		t.Fatalf("idle closed %d, want 1", n)
	}
}

// TestMaxSubscriptions: register past the cap is refused, and the
// connection goes on.
func TestMaxSubscriptions(t *testing.T) {
	_, path := serve(t, &memBackend{}, Options{MaxSubscriptions: 3}, nil)
	c := rpctest.Dial(t, path)
	for i := 1; i <= 4; i++ {
		m := c.Call(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"register"}`, i))
		if i <= 3 && m["result"] == nil || i == 4 && rpctest.Code(m) != CodeLimit {
			t.Fatalf("register %d: %v", i, m)
		}
	}
	c.Call(t, `{"jsonrpc":"2.0","id":5,"method":"unregister","params":{"subscription":"s1"}}`)
	if m := c.Call(t, `{"jsonrpc":"2.0","id":6,"method":"register"}`); m["result"] == nil {
		t.Fatalf("register after unregister: %v", m)
	}
}

// TestSubscriberMemoryBound: subscribers that never read are cut off once
// the bytes queued for all subscribers pass the bound, the one with the
// most queued first; a subscriber that reads gets every change.
func TestSubscriberMemoryBound(t *testing.T) {
	const limit = 4 << 20
	b := &memBackend{}
	srv, path := serve(t, b, Options{SubscriberMemory: limit, NotifyBatch: 100, WriteTimeout: time.Minute}, nil)
	payload := `"` + strings.Repeat("x", 1000) + `"`
	// Two subscribers that never read: the first joins before any change
	// and so always has the most queued.
	var stuck []*rpctest.Lines
	for i := 0; i < 2; i++ {
		c := rpctest.Dial(t, path)
		c.Call(t, `{"jsonrpc":"2.0","id":1,"method":"register"}`)
		stuck = append(stuck, c)
		b.commit(500, payload)
	}
	good := dialRegistered(t, path)
	// The reader keeps up: each commit waits until it has what came before.
	var got atomic.Int64
	go func() {
		for nt := range good.Notifications() {
			if nt.Change != nil {
				got.Add(int64(len(nt.Change.Changes)))
			}
		}
	}()
	peak := int64(0)
	for i := 1; i <= 200; i++ {
		b.commit(100, payload)
		peak = max(peak, srv.Counters().QueuedBytes)
		eventually.True(t, "the reading subscriber", 10*time.Second, func() bool { return got.Load() == int64(100*i) })
	}
	c := srv.Counters()
	t.Logf("peak queued %d bytes (bound %d), memory resyncs %d", peak, limit, c.MemoryResyncs)
	// One commit may pass the bound before the cut; never more.
	if peak > limit+100*(1000+200) {
		t.Errorf("queued bytes peaked at %d, bound %d", peak, limit)
	}
	if c.MemoryResyncs != 2 {
		t.Errorf("memory resyncs %d, want 2", c.MemoryResyncs)
	}
	// The first subscriber was cut first: its resync names the reason.
	for i, s := range stuck {
		var resync bool
		for {
			l, err := s.Line(t)
			if err != nil {
				break
			}
			if strings.Contains(l, `"method":"resync"`) && strings.Contains(l, "subscriber_memory") {
				resync = true
			}
		}
		if !resync {
			t.Errorf("stuck subscriber %d got no resync for subscriber_memory", i)
		}
	}
	eventually.True(t, "queues to drain", 10*time.Second, func() bool { return srv.Counters().QueuedBytes == 0 })
}

// TestLinesInFlightBounded: lines longer than the read buffer share
// RequestMemory across connections: past it, reading waits until a line
// is answered.
func TestLinesInFlightBounded(t *testing.T) {
	const maxLine = 64 << 10
	srv, path := serve(t, &memBackend{}, Options{MaxLine: maxLine, RequestMemory: 2 * maxLine}, nil)
	big := `{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"` + strings.Repeat("y", 20<<10) + `"}}`
	var cs []*rpctest.Lines
	for i := 0; i < 3; i++ {
		c := rpctest.Dial(t, path)
		c.Conn.Write([]byte(big[:len(big)-10])) // all but the end of the line
		cs = append(cs, c)
	}
	eventually.True(t, "two lines in flight", 10*time.Second, func() bool { return len(srv.bigLines) == 2 })
	time.Sleep(50 * time.Millisecond)
	if n := len(srv.bigLines); n != 2 {
		t.Fatalf("%d large lines in flight, bound 2", n)
	}
	// Finishing every line answers all three, in turn.
	for _, c := range cs {
		c.Conn.Write([]byte(big[len(big)-10:] + "\n"))
	}
	for i, c := range cs {
		if m := c.Msg(t); m["result"] == nil {
			t.Fatalf("connection %d: %v", i, m)
		}
	}
	eventually.True(t, "tokens back", 10*time.Second, func() bool { return len(srv.bigLines) == 0 })
}

// TestShutdownNotifies: every connection gets "shutdown" when the server
// stops, a subscriber as well as a plain client.
func TestShutdownNotifies(t *testing.T) {
	_, path, cancel, done := serveMem(t, &memBackend{}, Options{}, nil)
	sub, plain := rpctest.Dial(t, path), rpctest.Dial(t, path)
	sub.Call(t, `{"jsonrpc":"2.0","id":1,"method":"register"}`)
	plain.Call(t, `{"jsonrpc":"2.0","id":1,"method":"status"}`)
	cancel()
	for name, c := range map[string]*rpctest.Lines{"subscriber": sub, "plain": plain} {
		if m := c.Msg(t); m["method"] != "shutdown" {
			t.Errorf("%s: %v", name, m)
		}
		if _, err := c.Line(t); err == nil {
			t.Errorf("%s: a line after shutdown", name)
		}
	}
	<-done
}

// TestChangesPages: a changes answer read in several pages is the same as
// one read: in order, limited, with where to continue.
func TestChangesPages(t *testing.T) {
	b := &memBackend{}
	_, path := serve(t, b, Options{}, nil)
	b.commit(2*changesPage+10, `"`+strings.Repeat("z", 300)+`"`) // past pageBytes too
	cl, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tc := range []struct {
		since, limit int
		n, seq       int
		more         bool
	}{
		{0, 0, 2*changesPage + 10, 2*changesPage + 10, false},
		{5, 5000, 5000, 5005, true},
		{2 * changesPage, 100, 10, 2*changesPage + 10, false},
	} {
		var res struct {
			Changes []struct{ Seq int }
			Seq     int
			More    bool
		}
		if err := cl.Call(context.Background(), "changes", map[string]any{"since": tc.since, "limit": tc.limit}, &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Changes) != tc.n || res.Seq != tc.seq || res.More != tc.more {
			t.Fatalf("since %d limit %d: %d changes, seq %d, more %v", tc.since, tc.limit, len(res.Changes), res.Seq, res.More)
		}
		for i, c := range res.Changes {
			if c.Seq != tc.since+i+1 {
				t.Fatalf("since %d: change %d has seq %d", tc.since, i, c.Seq)
			}
		}
	}
}

// TestGetAllCut: a get_all whose client does not read is cut at
// GetAllTimeout: the backend's snapshot is released then, while the client
// still reads nothing; when it reads, it finds the cut line, the error with
// its id, and a connection that goes on.
func TestGetAllCut(t *testing.T) {
	b := &memBackend{}
	srv, path := serve(t, b, Options{GetAllTimeout: 300 * time.Millisecond, WriteTimeout: time.Minute}, nil)
	b.commit(20000, `"`+strings.Repeat("e", 500)+`"`) // ~11 MB: more than the socket holds
	c := rpctest.Dial(t, path)
	c.Send(t, `{"jsonrpc":"2.0","id":"g","method":"get_all"}`)
	// The answer's first bytes mean GetAll has begun: a commit started
	// before it would get the lock first, and the answer would not be cut.
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.R.Peek(1); err != nil {
		t.Fatal(err)
	}
	// memBackend.GetAll holds the log's lock for its snapshot: a commit
	// gets through once the answer is cut, though nothing was read.
	committed := make(chan struct{})
	go func() { b.commit(1, `{}`); close(committed) }()
	select {
	case <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot is still held after get_all_timeout")
	}
	l, err := c.Line(t)
	if err != nil || json.Valid([]byte(l)) || !strings.HasPrefix(l, `{"jsonrpc":"2.0","id":"g","result":{"entities":[`) {
		t.Fatalf("cut line: %.100q, %v", l, err)
	}
	if m := c.Msg(t); rpctest.Code(m) != CodeGetAllCut || m["id"] != "g" {
		t.Fatalf("after the cut line: %v", m)
	}
	served(t, c, "after the cut")
	if n := srv.Counters().GetAllCut; n != 1 {
		t.Fatalf("get_all_cut %d", n)
	}
	// The Go client gets the whole snapshot or the error, never a part.
	cl, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var all struct{ Entities []json.RawMessage }
	err = cl.Call(context.Background(), "get_all", nil, &all)
	var re *Error
	if err == nil && len(all.Entities) != 20001 || err != nil && (!errors.As(err, &re) || re.Code != CodeGetAllCut) {
		t.Fatalf("Go client: %d entities, %v", len(all.Entities), err)
	}
	if err := cl.Call(context.Background(), "status", nil, nil); err != nil {
		t.Fatalf("Go client after get_all: %v", err)
	}
}
