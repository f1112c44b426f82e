// Package rpc is the synchronizer's JSON-RPC 2.0 server on a Unix socket,
// one JSON object per line, and its subscriber fan-out; plus a small Go
// client of the same protocol for the CLI and tools.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sourcegraph/jsonrpc2"

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
	// CodeNotFound answers collect for an unknown collector or unregister
	// of an unknown subscription.
	CodeNotFound = -32004
)

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
}

// Options configure the server.
type Options struct {
	SocketMode   os.FileMode
	QueueLimit   int           // changes waiting per subscriber before resync
	NotifyBatch  int           // most changes per notification
	WriteTimeout time.Duration // a peer that stops reading is dropped
	MaxLine      int           // longest request line
	Logger       *slog.Logger
}

// Server serves Backend on a Unix socket.
type Server struct {
	b    Backend
	o    Options
	log  *slog.Logger
	ln   net.Listener
	path string

	mu    sync.Mutex
	subs  map[string]*subscriber
	conns map[*jsonrpc2.Conn]*session
	next  atomic.Int64
	wg    sync.WaitGroup

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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Server{b: b, o: o, log: o.Logger, subs: map[string]*subscriber{}, conns: map[*jsonrpc2.Conn]*session{}}
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
	// even between bind and chmod.
	old := syscall.Umask(0o777 &^ int(s.o.SocketMode.Perm()))
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("rpc: listen %s: %w", path, err)
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

// Serve accepts connections until ctx ends, then closes every connection
// (subscribers get a final "shutdown" notification) and removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.ln.Close()
	}()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.shutdown()
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			s.shutdown()
			return fmt.Errorf("rpc: accept: %w", err)
		}
		s.serveConn(ctx, c)
	}
}

func (s *Server) shutdown() {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.conns))
	for _, ss := range s.conns {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.stream.writeLines(notification("shutdown", map[string]any{"reason": "synchronizer stopping"}))
		ss.conn.Close()
	}
	s.wg.Wait()
}

// session is one client connection.
type session struct {
	s      *Server
	conn   *jsonrpc2.Conn
	stream *lineStream
	mu     sync.Mutex
	subs   map[string]*subscriber
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	ss := &session{s: s, stream: newLineStream(c, s.o.MaxLine, s.o.WriteTimeout), subs: map[string]*subscriber{}}
	ss.conn = jsonrpc2.NewConn(ctx, ss.stream, ss, jsonrpc2.SetLogger(log.New(io.Discard, "", 0)))
	s.mu.Lock()
	s.conns[ss.conn] = ss
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ss.conn.DisconnectNotify()
		ss.mu.Lock()
		subs := ss.subs
		ss.subs = nil
		ss.mu.Unlock()
		s.mu.Lock()
		delete(s.conns, ss.conn)
		for id, sub := range subs {
			delete(s.subs, id)
			sub.stop()
		}
		s.mu.Unlock()
	}()
}

// Stats reports the number of connections and subscribers and the changes
// waiting in subscriber queues.
func (s *Server) Stats() (conns, subscribers, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		queued += sub.queued()
	}
	return len(s.conns), len(s.subs), queued
}

// Publish implements engine.Publisher: it hands committed changes to every
// subscriber whose types match. It never blocks on a slow subscriber.
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
	for _, sub := range s.subs {
		sub.offer(pubs, active)
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
