package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// maxSocketPath is the longest path a Unix socket address holds on Linux:
// sun_path has 108 bytes, one of them the terminating NUL.
const maxSocketPath = 107

// checkPaths reports, before anything is opened, the filesystem problems
// that would stop serve, each with what to do about it; the errors the
// kernel gives for them ("invalid argument", "not a directory", "readonly
// database") do not say.
func checkPaths(socket, database string) error {
	var errs []error
	if n := len(socket); n > maxSocketPath {
		errs = append(errs, fmt.Errorf("socket %s: the path is %d bytes, over the %d-byte limit of a Unix socket address: choose a shorter one (for instance /run/synchronizer/synchronizer.sock)",
			socket, n, maxSocketPath))
	}
	if err := checkParent(socket, "the socket"); err != nil {
		errs = append(errs, fmt.Errorf("socket %s: %w", socket, err))
	}
	if err := checkParent(database, fmt.Sprintf("%[1]s-wal, %[1]s-shm and %[1]s.lock", filepath.Base(database))); err != nil {
		errs = append(errs, fmt.Errorf("database %s: %w", database, err))
	} else {
		for _, p := range []string{database, database + "-wal", database + "-shm"} {
			if _, err := os.Stat(p); err == nil && syscall.Access(p, 2|4) != nil {
				errs = append(errs, fmt.Errorf("database %s: %s is not writable by uid %d: give it to the user the synchronizer runs as (chown)",
					database, p, os.Geteuid()))
			}
		}
	}
	return errors.Join(errs...)
}

// checkParent finds the nearest existing directory above path: it must be a
// directory that this user may write (to create the missing ones and the
// files named by what).
func checkParent(path, what string) error {
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s is not a directory: remove it or choose another path", dir)
		case err == nil:
			// W_OK|X_OK: create entries in it.
			if syscall.Access(dir, 2|1) != nil {
				return fmt.Errorf("directory %s is not writable by uid %d, and the synchronizer creates %s there: make it writable by that user (chown or chmod), or choose another directory",
					dir, os.Geteuid(), what)
			}
			return nil
		case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			parent := filepath.Dir(dir)
			if parent == dir {
				return nil
			}
			dir = parent
		default:
			return err
		}
	}
}
