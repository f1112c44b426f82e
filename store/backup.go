package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// BackupInfo describes a backup written or a database restored.
type BackupInfo struct {
	Path          string `json:"path"`
	Bytes         int64  `json:"bytes"`
	Entities      int64  `json:"entities"`
	LastSeq       int64  `json:"last_seq"`
	SchemaVersion int    `json:"schema_version"`
	// Integrity is PRAGMA integrity_check's verdict on the written file.
	Integrity string        `json:"integrity"`
	Duration  time.Duration `json:"-"`
}

// Backup writes a consistent copy of the database at src to dst while a
// synchronizer may be writing it: VACUUM INTO reads in one transaction, so
// the copy is the database as of one commit, and in WAL mode that read
// neither blocks the writer nor waits for it. It runs in the caller's
// process on a read-only connection, so the file belongs to the user who
// asked for it, wherever that user may write (see docs/operations.md). The
// copy is written beside dst with mode 0600, checked with PRAGMA
// integrity_check, synced, and only then linked to dst, which must not
// exist: link(2) refuses to replace a file, so a backup never overwrites
// anything, not even one that appears meanwhile.
func Backup(ctx context.Context, src, dst string) (BackupInfo, error) {
	start := time.Now()
	if _, err := os.Stat(src); err != nil {
		return BackupInfo{}, fmt.Errorf("backup: database: %w (is --database, or the config's database, right?)", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return BackupInfo{}, fmt.Errorf("backup: %s exists: refusing to overwrite it (choose a new name, or remove it first)", dst)
	}
	tmp, err := createExclusive(dst)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp)
	db, err := openReadOnly(src)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	// VACUUM INTO accepts an existing empty file, which keeps the 0600
	// mode createExclusive gave it.
	_, err = db.ExecContext(ctx, `VACUUM INTO ?`, tmp)
	db.Close()
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup: copy %s: %w", src, err)
	}
	info, err := inspect(ctx, tmp)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	if info.Integrity != "ok" {
		return BackupInfo{}, fmt.Errorf("backup: the copy fails its integrity check: %s", info.Integrity)
	}
	if err := syncFile(tmp); err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	if err := os.Link(tmp, dst); err != nil {
		if errors.Is(err, os.ErrExist) {
			return BackupInfo{}, fmt.Errorf("backup: %s exists: refusing to overwrite it", dst)
		}
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	fi, _ := os.Stat(dst)
	info.Path, info.Bytes, info.Duration = dst, fi.Size(), time.Since(start)
	return info, nil
}

// RestoreInfo says what Restore did.
type RestoreInfo struct {
	BackupInfo
	// Floor is the seq the restored database continues after: every seq a
	// consumer may have seen is at or below it.
	Floor int64 `json:"floor"`
	// Replaced is where the replaced database was moved ("" when there was
	// none); ReplacedLastSeq its last seq (-1 when it could not be read).
	Replaced        string `json:"replaced,omitempty"`
	ReplacedLastSeq int64  `json:"replaced_last_seq"`
}

// unknownSeqJump is how far seqs jump when the replaced database cannot be
// read (lost with its disk, or corrupt): no consumer is expected to have
// seen 4 billion changes past the backup (at a million changes a day, 11
// years of them).
const unknownSeqJump = 1 << 32

// Restore replaces the database at path with the backup, while no
// synchronizer runs on it (the lock is held throughout, so one that starts
// meanwhile waits or fails). The backup must pass PRAGMA integrity_check
// and not be of a newer schema. Seqs must never be handed out twice: a
// consumer that saw seqs up to N from the replaced database and reconnects
// with since=N must be told to resynchronize, not be given whatever the
// restored database numbers N+1. So the restored database's change log is
// emptied and marked pruned through one past the replaced database's last
// seq (or, when that cannot be read, through the backup's plus
// unknownSeqJump): every since a consumer holds is then below the log and
// gets -32001 (resync). The replaced database, with its -wal and -shm, is
// moved aside to path.replaced-TIMESTAMP rather than deleted; a stale -wal
// left beside the new file would otherwise be applied to it.
func Restore(ctx context.Context, path, backup string) (RestoreInfo, error) {
	var ri RestoreInfo
	start := time.Now()
	binfo, err := inspect(ctx, backup)
	if err != nil {
		return ri, fmt.Errorf("restore: backup: %w", err)
	}
	if binfo.Integrity != "ok" {
		return ri, fmt.Errorf("restore: %s fails its integrity check: %s", backup, binfo.Integrity)
	}
	if binfo.SchemaVersion > SchemaVersion {
		return ri, fmt.Errorf("restore: %s: %w (schema version %d, this binary knows %d)", backup, ErrNewerSchema, binfo.SchemaVersion, SchemaVersion)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	lock, err := acquireLock(path + ".lock")
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return ri, fmt.Errorf("restore: %w: stop the synchronizer first", err)
		}
		return ri, fmt.Errorf("restore: %w", err)
	}
	defer lock.Close()

	ri.ReplacedLastSeq = -1
	owner, haveOld := fileOwner(path)
	if haveOld {
		if cur, err := inspect(ctx, path); err == nil {
			ri.ReplacedLastSeq = cur.LastSeq
		}
	} else {
		owner, _ = fileOwner(filepath.Dir(path))
	}
	if ri.ReplacedLastSeq >= 0 {
		ri.Floor = max(ri.ReplacedLastSeq, binfo.LastSeq) + 1
	} else {
		// No readable database to replace: a new machine, a lost disk or
		// a corrupt file.
		ri.Floor = binfo.LastSeq + unknownSeqJump
	}

	tmp, err := createExclusive(path)
	if err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp)
	if err := copyInto(backup, tmp); err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	if err := resetLog(ctx, tmp, ri.Floor); err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	info, err := inspect(ctx, tmp)
	if err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	if info.Integrity != "ok" {
		return ri, fmt.Errorf("restore: the restored copy fails its integrity check: %s", info.Integrity)
	}
	if err := syncFile(tmp); err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	// The file must be the service's, not root's, when root restores.
	if owner.ok && os.Geteuid() == 0 {
		os.Chown(tmp, owner.uid, owner.gid)
	}
	if haveOld {
		ri.Replaced = path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		for _, suffix := range []string{"-wal", "-shm", ""} {
			if err := os.Rename(path+suffix, ri.Replaced+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return ri, fmt.Errorf("restore: move the replaced database aside: %w", err)
			}
		}
	} else {
		for _, suffix := range []string{"-wal", "-shm"} {
			os.Remove(path + suffix)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return ri, fmt.Errorf("restore: %w", err)
	}
	fi, _ := os.Stat(path)
	ri.BackupInfo = info
	ri.Path, ri.Bytes, ri.Duration = path, fi.Size(), time.Since(start)
	return ri, nil
}

// resetLog empties the change log of a restored copy and records that seqs
// continue after floor.
func resetLog(ctx context.Context, path string, floor int64) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	f := strconv.FormatInt(floor, 10)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM changes`, nil},
		{`INSERT INTO meta(key, value) VALUES ('last_seq', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, []any{f}},
		{`INSERT INTO meta(key, value) VALUES ('pruned_through', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, []any{f}},
		{`INSERT INTO meta(key, value) VALUES ('restored_at', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
			[]any{time.Now().UTC().Format(time.RFC3339)}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("reset the change log: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("reset the change log: %w", err)
	}
	// Leave a single file: no -wal for the rename to leave behind.
	if _, err := db.ExecContext(ctx, `PRAGMA journal_mode=DELETE`); err != nil {
		return fmt.Errorf("reset the change log: %w", err)
	}
	return nil
}

// inspect opens a database file read-only and reads what a backup report
// needs, with PRAGMA integrity_check's verdict.
func inspect(ctx context.Context, path string) (BackupInfo, error) {
	info := BackupInfo{Path: path}
	if _, err := os.Stat(path); err != nil {
		return info, err
	}
	db, err := openReadOnly(path)
	if err != nil {
		return info, fmt.Errorf("not a sound SQLite database: %w", err)
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&info.Integrity); err != nil {
		return info, fmt.Errorf("%s: not a sound SQLite database: %w", path, err)
	}
	if info.Integrity != "ok" {
		return info, nil
	}
	var v string
	if err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil {
		return info, fmt.Errorf("%s: not a synchronizer database (no schema_version): %w", path, err)
	}
	if info.SchemaVersion, err = strconv.Atoi(v); err != nil {
		return info, fmt.Errorf("%s: schema version %q is not a number", path, v)
	}
	if info.LastSeq, _, err = logBounds(ctx, db); err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM entities`).Scan(&info.Entities); err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// openReadOnly opens a database without writing it: in WAL mode a reader
// still maps the -shm file, so the caller needs to be its owner (or root).
func openReadOnly(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Set("mode", "ro")
	// Not query_only: it refuses VACUUM INTO, which writes only the copy.
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// createExclusive creates an empty 0600 file beside path for the result to
// be written into, and returns its name.
func createExclusive(path string) (string, error) {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	return tmp, f.Close()
}

func copyInto(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

type owner struct {
	uid, gid int
	ok       bool
}

func fileOwner(path string) (owner, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return owner{}, false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return owner{int(st.Uid), int(st.Gid), true}, true
	}
	return owner{}, true
}
