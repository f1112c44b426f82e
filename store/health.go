package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// A database corrupted outside the pages the start-up reads (the change
// log, an entity) would otherwise go unnoticed until a client's read hits
// it. PRAGMA quick_check at start and periodically, and any read that
// fails with SQLITE_CORRUPT or SQLITE_NOTADB, put the store in the failing
// state, which status and metrics show with the way out.

// WayOut is what an operator does about a corrupt database.
const WayOut = "stop the synchronizer, move the database file (and its -wal, -shm and .seq) aside, start it: " +
	"it rebuilds the baseline from the sources, with a new database id, and clients resync"

// ErrCorrupt wraps every error of a read that hit corruption.
var ErrCorrupt = errors.New("database corrupt")

type health struct {
	mu        sync.Mutex
	failing   string // why; "" when sound
	checks    int64
	lastCheck time.Time
	lastDur   time.Duration
}

// Health is the store's verdict on its file.
type Health struct {
	// State is "ok", "failing" or "unchecked" (no quick_check finished yet).
	State string `json:"state"`
	// Message says what is wrong and the way out; empty when ok.
	Message string `json:"message,omitempty"`
	// Checks counts finished quick_checks; LastCheck and LastCheckMS are
	// when the last one finished and how long it took.
	Checks      int64     `json:"checks"`
	LastCheck   time.Time `json:"last_check,omitempty"`
	LastCheckMS int64     `json:"last_check_ms"`
}

// Health returns the store's state.
func (s *Store) Health() Health {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Health{State: "ok", Checks: h.checks, LastCheck: h.lastCheck, LastCheckMS: h.lastDur.Milliseconds()}
	switch {
	case h.failing != "":
		out.State, out.Message = "failing", h.failing+": "+WayOut
	case h.checks == 0:
		out.State = "unchecked"
	}
	return out
}

// Failing reports whether the store found corruption.
func (s *Store) Failing() bool {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return s.health.failing != ""
}

func (s *Store) setFailing(why string) {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing == "" {
		h.failing = why
	}
}

// isCorrupt reports whether err is SQLite saying the file is damaged.
func isCorrupt(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}

// noteErr marks the store failing when err shows corruption, and says so in
// the error.
func (s *Store) noteErr(err error) error {
	if err == nil || !isCorrupt(err) {
		return err
	}
	s.setFailing(fmt.Sprintf("%v: %v", ErrCorrupt, err))
	return fmt.Errorf("%w: %w: %s", ErrCorrupt, err, WayOut)
}

// QuickCheck runs PRAGMA quick_check (the b-tree structure, without
// matching indexes to their tables: O(n), where integrity_check is O(n log
// n)) and marks the store failing when it finds anything. It reads through
// one reader connection and holds its snapshot for the check's duration.
//
// It has a connection of its own: on a million entities it takes tens of
// seconds, which must not take one of the readers that serve clients.
func (s *Store) QuickCheck(ctx context.Context) error {
	t0 := time.Now()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+s.path+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("store: quick_check: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, `PRAGMA quick_check(20)`)
	if err != nil {
		return s.quickCheckDone(t0, err, nil)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return s.quickCheckDone(t0, err, nil)
		}
		msgs = append(msgs, m)
	}
	return s.quickCheckDone(t0, rows.Err(), msgs)
}

func (s *Store) quickCheckDone(t0 time.Time, err error, msgs []string) error {
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("store: quick_check: %w", err)
	}
	h := &s.health
	h.mu.Lock()
	h.checks++
	h.lastCheck = time.Now().UTC()
	h.lastDur = time.Since(t0)
	h.mu.Unlock()
	if err != nil && !isCorrupt(err) {
		return fmt.Errorf("store: quick_check: %w", err)
	}
	if err == nil && len(msgs) == 1 && msgs[0] == "ok" {
		return nil
	}
	if err != nil {
		msgs = append(msgs, err.Error())
	}
	why := fmt.Sprintf("%v: quick_check: %s", ErrCorrupt, strings.Join(msgs, "; "))
	s.setFailing(why)
	return fmt.Errorf("store: %w: quick_check: %s: %s", ErrCorrupt, strings.Join(msgs, "; "), WayOut)
}
