package e2e

// End-to-end tests of the socket's limits and of JSON-RPC 2.0 conformance,
// through the real binary.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/rpc"
	"github.com/openstack-synchronizer/synchronizer/rpc/rpctest"
)

// startPrefixed is startSidecar with the binary run under prefix (such as
// prlimit).
func startPrefixed(t *testing.T, dir, config string, prefix ...string) *sidecar {
	t.Helper()
	s := &sidecar{t: t, dir: dir, config: filepath.Join(dir, "config.yaml"),
		socket: filepath.Join(dir, "s.sock"), db: filepath.Join(dir, "s.db")}
	if err := os.WriteFile(s.config, []byte("socket: s.sock\ndatabase: s.db\nsync: normal\n"+config), 0o644); err != nil {
		t.Fatal(err)
	}
	s.log = &logBuffer{}
	args := append(append(prefix[1:len(prefix):len(prefix)], binary), "serve", "--config", s.config)
	s.cmd = exec.Command(prefix[0], args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop() })
	waitFor(t, "socket", 20*time.Second, func() bool {
		c, err := net.Dial("unix", s.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// status calls status with a time-out: a server that does not answer is
// an error, not a hang.
func status(s *sidecar) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, s.socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var st map[string]any
	return st, c.Call(ctx, "status", nil, &st)
}

func rpcCounter(t *testing.T, s *sidecar, name string) float64 {
	t.Helper()
	st, err := status(s)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := st["rpc"].(map[string]any)[name].(float64)
	return v
}

// TestRPCAcceptSurvivesFDExhaustion: with its file descriptors used up the
// server cannot accept; once clients leave it serves again.
func TestRPCAcceptSurvivesFDExhaustion(t *testing.T) {
	dir := t.TempDir()
	s := startPrefixed(t, dir, "", "prlimit", "--nofile=64:64")
	// The socket answers before the units and the config watcher are set
	// up: flood only a fully started sidecar, so that the test is about
	// accept, not about start-up at the limit.
	waitFor(t, "the sidecar ready", 30*time.Second, func() bool {
		return strings.Contains(s.log.String(), "synchronizer ready")
	})
	var conns []net.Conn
	for i := 0; i < 80; i++ {
		c, err := net.Dial("unix", s.socket)
		if err != nil {
			break // the backlog is full too
		}
		conns = append(conns, c)
	}
	waitFor(t, "accept failures in the log", 20*time.Second, func() bool {
		return strings.Contains(s.log.String(), "too many open files")
	})
	for _, c := range conns {
		c.Close()
	}
	if _, err := status(s); err != nil {
		t.Fatalf("status after the descriptors came back: %v\n%s", err, s.log)
	}
	if n := rpcCounter(t, s, "accept_errors"); n < 1 {
		t.Fatalf("accept_errors %v", n)
	}
}

// TestRPCConnectionLimits: max_connections refuses with an error line;
// idle connections without a subscription are closed, subscribers are
// not; max_subscriptions refuses a register.
func TestRPCConnectionLimits(t *testing.T) {
	s := startSidecar(t, "", "max_connections: 4\nidle_timeout: 1s\nmax_subscriptions: 2\n")
	sub := rpctest.Dial(t, s.socket)
	sub.Send(t, `{"jsonrpc":"2.0","id":1,"method":"register","params":{}}`)
	if m := sub.Msg(t); m["result"] == nil {
		t.Fatalf("register: %v", m)
	}
	var idle []*rpctest.Lines
	for i := 0; i < 3; i++ {
		c := rpctest.Dial(t, s.socket)
		c.Send(t, `{"jsonrpc":"2.0","id":1,"method":"status","params":{}}`)
		if m := c.Msg(t); m["result"] == nil {
			t.Fatalf("status %d: %v", i, m)
		}
		idle = append(idle, c)
	}
	over := rpctest.Dial(t, s.socket)
	if m := over.Msg(t); rpctest.Code(m) != rpc.CodeLimit {
		t.Fatalf("fifth connection: %v", m)
	}
	if _, err := over.R.ReadBytes('\n'); err == nil {
		t.Fatal("refused connection left open")
	}
	// The idle ones are closed after idle_timeout.
	for i, c := range idle {
		c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.R.ReadBytes('\n'); err == nil || os.IsTimeout(err) {
			t.Fatalf("idle connection %d: %v", i, err)
		}
	}
	// The subscriber is not idle, however long it waits.
	sub.Send(t, `{"jsonrpc":"2.0","id":2,"method":"register","params":{}}`)
	if m := sub.Msg(t); m["result"] == nil {
		t.Fatalf("second register: %v", m)
	}
	sub.Send(t, `{"jsonrpc":"2.0","id":3,"method":"register","params":{}}`)
	if m := sub.Msg(t); rpctest.Code(m) != rpc.CodeLimit {
		t.Fatalf("third register on one connection: %v", m)
	}
	if n := rpcCounter(t, s, "rejected_connections"); n != 1 {
		t.Errorf("rejected_connections %v", n)
	}
	if n := rpcCounter(t, s, "idle_closed"); n != 3 {
		t.Errorf("idle_closed %v", n)
	}
	if !strings.Contains(s.log.String(), "connection limit reached") {
		t.Errorf("refusal not logged:\n%s", s.log)
	}
}

// TestRPCSlowGetAllDoesNotStarve: clients that ask for get_all and never
// read hold no more than their slots: status and changes answer for
// everyone else, and the slow answers are cut after get_all_timeout with
// an error that names it.
func TestRPCSlowGetAllDoesNotStarve(t *testing.T) {
	const n = 20000
	dir := t.TempDir()
	// write_timeout is long: the slow readers are read only at the end,
	// and a peer that stops reading for write_timeout is dropped.
	s := startSidecar(t, dir, "get_all_timeout: 3s\nwrite_timeout: 10m\n"+genConfig(t, dir, n, "1h"))
	waitFor(t, "first snapshot", 60*time.Second, func() bool {
		out, _ := s.cli("status")
		return strings.Contains(out, fmt.Sprintf(`"entities": %d`, n))
	})
	var slow []*rpctest.Lines
	for i := 0; i < 4; i++ {
		c := rpctest.Dial(t, s.socket)
		c.Send(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"get_all","params":{}}`, 100+i))
		slow = append(slow, c)
	}
	time.Sleep(500 * time.Millisecond) // the slow ones fill their sockets
	// Everyone else is served while they sit on their answers.
	if _, err := status(s); err != nil {
		t.Fatalf("status with slow get_all readers: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ch struct{ Changes []json.RawMessage }
	if err := s.client().Call(ctx, "changes", map[string]any{"since": 0, "limit": 10}, &ch); err != nil || len(ch.Changes) != 10 {
		t.Fatalf("changes with slow get_all readers: %d, %v", len(ch.Changes), err)
	}
	// Writes go on while the slow readers sit on their snapshots.
	round := func(state string) {
		os.WriteFile(filepath.Join(dir, "state"), []byte(state), 0o644)
		if out, err := s.cli("collect", "gen"); err != nil || !strings.Contains(out, fmt.Sprintf(`"updated": %d`, n)) {
			t.Fatalf("collect: %v\n%s", err, out)
		}
	}
	round("SHUTOFF")
	time.Sleep(7 * time.Second) // past get_all_timeout for both pairs
	// Read all four at once: the two that waited for a get_all slot get it
	// only when one of the first two has been read to its end.
	errs := make(chan error, len(slow))
	for i, c := range slow {
		go func() { errs <- readSlowAnswer(c, 100+i) }()
	}
	for range slow {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := rpcCounter(t, s, "get_all_cut"); n < 1 {
		t.Errorf("get_all_cut %v", n)
	}
	// No snapshot is held any more: the WAL restarts with the next writes.
	round("ACTIVE")
	waitFor(t, "the WAL to be free", 30*time.Second, func() bool {
		st, err := status(s)
		if err != nil {
			return false
		}
		wal, _ := st["wal"].(map[string]any)
		return wal["reader_holds_wal"] == nil
	})
	// A type asked three times is answered once.
	var all struct{ Entities []json.RawMessage }
	if err := s.client().Call(context.Background(), "get_all", map[string]any{"types": []string{"nova.instance", "nova.instance", "nova.instance"}}, &all); err != nil || len(all.Entities) != n {
		t.Fatalf("get_all of a repeated type: %d entities, %v", len(all.Entities), err)
	}

}

// TestRPCJSONRPC2: the envelope is checked as JSON-RPC 2.0 says, and ids
// come back exactly as sent.
func TestRPCJSONRPC2(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, "", "")
	c := rpctest.Dial(t, s.socket)
	types := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"t%d"`, i)
		}
		return b.String()
	}
	cases := []struct {
		name, line string
		id         string // the id as the answer must carry it
		code       int    // 0: a result
	}{
		{"version 1.0", `{"jsonrpc":"1.0","id":1,"method":"status"}`, `1`, -32600},
		{"no version", `{"id":2,"method":"status"}`, `2`, -32600},
		{"version as number", `{"jsonrpc":2.0,"id":3,"method":"status"}`, `3`, -32600},
		{"negative id", `{"jsonrpc":"2.0","id":-1,"method":"status"}`, `-1`, 0},
		{"large id", `{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"status"}`, `123456789012345678901234567890`, 0},
		{"string id", `{"jsonrpc":"2.0","id":"a\"b","method":"status"}`, `"a\"b"`, 0},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"status"}`, `null`, 0},
		{"object id", `{"jsonrpc":"2.0","id":{"x":1},"method":"status"}`, `null`, -32600},
		{"method not a string", `{"jsonrpc":"2.0","id":4,"method":7}`, `4`, -32600},
		{"upper-case member names", `{"JSONRPC":"2.0","ID":5,"METHOD":"status"}`, `null`, -32600},
		{"changes with 40000 types", `{"jsonrpc":"2.0","id":6,"method":"changes","params":{"since":0,"types":[` + types(40000) + `]}}`, `6`, -32602},
		{"changes with 1000 types", `{"jsonrpc":"2.0","id":7,"method":"changes","params":{"since":0,"types":[` + types(1000) + `]}}`, `7`, 0},
		{"get_all with 1001 types", `{"jsonrpc":"2.0","id":8,"method":"get_all","params":{"types":[` + types(1001) + `]}}`, `8`, -32602},
		{"register with 1001 types", `{"jsonrpc":"2.0","id":9,"method":"register","params":{"types":[` + types(1001) + `]}}`, `9`, -32602},
	}
	for _, tc := range cases {
		// A notification first: it must get no answer, so the next line
		// read is the case's.
		c.Send(t, `{"jsonrpc":"2.0","method":"status","params":{}}`)
		c.Send(t, tc.line)
		c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := c.R.ReadBytes('\n')
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var m struct {
			ID     json.RawMessage
			Result json.RawMessage
			Error  *struct{ Code int }
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s: %q", tc.name, line)
		}
		code := 0
		if m.Error != nil {
			code = m.Error.Code
		}
		if string(m.ID) != tc.id || code != tc.code || (code == 0) != (m.Result != nil) {
			t.Errorf("%s: answered %.200s", tc.name, line)
		}
		if code == -32602 && !strings.Contains(string(line), "1000") {
			t.Errorf("%s: the error does not name the cap: %s", tc.name, line)
		}
	}
}

// TestRPCShutdownNotification: on SIGTERM every client gets the shutdown
// notification before the socket closes.
func TestRPCShutdownNotification(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, "", "")
	sub, plain := rpctest.Dial(t, s.socket), rpctest.Dial(t, s.socket)
	sub.Send(t, `{"jsonrpc":"2.0","id":1,"method":"register","params":{}}`)
	sub.Msg(t)
	plain.Send(t, `{"jsonrpc":"2.0","id":1,"method":"status","params":{}}`)
	plain.Msg(t)
	s.cmd.Process.Signal(syscall.SIGTERM)
	for name, c := range map[string]*rpctest.Lines{"subscriber": sub, "plain client": plain} {
		if m := c.Msg(t); m["method"] != "shutdown" {
			t.Errorf("%s got %v, want the shutdown notification", name, m)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// TestRPCSubscriberMemory: 500 subscribers that never read, under a
// stream of changes: the memory queued for them stays within
// subscriber_memory, they get resync, and a subscriber that reads gets
// every change. Reports RSS against the idle process.
func TestRPCSubscriberMemory(t *testing.T) {
	const n, subs = 10000, 500
	dir := t.TempDir()
	s := startSidecar(t, dir, "subscriber_memory: 33554432\nwrite_timeout: 10m\n"+genConfig(t, dir, n, "1h"))
	waitFor(t, "first snapshot", 60*time.Second, func() bool {
		out, _ := s.cli("status")
		return strings.Contains(out, fmt.Sprintf(`"entities": %d`, n))
	})
	pid := s.cmd.Process.Pid
	idle := rssKB(pid)
	// peakDuring samples RSS while fn runs.
	peakDuring := func(fn func()) int {
		peak := rssKB(pid)
		stop, sampled := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					peak = max(peak, rssKB(pid))
				}
			}
		}()
		fn()
		close(stop)
		<-sampled
		return peak
	}
	round := func(states ...string) {
		for i, st := range states {
			os.WriteFile(filepath.Join(dir, "state"), []byte(st), 0o644)
			if out, err := s.cli("collect", "gen"); err != nil || !strings.Contains(out, fmt.Sprintf(`"updated": %d`, n)) {
				t.Fatalf("round %d: %v\n%s", i, err, out)
			}
		}
	}
	// The yardstick: the same changes with no subscriber.
	bare := peakDuring(func() { round("SHUTOFF", "ACTIVE", "PAUSED") })
	for i := 0; i < subs; i++ {
		c := rpctest.Dial(t, s.socket)
		c.Send(t, `{"jsonrpc":"2.0","id":1,"method":"register","params":{}}`)
		if m := c.Msg(t); m["result"] == nil {
			t.Fatalf("register %d: %v", i, m)
		}
	}
	good := s.client()
	if err := good.Call(context.Background(), "register", nil, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		k := 0
		for nt := range good.Notifications() {
			if nt.Change != nil {
				k += len(nt.Change.Changes)
			}
			if k == 3*n {
				break
			}
		}
		got <- k
	}()
	registered := rssKB(pid)
	peak := peakDuring(func() {
		round("SHUTOFF", "ACTIVE", "PAUSED")
		select {
		case k := <-got:
			if k != 3*n {
				t.Fatalf("the reading subscriber got %d changes, want %d", k, 3*n)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the reading subscriber did not get every change")
		}
	})
	resyncs := rpcCounter(t, s, "memory_resyncs")
	t.Logf("RSS: idle %d KB; peak under %d changes with no subscriber %d KB; %d subscribers registered %d KB; peak under %d changes with them %d KB (%.2fx the no-subscriber peak); memory resyncs %v",
		idle, 3*n, bare, subs+1, registered, 3*n, peak, float64(peak)/float64(bare), resyncs)
	if resyncs < 1 {
		t.Errorf("no subscriber was cut off by subscriber_memory")
	}
	// 32 MiB of queues and 500 connections' buffers over the same changes
	// without subscribers; main took 5.6 GB here.
	if grow := peak - bare; grow > 250<<10 {
		t.Errorf("RSS peak %d KB above the no-subscriber peak", grow)
	}
}

// dialBusy connects to socket, waiting while its backlog is full
// (EAGAIN) for the server to accept.
func dialBusy(t *testing.T, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	for tries := 0; errors.Is(err, syscall.EAGAIN) && tries < 1000; tries++ {
		time.Sleep(time.Millisecond)
		c, err = net.Dial("unix", socket)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRPCIdleConnectionsRSS: 10,000 idle connections are all served, and
// what they cost is reported against the idle process.
func TestRPCIdleConnectionsRSS(t *testing.T) {
	const conns = 10000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < conns+200 {
		t.Skipf("RLIMIT_NOFILE %d is below %d", lim.Cur, conns+200)
	}
	s := startSidecar(t, "", "max_connections: 20000\n")
	pid := s.cmd.Process.Pid
	idle := rssKB(pid)
	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for i := 0; i < conns; i++ {
		cs = append(cs, dialBusy(t, s.socket))
	}
	waitFor(t, "all connections", 30*time.Second, func() bool { return rpcCounter(t, s, "connections") >= conns })
	fresh := rssKB(pid)
	// Each asks once, as a real client does, then idles.
	line := []byte(`{"jsonrpc":"2.0","id":1,"method":"changes","params":{"since":0}}` + "\n")
	buf := make([]byte, 4096)
	for i, c := range cs {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(line); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if n, err := c.Read(buf); err != nil || !bytes.Contains(buf[:n], []byte(`"result"`)) {
			t.Fatalf("connection %d: %q, %v", i, buf[:n], err)
		}
	}
	rss := rssKB(pid)
	t.Logf("RSS idle %d KB; with %d connections that never sent %d KB; after each asked once %d KB (%.2fx idle, %.1f KB per connection)",
		idle, conns, fresh, rss, float64(rss)/float64(idle), float64(rss-idle)/conns)
	if per := (rss - idle) / conns; per > 64 {
		t.Errorf("%d KB per idle connection", per)
	}
}

// TestRPCRequestMemory: many connections each part-way through a large
// request line hold no more than request_memory between them; once the
// lines end, every one is answered. Reports RSS against the idle process.
func TestRPCRequestMemory(t *testing.T) {
	const conns, part = 300, 900 << 10
	s := startSidecar(t, "", "request_memory: 8388608\n")
	pid := s.cmd.Process.Pid
	idle := rssKB(pid)
	head := `{"jsonrpc":"2.0","id":1,"method":"status","params":{"pad":"`
	body := head + strings.Repeat("p", part-len(head))
	cs := make([]net.Conn, conns)
	var wg sync.WaitGroup
	for i := range cs {
		c := dialBusy(t, s.socket)
		defer c.Close()
		cs[i] = c
		c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		if i == 0 {
			// The first connection's line is under way before the others
			// come: once its write returns, the server has read past its
			// 4 KB buffer and holds memory for it. (Written beside the
			// others, it may come last and wait for memory they hold.)
			if _, err := c.Write([]byte(body)); err != nil {
				t.Fatalf("first connection's line: %v", err)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Write([]byte(body)) // blocks once the server stops reading
		}()
	}
	time.Sleep(3 * time.Second) // the server reads what it may
	held := rssKB(pid)
	// The first line ends: the first connection is answered, whatever
	// the others hold.
	wg.Add(1)
	go func() { defer wg.Done(); cs[0].Write([]byte(`"}}` + "\n")) }()
	buf := make([]byte, 1<<16)
	cs[0].SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := cs[0].Read(buf); err != nil || !bytes.Contains(buf[:n], []byte(`"result"`)) {
		t.Fatalf("first connection: %q, %v", buf[:n], err)
	}
	for _, c := range cs[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); c.Write([]byte(`"}}` + "\n")) }()
	}
	for i, c := range cs[1:] {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		r := bufio.NewReader(c)
		line, err := r.ReadBytes('\n')
		if err != nil || !bytes.Contains(line, []byte(`"result"`)) {
			t.Fatalf("connection %d: %.200q, %v", i+1, line, err)
		}
	}
	wg.Wait()
	t.Logf("RSS idle %d KB; with %d connections each %d KB into a request line %d KB (%.2fx idle; %d MB of lines sent)",
		idle, conns, part>>10, held, float64(held)/float64(idle), conns*part>>20)
	// request_memory is 8 MiB: the lines are read 8 at a time. main read
	// them all at once (about 270 MB).
	if grow := held - idle; grow > 100<<10 {
		t.Errorf("RSS grew by %d KB while lines were in flight", grow)
	}
}

// readSlowAnswer reads a get_all answer to id to its end: the whole
// result, or an answer cut by get_all_timeout (a line that is not JSON,
// then the -32002 error), never a cut line followed by a result.
func readSlowAnswer(c *rpctest.Lines, id int) error {
	var cut bool
	for {
		c.Conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		line, err := c.R.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("slow reader %d: %v", id, err)
		}
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			cut = true // the answer's line, cut short
			continue
		}
		if m["id"] != float64(id) {
			return fmt.Errorf("slow reader %d: %v", id, m)
		}
		if m["result"] != nil && cut {
			return fmt.Errorf("slow reader %d: a cut line, then a result", id)
		}
		if m["result"] == nil && rpctest.Code(m) != rpc.CodeGetAllCut {
			return fmt.Errorf("slow reader %d: no end: %v", id, m)
		}
		return nil
	}
}
