package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// readBufSize is each connection's read buffer. A request line longer than
// this needs a share of the server's request memory (Options.RequestMemory)
// before more of it is read: idle connections then cost little, and many
// large lines at once cannot add up without bound.
const readBufSize = 4 << 10

// writeBufSize is the buffer a connection borrows from writers while it
// writes. Idle connections hold none.
const writeBufSize = 64 << 10

var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}

// lineStream is one connection's codec: one JSON object per line. It bounds
// line length, and every write (responses, notifications) goes through one
// lock so that lines never interleave.
type lineStream struct {
	conn    net.Conn
	r       *bufio.Reader
	maxLine int
	timeout time.Duration

	wmu    sync.Mutex
	closed bool // a final line was written: nothing may follow it
}

func newLineStream(c net.Conn, maxLine int, writeTimeout time.Duration) *lineStream {
	return &lineStream{
		conn:    c,
		r:       bufio.NewReaderSize(c, readBufSize),
		maxLine: maxLine,
		timeout: writeTimeout,
	}
}

// deadlineWriter gives every write to the socket a fresh deadline, so a
// peer that stops reading is dropped after the write timeout however long
// the whole response is.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	if d.timeout > 0 {
		d.c.SetWriteDeadline(time.Now().Add(d.timeout))
	}
	return d.c.Write(p)
}

// errLineTooLong is returned by readLine for a line over maxLine bytes; the
// rest of the line has been discarded.
var errLineTooLong = errors.New("line too long")

// errStreamClosed is returned by writes after the final line.
var errStreamClosed = errors.New("connection is closing")

// readLine returns the next line without its newline. It never holds more
// than maxLine bytes of a line in memory. big is called once before a line
// outgrows the read buffer; it may wait, and its error ends the read.
func (s *lineStream) readLine(big func() error) ([]byte, error) {
	var buf []byte
	reserved := false
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
		if errors.Is(err, bufio.ErrBufferFull) && !reserved {
			if err := big(); err != nil {
				return nil, err
			}
			reserved = true
		}
		if err == nil && len(buf) == 0 {
			// The whole line is in the read buffer: no copy, valid until
			// the next read.
			return bytes.TrimRight(frag, "\r\n"), nil
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

// writeLines writes pre-encoded JSON lines (each without its newline) and
// flushes, under the write lock and the write deadline.
func (s *lineStream) writeLines(lines ...[]byte) error {
	return s.writeWith(func(w *bufio.Writer) error {
		for _, l := range lines {
			w.Write(l)
			if err := w.WriteByte('\n'); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeWith lets fn write one or more complete lines to a buffered writer
// under the write lock, then flushes. A failed write leaves the stream
// unusable: callers close the connection.
func (s *lineStream) writeWith(fn func(w *bufio.Writer) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return errStreamClosed
	}
	w := writers.Get().(*bufio.Writer)
	w.Reset(deadlineWriter{s.conn, s.timeout})
	defer func() {
		w.Reset(nil)
		writers.Put(w)
	}()
	if err := fn(w); err != nil {
		return err
	}
	return w.Flush()
}

// writeFinal writes line as the connection's last: later writes fail.
func (s *lineStream) writeFinal(line []byte) error {
	err := s.writeLines(line)
	s.wmu.Lock()
	s.closed = true
	s.wmu.Unlock()
	return err
}

// errorLine encodes an error response; id nil means null.
func errorLine(id json.RawMessage, code int64, msg string) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   wireError       `json:"error"`
	}{"2.0", id, wireError{Code: code, Message: msg}})
	return b
}

// writeError writes an error response; id nil means null.
func (s *lineStream) writeError(id json.RawMessage, code int64, msg string) {
	s.writeLines(errorLine(id, code, msg))
}

type wireError struct {
	Code    int64  `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// Close closes the connection.
func (s *lineStream) Close() error { return s.conn.Close() }

// acquire takes one token of sem, or fails when ctx ends first.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errCut ends the database side of an answer whose time is up.
var errCut = errors.New("answer cut short")

// writeDetached is writeWith for answers that read a database snapshot
// while they write: fn writes into a bounded pipe that another goroutine
// copies to the socket, so that when ctx ends (get_all_timeout) fn's
// writes fail at once and its snapshot is released, however slowly the
// peer reads. The pipe's content is still delivered, then tail (the rest
// of the line) when fn was cut; sent says whether any of fn's bytes had
// left: when none had, they are dropped and tail is the whole answer, so
// that an early failure (a damaged page) is a plain error response, never
// half a line. peerErr says whether the peer failed.
func (s *lineStream) writeDetached(ctx context.Context, fn func(w *bufio.Writer) error, tail func(fnErr error, sent bool) []byte) (peerErr, fnErr error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return errStreamClosed, nil
	}
	chunks := make(chan []byte, 4)
	failed := make(chan struct{})
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		dw := deadlineWriter{s.conn, s.timeout}
		for c := range chunks {
			if werr != nil {
				continue
			}
			if _, werr = dw.Write(c); werr != nil {
				close(failed)
			}
		}
	}()
	pw := &pipeWriter{ctx: ctx, chunks: chunks, failed: failed}
	w := writers.Get().(*bufio.Writer)
	w.Reset(pw)
	fnErr = fn(w)
	if fnErr == nil {
		fnErr = w.Flush()
	}
	w.Reset(nil) // drops what fn left buffered when it failed
	writers.Put(w)
	if fnErr != nil {
		if t := tail(fnErr, pw.sent); t != nil {
			select {
			case chunks <- t:
			case <-failed:
			}
		}
	}
	close(chunks)
	<-done
	return werr, fnErr
}

// pipeWriter hands copies of what it is given to the socket's goroutine.
type pipeWriter struct {
	ctx    context.Context
	chunks chan<- []byte
	failed <-chan struct{}
	sent   bool // a chunk was handed on
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	c := append([]byte(nil), b...)
	select {
	case p.chunks <- c:
		p.sent = true
		return len(b), nil
	case <-p.failed:
		return 0, errors.New("peer stopped reading")
	case <-p.ctx.Done():
		return 0, errCut
	}
}
