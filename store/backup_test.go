package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRestoreFloor: the restored database's seqs continue above the
// replaced database's last seq when it can be read, and 2^32 above the
// backup's when it cannot (corrupt, or gone): no seq a consumer saw is
// handed out again, and every since is below the log.
func TestRestoreFloor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	live := filepath.Join(dir, "live.db")
	s := openAt(t, live, Options{})
	if err := s.Commit(ctx, rows(1, 10, time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	info, err := Backup(ctx, live, backup)
	if err != nil || info.LastSeq != 10 || info.Entities != 10 || info.Integrity != "ok" {
		t.Fatalf("backup: %+v, %v", info, err)
	}
	if err := s.Commit(ctx, rows(11, 25, time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for _, tc := range []struct {
		name     string
		prepare  func(path string)
		floor    int64
		replaced bool
	}{
		{"replaced database readable", func(p string) { copyFileT(t, live, p) }, 26, true},
		{"replaced database corrupt", func(p string) { os.WriteFile(p, []byte("garbage, not SQLite"), 0o600) }, 10 + unknownSeqJump, true},
		{"no database", func(string) {}, 10 + unknownSeqJump, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "db")
			tc.prepare(p)
			ri, err := Restore(ctx, p, backup)
			if err != nil {
				t.Fatal(err)
			}
			if ri.Floor != tc.floor || (ri.Replaced != "") != tc.replaced || ri.Entities != 10 {
				t.Errorf("restore: %+v, want floor %d, replaced %v", ri, tc.floor, tc.replaced)
			}
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("restored file: %v %v", fi.Mode(), err)
			}
			s := openAt(t, p, Options{})
			defer s.Close()
			last, pruned, err := s.LogBounds(ctx)
			if err != nil || last != tc.floor || pruned != tc.floor {
				t.Errorf("log bounds: last %d, pruned %d, %v; want both %d", last, pruned, err, tc.floor)
			}
			next := rows(tc.floor+1, tc.floor+1, time.Now())
			if err := s.Commit(ctx, next, nil); err != nil {
				t.Errorf("commit after the floor: %v", err)
			}
		})
	}
}

func copyFileT(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
