package rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/sourcegraph/jsonrpc2"
)

// Handle implements jsonrpc2.Handler. Responses are written by the session
// itself: get_all and changes stream their results, which can hold a million
// entities, straight from the database to the socket.
func (ss *session) Handle(ctx context.Context, _ *jsonrpc2.Conn, req *jsonrpc2.Request) {
	if req.Notif {
		return // no one to answer
	}
	id, _ := json.Marshal(req.ID)
	var err error
	switch req.Method {
	case "get_all":
		err = ss.getAll(ctx, id, req)
	case "changes":
		err = ss.changes(ctx, id, req)
	default:
		var res any
		res, err = ss.call(ctx, req)
		if err == nil {
			err = ss.reply(id, res)
		} else if errors.Is(err, errReplied) {
			err = nil
		}
	}
	var re *rpcError
	if errors.As(err, &re) {
		ss.stream.writeError(id, re.code, re.msg)
		return
	}
	if err != nil {
		// The response is half written or the peer is gone: the line
		// framing cannot be trusted any more.
		ss.s.log.Debug("closing connection", "method", req.Method, "err", err)
		ss.conn.Close()
	}
}

// errReplied tells Handle that the method wrote its own response.
var errReplied = errors.New("replied")

// rpcError is an error answered to the client as a JSON-RPC error.
type rpcError struct {
	code int64
	msg  string
}

func (e *rpcError) Error() string { return fmt.Sprintf("rpc error %d: %s", e.code, e.msg) }

func errorf(code int64, format string, a ...any) error {
	return &rpcError{code: code, msg: fmt.Sprintf(format, a...)}
}

func (ss *session) reply(id []byte, res any) error {
	b, err := json.Marshal(res)
	if err != nil {
		return errorf(codeInternal, "encode result: %v", err)
	}
	return ss.stream.writeWith(func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","id":`)
		w.Write(id)
		w.WriteString(`,"result":`)
		w.Write(b)
		_, err := w.WriteString("}\n")
		return err
	})
}

// params decodes a request's params into v; absent or null params leave v
// as it is.
func params(req *jsonrpc2.Request, v any) error {
	if req.Params == nil || string(*req.Params) == "null" {
		return nil
	}
	if err := json.Unmarshal(*req.Params, v); err != nil {
		return errorf(codeInvalidParams, "invalid params for %s: %v", req.Method, err)
	}
	return nil
}

type typesParams struct {
	Types []string `json:"types"`
}

func (ss *session) getAll(ctx context.Context, id []byte, req *jsonrpc2.Request) error {
	var p typesParams
	if err := params(req, &p); err != nil {
		return err
	}
	types := ss.s.b.ActiveTypes(p.Types)
	if types != nil && len(types) == 0 {
		return ss.reply(id, map[string]any{"seq": lastSeq(ss.s.b), "entities": []any{}})
	}
	return ss.stream.writeWith(func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","id":`)
		w.Write(id)
		w.WriteString(`,"result":{"entities":[`)
		first := true
		seq, err := ss.s.b.GetAll(ctx, types, func(ent []byte) error {
			if !first {
				w.WriteByte(',')
			}
			first = false
			_, err := w.Write(ent)
			return err
		})
		if err != nil {
			return err
		}
		w.WriteString(`],"seq":`)
		w.WriteString(strconv.FormatInt(seq, 10))
		_, err = w.WriteString("}}\n")
		return err
	})
}

func lastSeq(b Backend) int64 {
	var last int64
	b.Join(func(l int64) { last = l })
	return last
}

// DefaultChangesLimit bounds one changes call when the client gives no
// limit; "more" in the result says there is more to fetch.
const DefaultChangesLimit = 100000

func (ss *session) changes(ctx context.Context, id []byte, req *jsonrpc2.Request) error {
	var p struct {
		Since *int64   `json:"since"`
		Types []string `json:"types"`
		Limit int      `json:"limit"`
	}
	if err := params(req, &p); err != nil {
		return err
	}
	if p.Since == nil {
		return errorf(codeInvalidParams, "changes: since is required")
	}
	if p.Limit <= 0 {
		p.Limit = DefaultChangesLimit
	}
	types := ss.s.b.ActiveTypes(p.Types)
	if types != nil && len(types) == 0 {
		return ss.reply(id, map[string]any{"seq": lastSeq(ss.s.b), "changes": []any{}})
	}
	// Validate since before the first byte of the response is written, so
	// that a resync is an ordinary error response.
	if _, err := ss.s.b.Changes(ctx, *p.Since, types, 1, func(int64, []byte) error { return nil }); err != nil {
		if errors.Is(err, ErrResyncNeeded) {
			ss.s.resyncs.refused.Add(1)
			return errorf(CodeResyncNeeded, "%v", err)
		}
		return errorf(codeInternal, "%v", err)
	}
	return ss.stream.writeWith(func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","id":`)
		w.Write(id)
		w.WriteString(`,"result":{"changes":[`)
		n := 0
		var lastSent int64
		last, err := ss.s.b.Changes(ctx, *p.Since, types, p.Limit, func(seq int64, c []byte) error {
			if n > 0 {
				w.WriteByte(',')
			}
			n++
			lastSent = seq
			_, err := w.Write(c)
			return err
		})
		if err != nil {
			return err
		}
		// seq is where the next call should continue: the log's end, or
		// the last change sent when the limit cut the answer short.
		more := n == p.Limit && lastSent < last
		next := last
		if more {
			next = lastSent
		}
		fmt.Fprintf(w, `],"seq":%d,"more":%t}}`+"\n", next, more)
		return nil
	})
}

func (ss *session) call(ctx context.Context, req *jsonrpc2.Request) (any, error) {
	s := ss.s
	switch req.Method {
	case "register":
		var p struct {
			Types []string `json:"types"`
			Since *int64   `json:"since"`
		}
		if err := params(req, &p); err != nil {
			return nil, err
		}
		since := int64(-1)
		if p.Since != nil {
			if *p.Since < 0 {
				return nil, errorf(codeInvalidParams, "register: since must be >= 0")
			}
			since = *p.Since
			if _, err := s.b.Changes(ctx, since, nil, 1, func(int64, []byte) error { return nil }); err != nil {
				if errors.Is(err, ErrResyncNeeded) {
					s.resyncs.refused.Add(1)
					return nil, errorf(CodeResyncNeeded, "%v", err)
				}
				return nil, errorf(codeInternal, "%v", err)
			}
		}
		// The subscription keeps the types it asked for; which of them are
		// active is decided at each delivery, so a reload that changes
		// active_entity_types applies to existing subscribers too.
		sub := newSubscriber(s.newID(), ss, p.Types)
		var join int64
		s.b.Join(func(last int64) {
			join = last
			s.mu.Lock()
			s.subs[sub.id] = sub
			s.mu.Unlock()
		})
		ss.mu.Lock()
		if ss.subs == nil { // connection already gone
			ss.mu.Unlock()
			s.mu.Lock()
			delete(s.subs, sub.id)
			s.mu.Unlock()
			return nil, errorf(codeInternal, "connection closed")
		}
		ss.subs[sub.id] = sub
		ss.mu.Unlock()
		// The response goes out before the first notification: the
		// subscriber's goroutine starts once it is written.
		id, _ := json.Marshal(req.ID)
		if err := ss.reply(id, map[string]any{"subscription": sub.id, "seq": join}); err != nil {
			return nil, err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sub.run(ctx, since, join)
		}()
		return nil, errReplied
	case "unregister":
		var p struct {
			Subscription string `json:"subscription"`
		}
		if err := params(req, &p); err != nil {
			return nil, err
		}
		ss.mu.Lock()
		sub, ok := ss.subs[p.Subscription]
		delete(ss.subs, p.Subscription)
		ss.mu.Unlock()
		if !ok {
			return nil, errorf(CodeNotFound, "unregister: no subscription %q on this connection", p.Subscription)
		}
		s.mu.Lock()
		delete(s.subs, sub.id)
		s.mu.Unlock()
		sub.stop()
		return struct{}{}, nil
	case "status":
		st, err := s.b.Status(ctx)
		if err != nil {
			return nil, errorf(codeInternal, "status: %v", err)
		}
		return st, nil
	case "collect":
		var p struct {
			Name  string `json:"name"`
			Force bool   `json:"force"`
		}
		if err := params(req, &p); err != nil {
			return nil, err
		}
		if p.Name == "" {
			return nil, errorf(codeInvalidParams, "collect: name is required")
		}
		res, err := s.b.Collect(ctx, p.Name, p.Force)
		if errors.Is(err, ErrNotFound) {
			return nil, errorf(CodeNotFound, "collect: %v", err)
		}
		if err != nil {
			return nil, errorf(codeInternal, "collect %s: %v", p.Name, err)
		}
		return res, nil
	default:
		return nil, errorf(codeMethodNotFound, "method not found: %q", req.Method)
	}
}
