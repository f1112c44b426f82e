package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// corruptChanges writes n changes into a new database at p, closes it, and
// overwrites some of the change log's leaf pages in the middle with
// garbage, as dd would.
func corruptChanges(t *testing.T, p string, n int64) {
	t.Helper()
	s := openAt(t, p, Options{})
	var rs []Row
	pad := strings.Repeat("x", 400)
	for _, r := range rows(1, n, time.Now()) {
		r.Entity = []byte(fmt.Sprintf(`{"key":%q,"pad":%q}`, r.Key, pad))
		rs = append(rs, r)
	}
	must(t, s.Commit(context.Background(), rs, nil))
	must(t, s.Close())
	pages := leafPages(t, p, "changes")
	if len(pages) < 10 {
		t.Fatalf("only %d leaf pages", len(pages))
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	garbage := []byte(strings.Repeat("\xde\xad\xbe\xef", 1024))
	for _, no := range pages[len(pages)/2 : len(pages)/2+3] {
		if _, err := f.WriteAt(garbage, (no-1)*4096); err != nil {
			t.Fatal(err)
		}
	}
}

// leafPages returns the numbers of the leaf pages of table in the closed
// database at p, in order (SQLite's dbstat table).
func leafPages(t *testing.T, p, table string) []int64 {
	t.Helper()
	db, err := sql.Open("sqlite", p)
	must(t, err)
	defer db.Close()
	rows, err := db.Query(`SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno`, table)
	if err != nil {
		t.Fatalf("dbstat: %v", err)
	}
	defer rows.Close()
	var pages []int64
	for rows.Next() {
		var no int64
		must(t, rows.Scan(&no))
		pages = append(pages, no)
	}
	must(t, rows.Err())
	return pages
}

// TestCorruptionIsFoundAndReported: a database whose change log pages were
// overwritten opens (the pages the start-up reads are sound), but
// quick_check and any read of the damaged pages put the store in the
// failing state, with the way out in the message.
func TestCorruptionIsFoundAndReported(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "db")
	corruptChanges(t, p, 5000)
	s := openAt(t, p, Options{})
	defer s.Close()
	if h := s.Health(); h.State != "unchecked" {
		t.Fatalf("before any check: %+v", h)
	}
	// A read of the damaged range fails, and says so.
	_, err := s.Changes(ctx, 0, nil, 0, func(LogRow) error { return nil })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "move the database file") {
		t.Fatalf("Changes over corrupt pages: %v", err)
	}
	if !s.Failing() {
		t.Fatal("a corrupt read did not mark the store failing")
	}

	s.Close()
	s = openAt(t, p, Options{})
	err = s.QuickCheck(ctx)
	if err == nil || !strings.Contains(err.Error(), "quick_check") {
		t.Fatalf("quick_check: %v", err)
	}
	h := s.Health()
	if h.State != "failing" || !strings.Contains(h.Message, "new database id") || h.Checks != 1 {
		t.Fatalf("health: %+v", h)
	}
}

func TestQuickCheckOfASoundDatabase(t *testing.T) {
	s := openTemp(t, Options{})
	must(t, s.Commit(context.Background(), rows(1, 100, time.Now()), nil))
	must(t, s.QuickCheck(context.Background()))
	if h := s.Health(); h.State != "ok" || h.Checks != 1 || h.Message != "" {
		t.Fatalf("health: %+v", h)
	}
}

// A file whose schema page is damaged cannot be opened at all: Open says
// it is corrupt and what to do, rather than a bare SQLite error.
func TestOpenCorruptSchemaSaysTheWayOut(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	s := openAt(t, p, Options{})
	must(t, s.Commit(context.Background(), rows(1, 10, time.Now()), nil))
	must(t, s.Close())
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	// Page 1 past the 100-byte file header: the b-tree of sqlite_master.
	_, err = f.WriteAt([]byte(strings.Repeat("\xa5", 3000)), 100)
	must(t, err)
	must(t, f.Close())
	_, err = Open(p, schema(t), Options{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), WayOut) {
		t.Fatalf("Open of a damaged schema page: %v; want ErrCorrupt with the way out", err)
	}
}
