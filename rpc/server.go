// Package rpc is the synchronizer's JSON-RPC 2.0 server on a Unix socket,
// one JSON object per line, and its subscriber fan-out; plus a small Go
// client of the same protocol for the CLI and tools.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sourcegraph/jsonrpc2"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/engine"
)

// JSON-RPC error codes.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeInternal       = -32603
	// CodeResyncNeeded answers changes/register with a since older than the
	// retained log (or newer than the log: the database was replaced).
	CodeResyncNeeded = -32001
	// CodeGetAllCut ends a get_all answer that took longer than
	// get_all_timeout, or that the server's stop interrupted. The answer's
	// line is left unterminated JSON (it can never parse as a result) and
	// this error follows on the next line with the same id.
	CodeGetAllCut = -32002
	// CodeNotFound answers collect for an unknown collector or unregister
	// of an unknown subscription.
	CodeNotFound = -32004
	// CodeLimit refuses a connection past max_connections (then the
	// connection is closed) or a register past max_subscriptions.
	CodeLimit = -32005
)

// MaxTypes is the most distinct types one request may name.
const MaxTypes = 1000

// getAllSlots is how many get_all answers read the database at once. The
// store's read pool has four connections: two always stay free for
// status, changes and replays, whose reads are short (pages).
const getAllSlots = 2

// ErrResyncNeeded is returned by Backend.Changes when since is outside the
// retained log.
var ErrResyncNeeded = errors.New("since is outside the retained change log: resync with get_all")

// ErrNotFound is returned by Backend.Collect for an unknown collector.
var ErrNotFound = errors.New("not found")

// Backend is what the server serves. The sidecar implements it over the
// engine and the store.
type Backend interface {
	// GetAll calls fn with each entity's JSON of the given types (all active
	// types when empty) from one consistent view, and returns its seq.
	GetAll(ctx context.Context, types []string, fn func(entity []byte) error) (int64, error)
	// Changes calls fn with each change's JSON after since, of the given
	// types, at most limit (<= 0: all), in seq order, and returns the last
	// seq of the log; ErrResyncNeeded when since is not in the log. The
	// bytes are valid only during the call.
	Changes(ctx context.Context, since int64, types []string, limit int, fn func(seq int64, change []byte) error) (int64, error)
	// Join runs fn while no change can be committed, with the last
	// committed seq.
	Join(fn func(lastSeq int64))
	// ActiveTypes filters types to the active ones; nil means all types.
	ActiveTypes(types []string) []string
	Status(ctx context.Context) (any, error)
	Collect(ctx context.Context, name string, force bool) (any, error)
	// DatabaseID identifies the database the seqs belong to: a since is
	// only meaningful with the id it came with.
	DatabaseID() string
}

// Options configure the server. Zero values take the defaults below.
type Options struct {
	SocketMode   os.FileMode
	QueueLimit   int           // changes waiting per subscriber before resync (100000)
	NotifyBatch  int           // most changes per notification (1000)
	WriteTimeout time.Duration // a peer that stops reading is dropped
	MaxLine      int           // longest request line (1 MiB)
	// MaxConnections bounds open connections (1024): past it a new
	// connection gets a CodeLimit error line and is closed.
	MaxConnections int
	// IdleTimeout closes a connection with no subscription that sends no
	// complete request line for this long (10m).
	IdleTimeout time.Duration
	// MaxSubscriptions bounds subscriptions per connection (16).
	MaxSubscriptions int
	// SubscriberMemory bounds the bytes of changes queued for all
	// subscribers together (256 MiB): past it the subscribers with the most
	// bytes queued get resync until the total is under it again.
	SubscriberMemory int64
	// RequestMemory bounds the request lines read but not yet answered, over
	// all connections (64 MiB): lines longer than the read buffer (4 KiB)
	// each reserve MaxLine bytes of it, and wait while it is used up.
	RequestMemory int64
	// GetAllTimeout bounds how long a get_all answer may read its snapshot
	// (60s): past it the answer is cut with CodeGetAllCut.
	GetAllTimeout time.Duration
	Logger        *slog.Logger
	// SocketGID, when set, is the group the socket is given (the
	// process must be root or a member of it).
	SocketGID *int
}

// Counters are the server's figures for status and metrics.
type Counters struct {
	Connections   int   `json:"connections"`
	Subscribers   int   `json:"subscribers"`
	QueuedChanges int   `json:"queued_changes"`
	QueuedBytes   int64 `json:"queued_bytes"`
	// Rejected counts connections refused past max_connections.
	Rejected int64 `json:"rejected_connections"`
	// IdleClosed counts connections closed after idle_timeout.
	IdleClosed int64 `json:"idle_closed"`
	// MemoryResyncs counts subscribers cut off by subscriber_memory.
	MemoryResyncs int64 `json:"memory_resyncs"`
	// AcceptErrors counts failed accepts (each retried after a back-off).
	AcceptErrors int64 `json:"accept_errors"`
	// GetAllCut counts get_all answers cut by get_all_timeout.
	GetAllCut int64 `json:"get_all_cut"`
}

// Server serves Backend on a Unix socket.
type Server struct {
	b    Backend
	o    Options
	log  *slog.Logger
	ln   net.Listener
	path string

	mu       sync.Mutex
	subs     map[string]*subscriber
	conns    map[*session]struct{}
	closing  bool
	next     atomic.Int64
	wg       sync.WaitGroup
	baseCtx  context.Context
	stopBase context.CancelFunc

	bulk     chan struct{} // get_all slots
	bigLines chan struct{} // request lines over the read buffer

	queuedBytes                                         atomic.Int64
	rejected, idleClosed, memResyncs, acceptErr, cutAll atomic.Int64
	rejecting                                           bool // in a burst of refusals (under mu)
	burstRejected                                       int64

	resyncs resyncCounts
}

// New returns a server; call Listen then Serve.
func New(b Backend, o Options) *Server {
	if o.QueueLimit <= 0 {
		o.QueueLimit = 100000
	}
	if o.NotifyBatch <= 0 {
		o.NotifyBatch = 1000
	}
	if o.MaxLine <= 0 {
		o.MaxLine = 1 << 20
	}
	if o.SocketMode == 0 {
		o.SocketMode = 0o600
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 1024
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = 16
	}
	if o.SubscriberMemory <= 0 {
		o.SubscriberMemory = 256 << 20
	}
	if o.RequestMemory <= 0 {
		o.RequestMemory = 64 << 20
	}
	if o.GetAllTimeout <= 0 {
		o.GetAllTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{b: b, o: o, log: o.Logger, subs: map[string]*subscriber{}, conns: map[*session]struct{}{},
		baseCtx: ctx, stopBase: cancel,
		bulk:     make(chan struct{}, getAllSlots),
		bigLines: make(chan struct{}, max(1, o.RequestMemory/int64(o.MaxLine))),
	}
}

// Listen creates the socket at path with the configured mode. An existing
// file there is replaced only if it is a socket that nobody listens on.
func (s *Server) Listen(path string) error {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("rpc: %s exists and is not a socket: refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("rpc: %s: another process is listening on it (is a synchronizer already running?)", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("rpc: remove stale socket: %w", err)
		}
		s.log.Info("removed stale socket", "path", path)
	}
	if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
		return fmt.Errorf("rpc: %w", err)
	}
	// The socket must never exist with a wider mode than configured, not
	// even between bind and chmod; nor open to the process's own group
	// before it has the configured one.
	create := s.o.SocketMode.Perm()
	if s.o.SocketGID != nil {
		create &= 0o700
	}
	old := syscall.Umask(0o777 &^ int(create))
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("rpc: listen %s: %w", path, err)
	}
	if gid := s.o.SocketGID; gid != nil {
		if err := os.Lchown(path, -1, *gid); err != nil {
			ln.Close()
			return fmt.Errorf("rpc: socket_group: give %s to group %d: %w (the service's user must be root or a member of that group)", path, *gid, err)
		}
	}
	if err := os.Chmod(path, s.o.SocketMode.Perm()); err != nil {
		ln.Close()
		return fmt.Errorf("rpc: chmod %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	s.ln, s.path = ln, path
	return nil
}

func dirOf(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i+1]
		}
	}
	return "."
}

// Serve accepts connections until ctx ends, then tells every connection
// "shutdown", closes them and removes the socket. A failed accept (out of
// file descriptors, for one) is logged and retried after a back-off, as
// net/http does: it never stops the server.
func (s *Server) Serve(ctx context.Context) error {
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		s.ln.Close()
	}()
	defer close(stopped)
	retry := backoff.New(5*time.Millisecond, time.Second)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.shutdown()
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				s.shutdown()
				return fmt.Errorf("rpc: accept: %w", err)
			}
			delay := retry.Next()
			s.acceptErr.Add(1)
			s.log.Warn("accept failed: retrying", "err", err, "retry_in", delay)
			backoff.Wait(ctx, delay) // an ended ctx is seen at the next accept
			continue
		}
		retry.Reset()
		s.serveConn(c)
	}
}

// shutdown tells every connection "shutdown" and closes it. A peer that
// does not read gets up to two seconds.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.closing = true
	sessions := make([]*session, 0, len(s.conns))
	for ss := range s.conns {
		sessions = append(sessions, ss)
	}
	subs := make([]*subscriber, 0, len(s.subs))
	for _, sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	// Subscribers stop first, so that no change follows the shutdown line;
	// handlers are cancelled so that a get_all in progress ends its answer.
	for _, sub := range subs {
		sub.stop()
	}
	s.stopBase()
	line := notification("shutdown", map[string]any{"reason": "synchronizer stopping"})
	var told sync.WaitGroup
	for _, ss := range sessions {
		told.Add(1)
		go func() {
			defer told.Done()
			ss.stream.writeFinal(line)
		}()
	}
	done := make(chan struct{})
	go func() { told.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	for _, ss := range sessions {
		ss.stream.Close()
	}
	s.wg.Wait()
}

// reject refuses a connection past max_connections with an error line.
// Refusals are logged once per burst: at the first, and with their count
// when a connection is accepted again.
func (s *Server) reject(c net.Conn) {
	s.rejected.Add(1)
	if !s.rejecting {
		s.rejecting = true
		s.log.Warn("connection limit reached: refusing new connections", "max_connections", s.o.MaxConnections)
	}
	s.burstRejected++
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(append(errorLine(nil, CodeLimit, fmt.Sprintf("too many connections (max_connections is %d): try again later", s.o.MaxConnections)), '\n'))
	c.Close()
}

func (s *Server) serveConn(c net.Conn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	if len(s.conns) >= s.o.MaxConnections {
		s.reject(c)
		s.mu.Unlock()
		return
	}
	if s.rejecting {
		s.log.Info("accepting connections again", "refused_in_burst", s.burstRejected)
		s.rejecting, s.burstRejected = false, 0
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	ss := &session{s: s, stream: newLineStream(c, s.o.MaxLine, s.o.WriteTimeout), subs: map[string]*subscriber{}, ctx: ctx, cancel: cancel}
	s.conns[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ss.serve()
		ss.end()
	}()
}

// session is one client connection.
type session struct {
	s      *Server
	stream *lineStream
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	subs   map[string]*subscriber // nil once the connection ended
}

// end releases the session's subscriptions once its connection is gone.
func (ss *session) end() {
	ss.cancel()
	ss.stream.Close()
	ss.mu.Lock()
	subs := ss.subs
	ss.subs = nil
	ss.mu.Unlock()
	s := ss.s
	s.mu.Lock()
	delete(s.conns, ss)
	for id, sub := range subs {
		delete(s.subs, id)
		sub.stop()
	}
	s.mu.Unlock()
}

// close ends the connection: the read loop returns and end runs.
func (ss *session) close() { ss.stream.Close() }

func (ss *session) subscribed() bool { return ss.subCount() > 0 }

func (ss *session) subCount() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.subs)
}

// serve reads requests and answers them in order until the connection ends.
func (ss *session) serve() {
	s := ss.s
	for {
		// Only a connection without subscriptions can be idle: a
		// subscriber may rightly wait hours for its next change.
		if ss.subscribed() {
			ss.stream.conn.SetReadDeadline(time.Time{})
		} else {
			ss.stream.conn.SetReadDeadline(time.Now().Add(s.o.IdleTimeout))
		}
		big := false
		line, err := ss.stream.readLine(func() error {
			if err := acquire(ss.ctx, s.bigLines); err != nil {
				return err
			}
			big = true
			return nil
		})
		release := func() {
			if big {
				<-s.bigLines
			}
		}
		if errors.Is(err, errLineTooLong) {
			release()
			ss.stream.writeError(nil, codeInvalidRequest, fmt.Sprintf("request line longer than %d bytes", s.o.MaxLine))
			continue
		}
		if err != nil {
			release()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.idleClosed.Add(1)
				s.log.Debug("closing idle connection", "idle_timeout", s.o.IdleTimeout)
			}
			return
		}
		// The request runs on a goroutine of its own: SQLite's calls grow
		// a stack to tens of KB, which then goes with that goroutine
		// instead of staying with the connection while it idles.
		done := make(chan struct{})
		go func() {
			defer close(done)
			ss.dispatch(line)
		}()
		<-done
		release()
	}
}

// dispatch checks one line against JSON-RPC 2.0 and handles it. The id is
// echoed byte for byte; a request without id is a notification and gets
// no answer (and, none of the methods being fit for it, is not run).
func (ss *session) dispatch(line []byte) {
	line = trimSpace(line)
	if len(line) == 0 {
		return
	}
	if !json.Valid(line) {
		ss.stream.writeError(nil, codeParseError, "parse error: not valid JSON")
		return
	}
	// A map keeps the members' exact names (encoding/json matches struct
	// fields case-insensitively) and the id's exact bytes.
	var m map[string]json.RawMessage
	if line[0] != '{' || json.Unmarshal(line, &m) != nil {
		ss.stream.writeError(nil, codeInvalidRequest, "invalid request: not a JSON object (batches are not supported)")
		return
	}
	id, hasID := m["id"]
	if hasID && !validID(id) {
		ss.stream.writeError(nil, codeInvalidRequest, "invalid request: id must be a string, a number or null")
		return
	}
	if v, ok := m["jsonrpc"]; !ok || string(v) != `"2.0"` {
		var ver string
		if ok && json.Unmarshal(v, &ver) == nil && ver == "2.0" {
			// "2.0" written with escapes: still 2.0.
		} else {
			ss.stream.writeError(id, codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
			return
		}
	}
	var method string
	if raw, ok := m["method"]; !ok || json.Unmarshal(raw, &method) != nil {
		ss.stream.writeError(id, codeInvalidRequest, "invalid request: method must be a string")
		return
	}
	if !hasID {
		return
	}
	req := &jsonrpc2.Request{Method: method}
	if p, ok := m["params"]; ok {
		req.Params = &p
	}
	ss.handle(ss.ctx, id, req)
}

// validID says whether a raw id is a string, a number or null.
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	switch c := id[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	case string(id) == "null":
		return true
	}
	return false
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

// Counters reports the server's figures.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	c := Counters{Connections: len(s.conns), Subscribers: len(s.subs)}
	for _, sub := range s.subs {
		c.QueuedChanges += sub.queued()
	}
	s.mu.Unlock()
	c.QueuedBytes = s.queuedBytes.Load()
	c.Rejected = s.rejected.Load()
	c.IdleClosed = s.idleClosed.Load()
	c.MemoryResyncs = s.memResyncs.Load()
	c.AcceptErrors = s.acceptErr.Load()
	c.GetAllCut = s.cutAll.Load()
	return c
}

// Publish implements engine.Publisher: it hands committed changes to every
// subscriber whose types match. It never blocks on a slow subscriber.
// Past subscriber_memory, the subscribers with the most bytes queued are
// cut off (resync) until the total fits again.
func (s *Server) Publish(pubs []engine.Published) {
	active := map[string]bool{}
	for i := range pubs {
		t := pubs[i].Type
		if _, seen := active[t]; !seen {
			a := s.b.ActiveTypes([]string{t})
			active[t] = a == nil || len(a) == 1
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) == 0 {
		return
	}
	// Publish holds each item while it offers them, so that a subscriber
	// that sends and releases one at once cannot free it before the next
	// subscriber takes it.
	items := make([]item, len(pubs))
	for i := range pubs {
		items[i] = item{p: pubs[i], size: int64(len(pubs[i].JSON)) + itemOverhead}
		s.hold(&items[i])
	}
	for _, sub := range s.subs {
		sub.offer(items, active)
	}
	for i := range items {
		s.release(&items[i])
	}
	for s.queuedBytes.Load() > s.o.SubscriberMemory {
		var worst *subscriber
		var most int64
		for _, sub := range s.subs {
			if b := sub.cuttable(); b > most {
				worst, most = sub, b
			}
		}
		if worst == nil {
			break
		}
		s.memResyncs.Add(1)
		s.log.Warn("subscriber memory bound reached: cutting off the subscriber with the most queued",
			"subscription", worst.id, "queued_bytes", most, "subscriber_memory", s.o.SubscriberMemory)
		worst.cut(fmt.Sprintf("the changes queued for all subscribers passed subscriber_memory (%d bytes), and this subscriber had the most queued", s.o.SubscriberMemory))
	}
}

func notification(method string, params any) []byte {
	b, _ := json.Marshal(struct {
		JSONRPC string `json:"jsonrpc"`
		Method  string `json:"method"`
		Params  any    `json:"params"`
	}{"2.0", method, params})
	return b
}

func (s *Server) newID() string { return "s" + strconv.FormatInt(s.next.Add(1), 10) }
