package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestLockFileIsNeverFollowedOrClobbered: the lock file's path is taken by
// something else. Open refuses with ErrNotLockFile and leaves it untouched,
// except for a lock file a synchronizer left behind, which is reused.
func TestLockFileIsNeverFollowedOrClobbered(t *testing.T) {
	const precious = "precious contents\n"
	cases := []struct {
		name  string
		setup func(t *testing.T, lock, victim string)
		ok    bool
	}{
		{"symlink to a file", func(t *testing.T, lock, victim string) { must(t, os.Symlink(victim, lock)) }, false},
		{"dangling symlink", func(t *testing.T, lock, victim string) { must(t, os.Symlink(victim+".none", lock)) }, false},
		{"hard link", func(t *testing.T, lock, victim string) { must(t, os.Link(victim, lock)) }, false},
		{"foreign file", func(t *testing.T, lock, _ string) { must(t, os.WriteFile(lock, []byte("not a pid\n"), 0o600)) }, false},
		{"directory", func(t *testing.T, lock, _ string) { must(t, os.Mkdir(lock, 0o700)) }, false},
		{"left by a dead synchronizer", func(t *testing.T, lock, _ string) { must(t, os.WriteFile(lock, []byte("999999\n"), 0o644)) }, true},
		{"empty, left by one that died before writing", func(t *testing.T, lock, _ string) { must(t, os.WriteFile(lock, nil, 0o600)) }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim")
			must(t, os.WriteFile(victim, []byte(precious), 0o600))
			p := filepath.Join(dir, "db")
			c.setup(t, p+".lock", victim)
			s, err := Open(p, schema(t), Options{})
			if b, _ := os.ReadFile(victim); string(b) != precious {
				t.Fatalf("the victim file now holds %q", b)
			}
			if !c.ok {
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded")
				}
				if !errors.Is(err, ErrNotLockFile) {
					t.Fatalf("Open: %v, want ErrNotLockFile", err)
				}
				if _, serr := os.Lstat(p); serr == nil {
					t.Fatalf("the database was created despite the refusal")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			b, _ := os.ReadFile(p + ".lock")
			if string(b) != strconv.Itoa(os.Getpid())+"\n" {
				t.Fatalf("lock holds %q, want our pid", b)
			}
			if fi, _ := os.Stat(p + ".lock"); fi.Mode().Perm() != FileMode {
				t.Fatalf("reused lock file has mode %v", fi.Mode().Perm())
			}
		})
	}
}

// TestRefusedSecondOpenKeepsThePid: a second Open that fails to take the
// lock does not touch the holder's pid (it used to truncate before
// locking).
func TestRefusedSecondOpenKeepsThePid(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	s := openAt(t, p, Options{})
	defer s.Close()
	for range 2 {
		if _, err := Open(p, schema(t), Options{}); !errors.Is(err, ErrLocked) {
			t.Fatalf("second open: %v", err)
		}
	}
	if b, _ := os.ReadFile(p + ".lock"); string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Fatalf("lock holds %q after refused opens", b)
	}
}

// TestFileModes: under umask 022 the database, -wal, -shm, lock and seq
// mark are all created 0600, and files an older version left 0644 are
// narrowed to the socket's mode.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, "db")
	s := openAt(t, p, Options{})
	must(t, s.Commit(t.Context(), rows(1, 10, time.Now()), nil))
	files := []string{p, p + "-wal", p + "-shm", p + ".lock", p + ".seq"}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
	s.Close()

	// An older version's files, 0644: narrowed to a 0660 socket's mode.
	for _, f := range []string{p, p + ".lock", p + ".seq"} {
		must(t, os.Chmod(f, 0o644))
	}
	s = openAt(t, p, Options{MaxMode: 0o660})
	defer s.Close()
	must(t, s.Commit(t.Context(), rows(11, 12, time.Now()), nil))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o007 != 0 || perm&^0o660 != 0 {
			t.Errorf("%s: mode %v after reopen, want within 0660 and nothing for others", filepath.Base(f), perm)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
