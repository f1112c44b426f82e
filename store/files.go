package store

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// FileMode is the mode the database, its -wal and -shm, the lock file and
// the seq mark are created with: the database holds every entity the
// sources listed, so nobody but the synchronizer's user reads it unless the
// operator widens socket_mode (Options.MaxMode) and the files themselves.
const FileMode os.FileMode = 0o600

// createDBFile makes sure the database file exists before SQLite opens it,
// with FileMode set explicitly (independent of the umask). SQLite creates
// -wal and -shm with the mode of the database file, so they follow.
// Existing files (the database, -wal, -shm) that grant more than maxMode are
// narrowed to it: a database written by a version that created it 0644 must
// not stay readable by everyone.
func createDBFile(path string, maxMode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, FileMode)
	switch {
	case err == nil:
		err = f.Chmod(FileMode)
		f.Close()
		if err != nil {
			return fmt.Errorf("store: %s: %w", path, err)
		}
	case errors.Is(err, os.ErrExist):
	default:
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := narrowMode(p, maxMode); err != nil {
			return err
		}
	}
	return nil
}

// narrowMode removes the permission bits of path that maxMode does not
// grant. A missing file is fine; a symlink is left alone (SQLite follows
// it; the operator chose its target).
func narrowMode(path string, maxMode os.FileMode) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&^maxMode != 0 {
		if err := os.Chmod(path, perm&maxMode); err != nil {
			return fmt.Errorf("store: narrow the mode of %s from %#o: %w", path, perm, err)
		}
	}
	return nil
}

// pidLine is what a lock file of ours holds: our pid, or nothing when the
// process died between creating the file and writing it.
var pidLine = regexp.MustCompile(`^([0-9]{1,10}\n?)?$`)

// ErrNotLockFile is returned by Open when the lock file's path is taken by
// something that is not a synchronizer lock file: a symlink, a directory, a
// file with other contents or other links.
var ErrNotLockFile = errors.New("not a synchronizer lock file")

// acquireLock takes an exclusive flock on path and writes our pid into it so
// that the refusal message can name the holder. The kernel drops the lock
// when the process dies, so a kill -9 leaves no stale lock behind.
//
// The path is in a directory others may write to (the database's), so the
// file is never followed through a symlink (O_NOFOLLOW) and is truncated
// only once we hold the lock and know the file is ours: it is a regular
// file with one link, owned by us, holding nothing but a pid. A file that
// is not is refused with ErrNotLockFile rather than overwritten.
func acquireLock(path string) (*os.File, error) {
	const flags = os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_CLOEXEC | syscall.O_NONBLOCK
	f, err := os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, FileMode)
	created := err == nil
	if errors.Is(err, os.ErrExist) {
		f, err = os.OpenFile(path, flags, 0)
	}
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("store: lock %s: %w: it is a symlink, which is never followed; remove it", path, ErrNotLockFile)
		}
		if errors.Is(err, syscall.EISDIR) {
			return nil, fmt.Errorf("store: lock %s: %w: it is a directory; remove it", path, ErrNotLockFile)
		}
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	if created {
		if err := f.Chmod(FileMode); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: lock %s: %w", path, err)
		}
	} else if err := checkLockFile(f, path); err != nil {
		f.Close()
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 16)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		holder := strings.TrimSpace(string(b[:n]))
		if holder == "" {
			holder = "unknown"
		}
		return nil, fmt.Errorf("store: %s: %w (pid %s holds %s)", strings.TrimSuffix(path, ".lock"), ErrLocked, holder, path)
	}
	// Under the lock: the file is ours to rewrite.
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	return f, nil
}

// checkLockFile refuses an existing lock file that a synchronizer did not
// leave behind.
func checkLockFile(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: lock %s: %w", path, err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("store: lock %s: %w: it is a %s; remove it", path, ErrNotLockFile, fi.Mode().Type())
	case st != nil && st.Nlink != 1:
		return fmt.Errorf("store: lock %s: %w: it has %d hard links; remove it", path, ErrNotLockFile, st.Nlink)
	case st != nil && int(st.Uid) != os.Getuid():
		return fmt.Errorf("store: lock %s: %w: it belongs to uid %d, not to us (uid %d); remove it", path, ErrNotLockFile, st.Uid, os.Getuid())
	case fi.Size() > 16:
		return fmt.Errorf("store: lock %s: %w: it holds %d bytes, not a pid; move it away", path, ErrNotLockFile, fi.Size())
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && fi.Size() > 0 {
		return fmt.Errorf("store: lock %s: %w", path, err)
	}
	if !pidLine.Match(b) {
		return fmt.Errorf("store: lock %s: %w: it holds %q, not a pid; move it away", path, ErrNotLockFile, b)
	}
	if fi.Mode().Perm()&^FileMode != 0 {
		if err := f.Chmod(FileMode); err != nil {
			return fmt.Errorf("store: lock %s: %w", path, err)
		}
	}
	return nil
}
