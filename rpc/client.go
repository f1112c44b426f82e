package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// Error is a JSON-RPC error returned by the server.
type Error struct {
	Code    int64  `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s (code %d)", e.Message, e.Code) }

// Notification is a server notification: "change", "resync" or "shutdown".
type Notification struct {
	Method string
	Params json.RawMessage
	// Change holds the params of a "change" notification, already split
	// into changes (nil for other methods).
	Change *ChangeParams
}

// ChangeParams are the params of a "change" notification. Changes are left
// as raw JSON: decode only what you need.
type ChangeParams struct {
	Subscription string            `json:"subscription"`
	Changes      []json.RawMessage `json:"changes"`
}

// Position is where a consumer is in the change stream. A seq means
// something only in the database it came from, so the two travel together:
// resuming with the id makes the server answer a since from another
// database, or one whose changes were lost, with CodeResyncNeeded instead of
// silently skipping changes.
type Position struct {
	DatabaseID string `json:"database_id"`
	Seq        int64  `json:"seq"`
}

// Params adds since and database_id (when known) to the params of
// register or changes.
func (p Position) Params(params map[string]any) map[string]any {
	if params == nil {
		params = map[string]any{}
	}
	params["since"] = p.Seq
	if p.DatabaseID != "" {
		params["database_id"] = p.DatabaseID
	}
	return params
}

// RegisterResult is the result of register.
type RegisterResult struct {
	Subscription string `json:"subscription"`
	Seq          int64  `json:"seq"`
	DatabaseID   string `json:"database_id"`
}

// Position is where the subscription starts when it was made without since.
func (r RegisterResult) Position() Position { return Position{DatabaseID: r.DatabaseID, Seq: r.Seq} }

// Client is a connection to the synchronizer's socket. Calls may be made
// from several goroutines; notifications go to the channel from
// Notifications, which the caller must keep reading while subscribed.
type Client struct {
	conn net.Conn
	wmu  sync.Mutex
	w    *bufio.Writer

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan response
	err     error
	notify  chan Notification
	done    chan struct{}
}

type response struct {
	Result json.RawMessage
	Error  *Error
}

// Dial connects to the socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to synchronizer at %s: %w", path, err)
	}
	cl := &Client{
		conn:    c,
		w:       bufio.NewWriter(c),
		pending: map[int64]chan response{},
		notify:  make(chan Notification, 64),
		done:    make(chan struct{}),
	}
	go cl.read()
	return cl, nil
}

// Notifications returns the channel of server notifications. It is closed
// when the connection ends.
func (c *Client) Notifications() <-chan Notification { return c.notify }

// Done is closed when the connection ends; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (nil while it is up).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) read() {
	r := bufio.NewReaderSize(c.conn, 1<<20)
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			break
		}
		if cp, ok := splitChange(line); ok {
			params := bytes.TrimRight(line, "\r\n")
			params = params[len(`{"jsonrpc":"2.0","method":"change","params":`) : len(params)-1]
			c.notify <- Notification{Method: "change", Params: json.RawMessage(params), Change: cp}
			continue
		}
		var m struct {
			ID     *int64          `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *Error          `json:"error"`
		}
		if json.Unmarshal(line, &m) != nil {
			// A get_all answer cut short (CodeGetAllCut) leaves a line
			// that is not JSON; the error for its call follows.
			continue
		}
		if m.Method != "" {
			n := Notification{Method: m.Method, Params: m.Params}
			if m.Method == "change" {
				n.Change = &ChangeParams{}
				if err = json.Unmarshal(m.Params, n.Change); err != nil {
					break
				}
			}
			c.notify <- n
			continue
		}
		if m.ID == nil {
			continue // an error about a line we could not frame
		}
		c.mu.Lock()
		ch := c.pending[*m.ID]
		delete(c.pending, *m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- response{Result: m.Result, Error: m.Error}
		}
	}
	c.conn.Close()
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.notify)
	close(c.done)
}

// Call calls method with params and decodes the result into result (which
// may be nil, or a *json.RawMessage to keep it raw). A JSON-RPC error is
// returned as *Error.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return fmt.Errorf("call %s: connection closed: %w", method, c.err)
	}
	c.nextID++
	id := c.nextID
	ch := make(chan response, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	b, err := json.Marshal(struct {
		JSONRPC string `json:"jsonrpc"`
		ID      int64  `json:"id"`
		Method  string `json:"method"`
		Params  any    `json:"params,omitempty"`
	}{"2.0", id, method, params})
	if err != nil {
		return fmt.Errorf("call %s: %w", method, err)
	}
	c.wmu.Lock()
	c.w.Write(b)
	c.w.WriteByte('\n')
	err = c.w.Flush()
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("call %s: %w", method, err)
	}
	select {
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return ctx.Err()
	case resp, ok := <-ch:
		if !ok {
			return fmt.Errorf("call %s: connection closed: %w", method, c.Err())
		}
		if resp.Error != nil {
			return resp.Error
		}
		if result == nil {
			return nil
		}
		if raw, ok := result.(*json.RawMessage); ok {
			*raw = resp.Result
			return nil
		}
		return json.Unmarshal(resp.Result, result)
	}
}

const changePrefix = `{"jsonrpc":"2.0","method":"change","params":{"subscription":"`

// splitChange reads a change notification in the exact form the server
// writes it, splitting the changes without decoding them: a subscriber's
// speed is otherwise bound by validating every byte twice. Anything else
// (another server, another layout) returns false and takes the general path.
func splitChange(line []byte) (*ChangeParams, bool) {
	if !bytes.HasPrefix(line, []byte(changePrefix)) {
		return nil, false
	}
	rest := line[len(changePrefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, false
	}
	cp := &ChangeParams{Subscription: string(rest[:end])}
	rest = rest[end:]
	if !bytes.HasPrefix(rest, []byte(`","changes":[`)) {
		return nil, false
	}
	rest = rest[len(`","changes":[`):]
	for {
		if len(rest) > 0 && rest[0] == ']' {
			rest = rest[1:]
			break
		}
		n := objectLen(rest)
		if n <= 0 {
			return nil, false
		}
		cp.Changes = append(cp.Changes, json.RawMessage(rest[:n:n]))
		rest = rest[n:]
		if len(rest) > 0 && rest[0] == ',' {
			rest = rest[1:]
		}
	}
	if !bytes.Equal(bytes.TrimRight(rest, "\r\n"), []byte("}}")) {
		return nil, false
	}
	return cp, true
}

// ChangeSeq returns a change's seq. The server writes it first
// ({"seq":N,...}), so it is read without decoding the change; anything
// else is decoded in full.
func ChangeSeq(change json.RawMessage) (int64, error) {
	const prefix = `{"seq":`
	if bytes.HasPrefix(change, []byte(prefix)) {
		rest := change[len(prefix):]
		n := 0
		for n < len(rest) && n < 19 && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n > 0 && n < len(rest) && (rest[n] == ',' || rest[n] == '}') {
			if seq, err := strconv.ParseInt(string(rest[:n]), 10, 64); err == nil {
				return seq, nil
			}
		}
	}
	var c struct {
		Seq *int64 `json:"seq"`
	}
	if err := json.Unmarshal(change, &c); err != nil {
		return 0, fmt.Errorf("change: %w", err)
	}
	if c.Seq == nil {
		return 0, errors.New("change without a seq")
	}
	return *c.Seq, nil
}

// objectLen returns the length of the JSON object at the start of b, or 0.
func objectLen(b []byte) int {
	if len(b) == 0 || b[0] != '{' {
		return 0
	}
	depth, inStr := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return 0
}
