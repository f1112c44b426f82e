package rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sourcegraph/jsonrpc2"
)

// method answers one request and writes its response itself, through the
// session's stream: get_all and changes stream their results, which can
// hold a million entities, straight from the database to the socket; the
// others write one value (replying). An *rpcError returned is answered as a
// JSON-RPC error; any other error closes the connection.
type method func(ss *session, ctx context.Context, id []byte, req *jsonrpc2.Request) error

// methods are the contract's RPC methods (docs/contract.md).
var methods = map[string]method{
	"get_all":    (*session).getAll,
	"changes":    (*session).changes,
	"register":   (*session).register,
	"unregister": replying((*session).unregister),
	"status":     replying((*session).status),
	"collect":    replying((*session).collect),
}

// replying makes a method of one whose result is a single JSON value.
func replying(f func(ss *session, ctx context.Context, req *jsonrpc2.Request) (any, error)) method {
	return func(ss *session, ctx context.Context, id []byte, req *jsonrpc2.Request) error {
		res, err := f(ss, ctx, req)
		if err != nil {
			return err
		}
		return ss.reply(id, res)
	}
}

// handle answers one request; id is the request's id as it was sent.
func (ss *session) handle(ctx context.Context, id []byte, req *jsonrpc2.Request) {
	err := errorf(codeMethodNotFound, "method not found: %q", req.Method)
	if m, ok := methods[req.Method]; ok {
		err = m(ss, ctx, id, req)
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
		ss.close()
	}
}

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
	// DatabaseID is accepted and ignored: get_all is how a client of
	// another database resyncs.
	DatabaseID string `json:"database_id"`
}

// checkDatabase answers a since that came with another database's id with
// the resync error: its seqs mean nothing here.
func (ss *session) checkDatabase(method, id string) error {
	if own := ss.s.b.DatabaseID(); id != "" && id != own {
		ss.s.resyncs.otherDatabase.Add(1)
		return errorf(CodeResyncNeeded, "%s: database_id %s is not this database's (%s): the database was replaced; resync with get_all", method, id, own)
	}
	return nil
}

// activeTypes is what a get_all or changes of the types asked for reads:
// those of them that are active (nil: every type). none is true when none
// of them is: the answer is empty.
func (ss *session) activeTypes(method string, asked []string) (types []string, none bool, err error) {
	reqTypes, err := distinctTypes(method, asked)
	if err != nil {
		return nil, false, err
	}
	types = ss.s.b.ActiveTypes(reqTypes)
	return types, types != nil && len(types) == 0, nil
}

func (ss *session) getAll(ctx context.Context, id []byte, req *jsonrpc2.Request) error {
	var p typesParams
	if err := params(req, &p); err != nil {
		return err
	}
	types, none, err := ss.activeTypes(req.Method, p.Types)
	if err != nil {
		return err
	}
	if none {
		return ss.reply(id, map[string]any{"seq": lastSeq(ss.s.b), "entities": []any{}, "database_id": ss.s.b.DatabaseID()})
	}
	// A snapshot holds a read connection and keeps the WAL from restarting
	// for as long as the client takes to read it: few at a time, each for
	// a bounded time, so that status, changes and replays always find a
	// connection.
	if err := acquire(ctx, ss.s.bulk); err != nil {
		return err
	}
	defer func() { <-ss.s.bulk }()
	rctx, cancel := context.WithTimeout(ctx, ss.s.o.GetAllTimeout)
	defer cancel()
	peerErr, err := ss.stream.writeDetached(rctx, func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","id":`)
		w.Write(id)
		w.WriteString(`,"result":{"entities":[`)
		first := true
		seq, err := ss.s.b.GetAll(rctx, types, func(ent []byte) error {
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
		w.WriteString(`,"database_id":`)
		writeJSONString(w, ss.s.b.DatabaseID())
		_, err = w.WriteString("}}\n")
		return err
	}, func(err error, sent bool) []byte { return ss.cut(id, ctx, rctx, err, sent) })
	if peerErr != nil {
		return peerErr
	}
	return nil
}

// cut is the end of a get_all answer that could not be completed. When
// part of it had left, its line is ended where it stands (inside an
// unclosed object: it never parses as a result) and an error with the same
// id follows on the next line; when nothing had, the error is the answer.
func (ss *session) cut(id []byte, ctx, rctx context.Context, err error, sent bool) []byte {
	code, msg := int64(codeInternal), fmt.Sprintf("get_all failed: %v: the line above is cut", err)
	switch {
	case ctx.Err() != nil:
		code, msg = CodeGetAllCut, "get_all interrupted: the synchronizer is stopping: the line above is cut"
	case rctx.Err() != nil:
		ss.s.cutAll.Add(1)
		ss.s.log.Warn("get_all cut: the client read its answer for longer than get_all_timeout", "get_all_timeout", ss.s.o.GetAllTimeout)
		code, msg = CodeGetAllCut, fmt.Sprintf("get_all took longer than get_all_timeout (%s): the line above is cut; read faster or ask for fewer types", ss.s.o.GetAllTimeout)
	}
	if !sent {
		msg = strings.TrimSuffix(msg, ": the line above is cut")
		return append(errorLine(id, code, msg), '\n')
	}
	line := append([]byte{'\n'}, errorLine(id, code, msg)...)
	return append(line, '\n')
}

// distinctTypes drops repeated types (a type asked twice would be sent
// twice) and refuses more than MaxTypes distinct ones.
func distinctTypes(method string, types []string) ([]string, error) {
	if len(types) < 2 {
		return types, nil
	}
	seen := make(map[string]struct{}, min(len(types), MaxTypes+1))
	out := make([]string, 0, min(len(types), MaxTypes))
	for _, t := range types {
		if _, dup := seen[t]; dup {
			continue
		}
		if len(seen) == MaxTypes {
			return nil, errorf(codeInvalidParams, "%s: more than %d distinct types: the cap is %d", method, MaxTypes, MaxTypes)
		}
		seen[t] = struct{}{}
		out = append(out, t)
	}
	return out, nil
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
		Since      *int64   `json:"since"`
		Types      []string `json:"types"`
		Limit      int      `json:"limit"`
		DatabaseID string   `json:"database_id"`
	}
	if err := params(req, &p); err != nil {
		return err
	}
	if p.Since == nil {
		return errorf(codeInvalidParams, "changes: since is required")
	}
	if err := ss.checkDatabase("changes", p.DatabaseID); err != nil {
		return err
	}
	if p.Limit <= 0 {
		p.Limit = DefaultChangesLimit
	}
	types, none, err := ss.activeTypes(req.Method, p.Types)
	if err != nil {
		return err
	}
	if none {
		return ss.reply(id, map[string]any{"seq": lastSeq(ss.s.b), "changes": []any{}, "database_id": ss.s.b.DatabaseID()})
	}
	// Validate since before the first byte of the response is written, so
	// that a resync is an ordinary error response.
	end, err := ss.s.b.Changes(ctx, *p.Since, types, 1, func(int64, []byte) error { return nil })
	if err != nil {
		if errors.Is(err, ErrResyncNeeded) {
			ss.s.resyncs.refused.Add(1)
			return errorf(CodeResyncNeeded, "%v", err)
		}
		return errorf(codeInternal, "%v", err)
	}
	// The log is read in pages, each in a short read transaction, so that
	// a slow reader holds no snapshot: logged changes never change, and a
	// prune that overtakes the answer is a resync. The first page is read
	// before anything is written, so that its failure is an ordinary error
	// response; a later page's failure ends the answer with the whole
	// pages before it and "more", and the next call, which starts at the
	// failure, gets the error. A client never gets half a line.
	readErr := func(err error) error {
		if errors.Is(err, ErrResyncNeeded) {
			return errorf(CodeResyncNeeded, "%v", err)
		}
		return errorf(codeInternal, "changes: %v", err)
	}
	page, cnt, last, err := ss.s.readPage(ctx, *p.Since, end, types, min(changesPage, p.Limit), nil)
	if err != nil {
		return readErr(err)
	}
	return ss.stream.writeWith(func(w *bufio.Writer) error {
		w.WriteString(`{"jsonrpc":"2.0","id":`)
		w.Write(id)
		w.WriteString(`,"result":{"changes":[`)
		n := 0
		cursor := *p.Since
		cut := false
		for cnt > 0 {
			if n > 0 {
				w.WriteByte(',')
			}
			if _, err := w.Write(page); err != nil {
				return err
			}
			n += cnt
			cursor = last
			if n >= p.Limit || cursor >= end {
				break
			}
			page, cnt, last, err = ss.s.readPage(ctx, cursor, end, types, min(changesPage, p.Limit-n), page[:0])
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				ss.s.log.Warn("changes cut short by a read error: the next call gets it", "after_seq", cursor, "err", err)
				cut = true
				break
			}
		}
		// seq is where the next call should continue: the log's end, or
		// the last change sent when the limit or a read error cut the
		// answer short.
		more := cut || (n == p.Limit && cursor < end)
		next := end
		if more {
			next = cursor
		}
		fmt.Fprintf(w, `],"seq":%d,"more":%t,"database_id":`, next, more)
		writeJSONString(w, ss.s.b.DatabaseID())
		_, err := w.WriteString("}}\n")
		return err
	})
}

func writeJSONString(w *bufio.Writer, v string) {
	b, _ := json.Marshal(v)
	w.Write(b)
}

// changesPage is the most changes read in one page of a changes answer.
const changesPage = 4096

// register subscribes the connection to changes of some types, from now or
// from a since; the response goes out before the first notification.
func (ss *session) register(ctx context.Context, id []byte, req *jsonrpc2.Request) error {
	s := ss.s
	var p struct {
		Types      []string `json:"types"`
		Since      *int64   `json:"since"`
		DatabaseID string   `json:"database_id"`
	}
	if err := params(req, &p); err != nil {
		return err
	}
	types, err := distinctTypes(req.Method, p.Types)
	if err != nil {
		return err
	}
	if ss.subCount() >= s.o.MaxSubscriptions {
		return errorf(CodeLimit, "register: this connection has %d subscriptions, the most allowed (max_subscriptions): unregister one or open another connection", s.o.MaxSubscriptions)
	}
	since := int64(-1)
	if p.Since != nil {
		if err := ss.checkDatabase("register", p.DatabaseID); err != nil {
			return err
		}
		if *p.Since < 0 {
			return errorf(codeInvalidParams, "register: since must be >= 0")
		}
		since = *p.Since
		if _, err := s.b.Changes(ctx, since, nil, 1, func(int64, []byte) error { return nil }); err != nil {
			if errors.Is(err, ErrResyncNeeded) {
				s.resyncs.refused.Add(1)
				return errorf(CodeResyncNeeded, "%v", err)
			}
			return errorf(codeInternal, "%v", err)
		}
	}
	// The subscription keeps the types it asked for; which of them are
	// active is decided at each delivery, so a reload that changes
	// active_entity_types applies to existing subscribers too.
	sub := newSubscriber(s.newID(), ss, types)
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
		return errorf(codeInternal, "connection closed")
	}
	ss.subs[sub.id] = sub
	ss.mu.Unlock()
	// The subscriber's goroutine starts once the response is written.
	if err := ss.reply(id, map[string]any{"subscription": sub.id, "seq": join, "database_id": s.b.DatabaseID()}); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sub.run(ctx, since, join)
	}()
	return nil
}

func (ss *session) unregister(_ context.Context, req *jsonrpc2.Request) (any, error) {
	s := ss.s
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
}

func (ss *session) status(ctx context.Context, _ *jsonrpc2.Request) (any, error) {
	st, err := ss.s.b.Status(ctx)
	if err != nil {
		return nil, errorf(codeInternal, "status: %v", err)
	}
	return st, nil
}

func (ss *session) collect(ctx context.Context, req *jsonrpc2.Request) (any, error) {
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
	res, err := ss.s.b.Collect(ctx, p.Name, p.Force)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(CodeNotFound, "collect: %v", err)
	}
	if err != nil {
		return nil, errorf(codeInternal, "collect %s: %v", p.Name, err)
	}
	return res, nil
}
