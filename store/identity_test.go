package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o600))
}

func TestDatabaseIDIsMadeOnceAndKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	s := openAt(t, p, Options{})
	id := s.DatabaseID()
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("database id %q", id)
	}
	s.Close()
	s = openAt(t, p, Options{})
	defer s.Close()
	if s.DatabaseID() != id {
		t.Fatalf("id changed across a clean reopen: %s -> %s", id, s.DatabaseID())
	}
	if s.Recovered() != nil {
		t.Fatalf("clean reopen reports a recovery: %+v", s.Recovered())
	}
	s2 := openTemp(t, Options{})
	if s2.DatabaseID() == id {
		t.Fatal("two databases share an id")
	}
}

// lostWAL leaves in dir2 what a host has after the -wal file was lost
// while the synchronizer ran: the database file as of seq 100 and the side
// file as of seq 200. mark rewrites the side file (nil: as it is).
func lostWAL(t *testing.T, mark func(string) string) (string, string) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "db")
	s := openAt(t, p, Options{})
	must(t, s.Commit(ctx, rows(1, 100, time.Now()), nil))
	id := s.DatabaseID()
	s.Close() // the last close checkpoints: the file holds 1..100
	s = openAt(t, p, Options{})
	defer s.Close()
	dir2 := t.TempDir()
	p2 := filepath.Join(dir2, "db")
	copyTo(t, p, p2)
	must(t, s.Commit(ctx, rows(101, 200, time.Now()), nil))
	copyTo(t, p+".seq", p2+".seq")
	if mark != nil {
		b, _ := os.ReadFile(p2 + ".seq")
		must(t, os.WriteFile(p2+".seq", []byte(mark(string(b))), 0o600))
	}
	return p2, id
}

func TestLostWALNeverReusesSeqs(t *testing.T) {
	ctx := context.Background()
	otherBoot := func(line string) string {
		f := strings.Fields(line)
		return strings.Join(append(f[:4], "00000000-0000-0000-0000-000000000000"), " ") + "\n"
	}
	cases := []struct {
		name    string
		mark    func(string) string
		through int64 // end of the gap
		sameID  bool
	}{
		{"process died, same boot: the exact used mark", nil, 200, true},
		{"host rebooted: the durable reserved mark", otherBoot, 200 + reserveAhead, true},
		{"side file unreadable: a new database id", func(string) string { return "garbage\n" }, 100, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p2, id := lostWAL(t, c.mark)
			s := openAt(t, p2, Options{})
			defer s.Close()
			last, _, err := s.LogBounds(ctx)
			must(t, err)
			if last != c.through {
				t.Fatalf("last seq after recovery %d, want %d", last, c.through)
			}
			if (s.DatabaseID() == id) != c.sameID {
				t.Fatalf("id %s, before %s: same id wanted %v", s.DatabaseID(), id, c.sameID)
			}
			rec := s.Recovered()
			if rec == nil {
				t.Fatal("no recovery reported")
			}
			if c.sameID {
				if rec.Gap != (Gap{After: 100, Through: c.through}) {
					t.Fatalf("gap %+v", rec.Gap)
				}
				// A client that saw a lost seq resyncs; one that saw
				// only what survived goes on.
				for since, lost := range map[int64]bool{99: false, 100: false, 101: true, 150: true, 200: true, c.through: true, c.through + 1: false} {
					if err := s.CheckSince(since); errors.Is(err, ErrSeqLost) != lost {
						t.Errorf("CheckSince(%d) = %v, lost %v", since, err, lost)
					}
				}
			} else if !rec.NewID {
				t.Fatalf("recovery %+v, want a new id", rec)
			}
			// The next change goes above every seq handed out before.
			must(t, s.Commit(ctx, rows(last+1, last+1, time.Now()), nil))
			s.Close()
			// The gap survives a restart.
			s = openAt(t, p2, Options{})
			if c.sameID && fmt.Sprint(s.Gaps()) != fmt.Sprint([]Gap{{100, c.through}}) {
				t.Fatalf("gaps after reopen: %v", s.Gaps())
			}
			if s.Recovered() != nil {
				t.Fatalf("clean reopen reports %+v", s.Recovered())
			}
		})
	}
}

// TestCleanStopLeavesNoGap: after a clean close the reserved mark is the
// last seq, so even a reboot continues without a hole.
func TestCleanStopLeavesNoGap(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "db")
	s := openAt(t, p, Options{})
	must(t, s.Commit(ctx, rows(1, 10, time.Now()), nil))
	s.Close()
	b, _ := os.ReadFile(p + ".seq")
	f := strings.Fields(string(b))
	must(t, os.WriteFile(p+".seq", []byte(strings.Join(append(f[:4], "other-boot"), " ")+"\n"), 0o600))
	s = openAt(t, p, Options{})
	defer s.Close()
	if last, _, _ := s.LogBounds(ctx); last != 10 || s.Recovered() != nil {
		t.Fatalf("last %d, recovery %+v", last, s.Recovered())
	}
}

// TestPruneByAgeAcrossAGap: pruning by age finds its cut in a log with a
// hole of skipped seqs.
func TestPruneByAgeAcrossAGap(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{})
	old := time.Now().Add(-48 * time.Hour)
	must(t, s.Commit(ctx, rows(1, 10, old), nil))
	must(t, s.Commit(ctx, rows(1000, 1010, old), nil))
	must(t, s.Commit(ctx, rows(5000, 5004, time.Now()), nil))
	n, err := s.Prune(ctx, 0, 24*time.Hour, time.Now())
	if err != nil || n != 21 {
		t.Fatalf("pruned %d, %v; want 21", n, err)
	}
	if _, pruned, _ := s.LogBounds(ctx); pruned != 1010 {
		t.Fatalf("pruned through %d, want 1010", pruned)
	}
}
