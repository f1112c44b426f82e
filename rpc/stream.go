package rpc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// lineStream is the jsonrpc2.ObjectStream of one connection: one JSON object
// per line. Unlike jsonrpc2's plain codec it bounds line length, answers a
// malformed line with a JSON-RPC error and goes on with the next line
// (jsonrpc2 ends the connection on any read error), and lets the server
// write pre-encoded notifications under the same lock as the library's
// responses so that lines never interleave.
type lineStream struct {
	conn    net.Conn
	r       *bufio.Reader
	maxLine int
	timeout time.Duration

	wmu sync.Mutex
	w   *bufio.Writer
	// sent counts the bytes handed to the socket, so that writeWith knows
	// whether a failed response left anything on the wire.
	sent int64
}

func newLineStream(c net.Conn, maxLine int, writeTimeout time.Duration) *lineStream {
	s := &lineStream{
		conn:    c,
		r:       bufio.NewReaderSize(c, 64<<10),
		maxLine: maxLine,
		timeout: writeTimeout,
	}
	s.w = bufio.NewWriterSize(s.dw(), 256<<10)
	return s
}

func (s *lineStream) dw() deadlineWriter { return deadlineWriter{s.conn, s.timeout, &s.sent} }

// deadlineWriter gives every write to the socket a fresh deadline, so a
// peer that stops reading is dropped after the write timeout however long
// the whole response is.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
	sent    *int64 // guarded by the stream's wmu
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	if d.timeout > 0 {
		d.c.SetWriteDeadline(time.Now().Add(d.timeout))
	}
	n, err := d.c.Write(p)
	*d.sent += int64(n)
	return n, err
}

// errLineTooLong is returned by readLine for a line over maxLine bytes; the
// rest of the line has been discarded.
var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline. It never holds more
// than maxLine bytes of a line in memory.
func (s *lineStream) readLine() ([]byte, error) {
	var buf []byte
	for {
		frag, err := s.r.ReadSlice('\n')
		if len(buf)+len(frag) > s.maxLine+1 {
			// Discard through the end of this line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = s.r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return nil, err
			}
			return nil, errLineTooLong
		}
		buf = append(buf, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(bytes.TrimSpace(buf)) > 0 {
				return buf, nil // last line without newline
			}
			return nil, err
		}
		return bytes.TrimRight(buf, "\r\n"), nil
	}
}

// ReadObject implements jsonrpc2.ObjectStream. Bad lines are answered here
// and skipped; only I/O errors end the connection.
func (s *lineStream) ReadObject(v any) error {
	for {
		line, err := s.readLine()
		if errors.Is(err, errLineTooLong) {
			s.writeError(nil, codeInvalidRequest, fmt.Sprintf("request line longer than %d bytes", s.maxLine))
			continue
		}
		if err != nil {
			return err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			s.writeError(nil, codeParseError, "parse error: not valid JSON")
			continue
		}
		if err := json.Unmarshal(line, v); err != nil {
			s.writeError(idOf(line), codeInvalidRequest, "invalid request: "+err.Error())
			continue
		}
		return nil
	}
}

// idOf digs the id out of a line that is JSON but not a valid message, so
// that the error can name it.
func idOf(line []byte) json.RawMessage {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(line, &m) != nil {
		return nil
	}
	return m.ID
}

// WriteObject implements jsonrpc2.ObjectStream.
func (s *lineStream) WriteObject(obj any) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return s.writeLines(b)
}

// writeLines writes pre-encoded JSON lines (each without its newline) and
// flushes, under the write lock and the write deadline.
func (s *lineStream) writeLines(lines ...[]byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(lines...)
}

func (s *lineStream) writeLocked(lines ...[]byte) error {
	for _, l := range lines {
		if _, err := s.w.Write(l); err != nil {
			return err
		}
		if err := s.w.WriteByte('\n'); err != nil {
			return err
		}
	}
	return s.w.Flush()
}

// writeWith lets fn write one or more complete lines to the buffered
// writer under the write lock, then flushes. A failed write leaves the
// stream unusable: callers close the connection.
//
// When fn fails before any byte of its lines reached the socket, the
// buffered part is dropped and the error comes back as a
// *nothingSentError: the stream is intact and the caller can answer with
// an error response instead of half a line.
func (s *lineStream) writeWith(fn func(w *bufio.Writer) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	before := s.sent
	if err := fn(s.w); err != nil {
		if s.sent == before {
			s.w.Reset(s.dw())
			return &nothingSentError{err}
		}
		return err
	}
	return s.w.Flush()
}

// nothingSentError is a failure of a response of which nothing was sent.
type nothingSentError struct{ err error }

func (e *nothingSentError) Error() string { return e.err.Error() }
func (e *nothingSentError) Unwrap() error { return e.err }

// writeError writes an error response; id nil means null.
func (s *lineStream) writeError(id json.RawMessage, code int64, msg string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   wireError       `json:"error"`
	}{"2.0", id, wireError{Code: code, Message: msg}})
	s.writeLines(b)
}

type wireError struct {
	Code    int64  `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// Close implements jsonrpc2.ObjectStream.
func (s *lineStream) Close() error { return s.conn.Close() }
