// Package store keeps the synchronizer's state in SQLite: the baseline of
// entity hashes, the latest entities and the change log. It only stores and
// reads; deciding what changed is the engine's job.
//
// One process writes (a lock file refuses a second synchronizer on the same
// database); readers use their own connections and, thanks to WAL, never
// block the writer or each other, including an operator's sqlite3 shell.
//
// Files (files.go): the lock file is never followed through a symlink nor
// truncated unless it is ours and locked; the database, -wal, -shm, lock
// and seq mark are created FileMode (0600) whatever the umask.
//
// Identity (identity.go): a random database id made at creation, and the
// highest seq handed out kept outside the WAL, so that seqs never go
// backwards after lost commits and a client that saw lost changes is told
// to resync.
//
// Health (health.go): PRAGMA quick_check, and any read that meets a damaged
// page, put the store in a failing state that says the way out.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SchemaVersion is the version of schema.sql this code reads and writes.
const SchemaVersion = 1

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("database is in use by another synchronizer")

// ErrNewerSchema is returned by Open for a database written by a newer
// version of the synchronizer.
var ErrNewerSchema = errors.New("database was written by a newer synchronizer")

// Options tune how the database is opened.
type Options struct {
	// Synchronous is the SQLite synchronous level: "full" (default, a
	// committed change survives power loss) or "normal" (survives a crash of
	// the process only).
	Synchronous string
	// Readers is the size of the read connection pool (default 4).
	Readers int
	// MaxMode is the widest mode the database files may have (the socket's
	// mode: whoever may not talk to the socket may not read the files
	// either). Files are created FileMode; existing ones wider than MaxMode
	// are narrowed. Default FileMode.
	MaxMode os.FileMode
}

// Store is an open database. Its methods are safe for concurrent use, but
// Commit must only be called by one goroutine at a time (the engine's).
type Store struct {
	path string
	w    *sql.DB
	r    *sql.DB
	lock *os.File
	cp   *checkpointer
	// wmu is held by write transactions; the checkpointer takes it to let
	// the WAL restart (checkpoint.go).
	wmu sync.Mutex

	insChange, upBaseline, upEntity, delBaseline, delEntity, setMeta *sql.Stmt

	// Statements writing chunkRows rows at once.
	chunkIns, chunkB, chunkE *sql.Stmt

	// id, mark, gaps and recovery: identity.go.
	id       string
	mark     *seqMark
	gaps     []Gap
	recovery *Recovery

	health health // health.go
}

func values(n, cols int) string {
	one := "(?" + strings.Repeat(",?", cols-1) + ")"
	return one + strings.Repeat(","+one, n-1)
}

// Open opens or creates the database at path, applying schema (the contents
// of schema.sql). It fails with ErrLocked when another synchronizer has the
// database open and with ErrNewerSchema when the file's schema is newer than
// SchemaVersion; in both cases the file is left untouched.
func Open(path, schema string, o Options) (*Store, error) {
	if o.Synchronous == "" {
		o.Synchronous = "full"
	}
	if o.Readers <= 0 {
		o.Readers = 4
	}
	if o.MaxMode == 0 {
		o.MaxMode = FileMode
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	lock, err := acquireLock(path + ".lock")
	if err != nil {
		return nil, err
	}
	if err := createDBFile(path, o.MaxMode); err != nil {
		lock.Close()
		return nil, err
	}
	s := &Store{path: path, lock: lock}
	if err := s.open(schema, o); err != nil {
		s.Close()
		if isCorrupt(err) {
			// The start-up reads hit the damage: nothing can be served
			// from this file, so say what to do rather than run failing.
			return nil, fmt.Errorf("%w: %v: %s", ErrCorrupt, err, WayOut)
		}
		return nil, err
	}
	return s, nil
}

func (s *Store) open(schema string, o Options) error {
	pragmas := []string{
		"journal_mode(WAL)",
		"synchronous(" + strings.ToUpper(o.Synchronous) + ")",
		"busy_timeout(10000)",
		"cache_size(-65536)",
		"temp_store(MEMORY)",
		// The checkpointer copies the WAL in the background (checkpoint.go).
		"wal_autocheckpoint(0)",
		"journal_size_limit(" + strconv.Itoa(walLimit) + ")",
	}
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	var err error
	if s.w, err = sql.Open("sqlite", "file:"+s.path+"?"+q.Encode()); err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	// Check the version before applying our schema: a newer file must not be
	// touched.
	v, err := s.schemaVersion()
	if err != nil {
		return err
	}
	if v > SchemaVersion {
		return fmt.Errorf("store: %s: %w (schema version %d, this binary knows %d): upgrade the synchronizer or use another database",
			s.path, ErrNewerSchema, v, SchemaVersion)
	}
	if _, err := s.w.Exec(schema); err != nil {
		return fmt.Errorf("store: apply schema: %w", err)
	}
	if _, err := s.w.Exec(`INSERT INTO meta(key, value) VALUES ('schema_version', ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, strconv.Itoa(SchemaVersion)); err != nil {
		return fmt.Errorf("store: set schema version: %w", err)
	}

	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout(10000)")
	rq.Add("_pragma", "query_only(1)")
	rq.Add("_pragma", "cache_size(-16384)")
	if s.r, err = sql.Open("sqlite", "file:"+s.path+"?"+rq.Encode()); err != nil {
		return fmt.Errorf("store: open readers: %w", err)
	}
	s.r.SetMaxOpenConns(o.Readers)
	s.r.SetMaxIdleConns(o.Readers)
	if s.cp, err = openCheckpointer(s.path, o.Synchronous, &s.wmu); err != nil {
		return err
	}
	if err := s.prepare(); err != nil {
		return err
	}
	return s.openIdentity(context.Background())
}

func (s *Store) schemaVersion() (int, error) {
	var n int
	err := s.w.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: read %s: %w", s.path, err)
	}
	if n == 0 {
		return 0, nil
	}
	var v string
	err = s.w.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	ver, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("store: schema version %q is not a number", v)
	}
	return ver, nil
}

func (s *Store) prepare() error {
	stmts := []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.insChange, `INSERT INTO changes(seq, key, type, action, source, at, entity) VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&s.upBaseline, `INSERT INTO baseline(key, source, type, hash, observed_at, core_hash) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT(key) DO UPDATE SET source = excluded.source, type = excluded.type, hash = excluded.hash,
				observed_at = excluded.observed_at, core_hash = excluded.core_hash`},
		{&s.upEntity, `INSERT INTO entities(key, type, entity) VALUES (?, ?, ?)
			ON CONFLICT(key) DO UPDATE SET type = excluded.type, entity = excluded.entity`},
		{&s.delBaseline, `DELETE FROM baseline WHERE key = ?`},
		{&s.delEntity, `DELETE FROM entities WHERE key = ?`},
		{&s.setMeta, `INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`},
		{&s.chunkIns, `INSERT INTO changes(seq, key, type, action, source, at, entity) VALUES ` + values(chunkRows, 7)},
		{&s.chunkB, `INSERT INTO baseline(key, source, type, hash, observed_at, core_hash) VALUES ` + values(chunkRows, 6) + `
			ON CONFLICT(key) DO UPDATE SET source = excluded.source, type = excluded.type, hash = excluded.hash,
				observed_at = excluded.observed_at, core_hash = excluded.core_hash`},
		{&s.chunkE, `INSERT INTO entities(key, type, entity) VALUES ` + values(chunkRows, 3) + `
			ON CONFLICT(key) DO UPDATE SET type = excluded.type, entity = excluded.entity`},
	}
	for _, st := range stmts {
		p, err := s.w.Prepare(st.q)
		if err != nil {
			return fmt.Errorf("store: prepare: %w", err)
		}
		*st.dst = p
	}
	return nil
}

// Close closes the database and releases the lock. It is safe to call on a
// partly opened store.
func (s *Store) Close() error {
	var errs []error
	if s.cp != nil {
		errs = append(errs, s.cp.close())
	}
	for _, st := range []*sql.Stmt{s.insChange, s.upBaseline, s.upEntity, s.delBaseline, s.delEntity, s.setMeta} {
		if st != nil {
			st.Close()
		}
	}
	for _, st := range []*sql.Stmt{s.chunkIns, s.chunkB, s.chunkE} {
		if st != nil {
			st.Close()
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if s.mark != nil {
		errs = append(errs, s.mark.close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// IntegrityCheck runs PRAGMA integrity_check and returns its verdict ("ok"
// when the file is sound).
func (s *Store) IntegrityCheck(ctx context.Context) (string, error) {
	var res string
	if err := s.r.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return "", fmt.Errorf("store: integrity check: %w", err)
	}
	return res, nil
}
