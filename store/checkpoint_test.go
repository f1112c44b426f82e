package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The writer never checkpoints (wal_autocheckpoint is off); the background
// checkpointer keeps the WAL from growing without bound while commits go
// on, with a reader holding snapshots in between, and the database file
// holds every committed row once the store is closed.
func TestBackgroundCheckpointBoundsWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s := openAt(t, path, Options{Synchronous: "normal"})
	var auto int
	if err := s.w.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("writer wal_autocheckpoint = %d, %v; want 0", auto, err)
	}
	big := strings.Repeat("x", 4000)
	const batches, per = 400, 25 // 10,000 rows of 4 KB: 80 MB written to the WAL
	seq := int64(0)
	var maxWAL int64
	for b := 0; b < batches; b++ {
		rs := rows(seq+1, seq+per, time.Now())
		for i := range rs {
			rs[i].Entity = []byte(`{"key":"` + rs[i].Key + `","pad":"` + big + `"}`)
		}
		seq += per
		if err := s.Commit(ctx, rs, nil); err != nil {
			t.Fatal(err)
		}
		if b%50 == 0 {
			if _, err := s.Entity(ctx, "t:1"); err != nil {
				t.Fatal(err)
			}
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			maxWAL = max(maxWAL, fi.Size())
		}
	}
	w := s.WALStats()
	runs := w.Checkpoints
	if runs == 0 || w.LastError != "" {
		t.Fatalf("no background checkpoint ran, or it failed: %+v", w)
	}
	// 160 MB went through the WAL (entities and change log); checkpoints
	// that keep up and restart it keep it well below that (restartFrames is
	// 16 MB; 20-40 MB seen at this bulk rate; the bound is the size SQLite
	// truncates the file back to).
	if maxWAL > walLimit {
		t.Fatalf("WAL grew to %d bytes over %d checkpoints", maxWAL, runs)
	}
	t.Logf("%d checkpoints, WAL at most %.1f MB", runs, float64(maxWAL)/(1<<20))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
		t.Fatalf("WAL left after close: %v", err)
	}
	s = openAt(t, path, Options{})
	defer s.Close()
	if n, err := s.CountBaseline(ctx); err != nil || n != batches*per {
		t.Fatalf("baseline after reopen: %d, %v", n, err)
	}
}

// A reader holding an old snapshot (an open transaction in an operator's
// sqlite3 shell) keeps the WAL from restarting: status says so, the
// checkpointer backs off instead of running at every commit, and once the
// reader is done the WAL restarts.
func TestReaderHoldingTheWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	s := openAt(t, path, Options{Synchronous: "normal"})
	defer s.Close()
	if err := s.Commit(ctx, rows(1, 1, time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	shell, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer shell.Close()
	tx, err := shell.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM baseline`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 4000)
	seq := int64(1)
	commit := func(batches int) {
		for b := 0; b < batches; b++ {
			rs := rows(seq+1, seq+25, time.Now())
			for i := range rs {
				rs[i].Entity = []byte(`{"key":"` + rs[i].Key + `","pad":"` + big + `"}`)
			}
			seq += 25
			if err := s.Commit(ctx, rs, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	const held = 300 // 60 MB through the WAL while the reader holds it
	commit(held)
	time.Sleep(2 * checkpointEvery)
	commit(1)
	w := s.WALStats()
	if !w.ReaderHolds {
		t.Fatalf("status does not say a reader holds the WAL: %+v", w)
	}
	if w.Checkpoints >= held {
		t.Fatalf("%d checkpoints for %d commits: the checkpointer does not back off", w.Checkpoints, held)
	}
	tx.Rollback()
	waitUntil := time.Now().Add(10 * time.Second)
	for s.WALStats().ReaderHolds || s.WALStats().Frames > restartFrames {
		if time.Now().After(waitUntil) {
			t.Fatalf("the WAL did not restart after the reader was done: %+v", s.WALStats())
		}
		commit(1)
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d checkpoints for %d commits while held; after: %+v", w.Checkpoints, held, s.WALStats())
}
