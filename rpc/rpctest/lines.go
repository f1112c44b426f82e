// Package rpctest speaks to the synchronizer's socket line by line, as a
// client in another language would: for the tests that send what the Go
// client never does (bad or partial lines, requests past a limit) or read
// the answers as they come.
package rpctest

import (
	"bufio"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

// Lines is a connection to the socket, written and read by the line.
type Lines struct {
	Conn net.Conn
	R    *bufio.Reader // reads Conn, buffered: read through it
}

// Dial connects to the socket at path; the connection closes when the test
// ends.
func Dial(t testing.TB, path string) *Lines {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Lines{Conn: c, R: bufio.NewReaderSize(c, 1<<20)}
}

// Send writes line and a newline, in 20 s at most.
func (l *Lines) Send(t testing.TB, line string) {
	t.Helper()
	l.Conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if _, err := l.Conn.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
}

// Line returns the next line without its newline, or what was read with
// the error at the end of the connection; it waits 10 s at most.
func (l *Lines) Line(t testing.TB) (string, error) {
	t.Helper()
	l.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := l.R.ReadString('\n')
	return strings.TrimRight(s, "\n"), err
}

// Msg reads the next line as a JSON object; t fails at the end of the
// connection or on anything else.
func (l *Lines) Msg(t testing.TB) map[string]any {
	t.Helper()
	s, err := l.Line(t)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %q", s)
	}
	return m
}

// Call sends line and reads the next message.
func (l *Lines) Call(t testing.TB, line string) map[string]any {
	t.Helper()
	l.Send(t, line)
	return l.Msg(t)
}

// Code is the error code of a message, 0 for none.
func Code(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	if e == nil {
		return 0
	}
	return int(e["code"].(float64))
}
