package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Row is one change to commit: the baseline and entities rows of Key are
// replaced (create, update) or removed (delete), and the change is appended to
// the log under Seq.
type Row struct {
	Seq        int64
	Key        string
	Type       string
	Action     string
	Source     string
	At         string // RFC 3339 UTC time of the change
	Hash       string
	CoreHash   string
	ObservedAt string // RFC 3339 UTC with nanoseconds
	Entity     []byte // the entity's JSON
}

// Touch updates a baseline row's owner and observation time without a
// change (a push event or poll that found the same content).
type Touch struct {
	Key, Source, ObservedAt string
}

// Commit applies rows and touches in one transaction and records the last
// seq. Either all of it is committed or nothing is.
func (s *Store) Commit(ctx context.Context, rows []Row, touches []Touch) (err error) {
	defer func() { err = s.noteErr(err) }()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback()
	delB, delE := tx.StmtContext(ctx, s.delBaseline), tx.StmtContext(ctx, s.delEntity)
	w := chunkWriter{s: s, tx: tx}
	var last int64
	for i := range rows {
		r := &rows[i]
		if r.Action == "delete" {
			// Order matters when a key comes back in the same batch.
			if err := w.flush(ctx); err != nil {
				return err
			}
			if _, err := delB.ExecContext(ctx, r.Key); err != nil {
				return fmt.Errorf("store: delete baseline %s: %w", r.Key, err)
			}
			if _, err := delE.ExecContext(ctx, r.Key); err != nil {
				return fmt.Errorf("store: delete entity %s: %w", r.Key, err)
			}
		}
		if err := w.add(ctx, r); err != nil {
			return err
		}
		last = r.Seq
	}
	if err := w.flush(ctx); err != nil {
		return err
	}
	if len(touches) > 0 {
		st, err := tx.PrepareContext(ctx, `UPDATE baseline SET source = ?, observed_at = ? WHERE key = ?`)
		if err != nil {
			return fmt.Errorf("store: prepare touch: %w", err)
		}
		defer st.Close()
		for _, t := range touches {
			if _, err := st.ExecContext(ctx, t.Source, t.ObservedAt, t.Key); err != nil {
				return fmt.Errorf("store: touch %s: %w", t.Key, err)
			}
		}
	}
	if last > 0 {
		if _, err := tx.StmtContext(ctx, s.setMeta).ExecContext(ctx, "last_seq", strconv.FormatInt(last, 10)); err != nil {
			return fmt.Errorf("store: set last seq: %w", err)
		}
		// The durable mark covers last before it can be committed.
		if err := s.mark.reserve(last); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	if last > 0 {
		// Written before the engine publishes: no client sees a seq the
		// mark does not cover (identity.go).
		if err := s.mark.commit(last); err != nil {
			slog.Warn("seq mark not updated; the reserved mark still covers the commit", "err", err)
		}
	}
	s.cp.poke()
	return nil
}

// chunkRows is how many rows one multi-row statement writes: each Exec
// through database/sql costs several microseconds of argument handling, so
// one statement per row would cost more than SQLite's own work.
const chunkRows = 32

// chunkWriter accumulates rows and writes them chunkRows at a time with
// multi-row statements, in order.
type chunkWriter struct {
	s       *Store
	tx      *sql.Tx
	pending []*Row
}

func (w *chunkWriter) add(ctx context.Context, r *Row) error {
	w.pending = append(w.pending, r)
	if len(w.pending) == chunkRows {
		return w.flush(ctx)
	}
	return nil
}

func (w *chunkWriter) flush(ctx context.Context) error {
	if len(w.pending) == 0 {
		return nil
	}
	rows := w.pending
	w.pending = w.pending[:0]
	full := len(rows) == chunkRows
	for _, r := range rows {
		if r.Action == "delete" {
			full = false // a chunk of upserts only: deletes keep their own statements
		}
	}
	if !full {
		return w.oneByOne(ctx, rows)
	}
	b := make([]any, 0, 6*chunkRows)
	e := make([]any, 0, 3*chunkRows)
	c := make([]any, 0, 7*chunkRows)
	for _, r := range rows {
		ent := string(r.Entity)
		b = append(b, r.Key, r.Source, r.Type, r.Hash, r.ObservedAt, r.CoreHash)
		e = append(e, r.Key, r.Type, ent)
		c = append(c, r.Seq, r.Key, r.Type, r.Action, r.Source, r.At, ent)
	}
	if _, err := w.tx.StmtContext(ctx, w.s.chunkB).ExecContext(ctx, b...); err != nil {
		return fmt.Errorf("store: upsert baseline: %w", err)
	}
	if _, err := w.tx.StmtContext(ctx, w.s.chunkE).ExecContext(ctx, e...); err != nil {
		return fmt.Errorf("store: upsert entities: %w", err)
	}
	if _, err := w.tx.StmtContext(ctx, w.s.chunkIns).ExecContext(ctx, c...); err != nil {
		return fmt.Errorf("store: append changes %d..%d: %w", rows[0].Seq, rows[len(rows)-1].Seq, err)
	}
	return nil
}

// oneByOne writes rows with the single-row statements.
func (w *chunkWriter) oneByOne(ctx context.Context, rows []*Row) error {
	ins, upB, upE := w.tx.StmtContext(ctx, w.s.insChange), w.tx.StmtContext(ctx, w.s.upBaseline), w.tx.StmtContext(ctx, w.s.upEntity)
	for _, r := range rows {
		ent := string(r.Entity)
		if r.Action != "delete" {
			if _, err := upB.ExecContext(ctx, r.Key, r.Source, r.Type, r.Hash, r.ObservedAt, r.CoreHash); err != nil {
				return fmt.Errorf("store: upsert baseline %s: %w", r.Key, err)
			}
			if _, err := upE.ExecContext(ctx, r.Key, r.Type, ent); err != nil {
				return fmt.Errorf("store: upsert entity %s: %w", r.Key, err)
			}
		}
		if _, err := ins.ExecContext(ctx, r.Seq, r.Key, r.Type, r.Action, r.Source, r.At, ent); err != nil {
			return fmt.Errorf("store: append change %d: %w", r.Seq, err)
		}
	}
	return nil
}

// LogBounds returns the highest seq ever handed out and the seq through which
// the log has been pruned: the log holds exactly the changes with
// pruned < seq <= last.
func (s *Store) LogBounds(ctx context.Context) (last, pruned int64, err error) {
	last, pruned, err = logBounds(ctx, s.r)
	return last, pruned, s.noteErr(err)
}

type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func logBounds(ctx context.Context, q queryer) (last, pruned int64, err error) {
	get := func(key string) (int64, error) {
		var v string
		err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(v, 10, 64)
	}
	if last, err = get("last_seq"); err != nil {
		return 0, 0, fmt.Errorf("store: read last seq: %w", err)
	}
	if pruned, err = get("pruned_through"); err != nil {
		return 0, 0, fmt.Errorf("store: read pruned seq: %w", err)
	}
	// A log that holds more than meta says (meta written by an older
	// version, or edited by hand) must not hand out a seq twice.
	var max sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(seq) FROM changes`).Scan(&max); err != nil {
		return 0, 0, fmt.Errorf("store: read max seq: %w", err)
	}
	if max.Valid && max.Int64 > last {
		last = max.Int64
	}
	return last, pruned, nil
}

// BaselineRow is one row of the baseline. Its byte slices are valid only
// during the ScanBaseline callback: a million rows are loaded at start-up,
// and copying every column would double the garbage of the load.
type BaselineRow struct {
	Key, Source, Type, Hash, ObservedAt, CoreHash []byte
}

// CountBaseline returns the number of baseline rows.
func (s *Store) CountBaseline(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM baseline`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count baseline: %w", err)
	}
	return n, nil
}

// ScanBaseline calls fn for every baseline row, in key order.
func (s *Store) ScanBaseline(ctx context.Context, fn func(*BaselineRow) error) (err error) {
	defer func() { err = s.noteErr(err) }()
	rows, err := s.r.QueryContext(ctx, `SELECT key, source, type, hash, observed_at, core_hash FROM baseline`)
	if err != nil {
		return fmt.Errorf("store: scan baseline: %w", err)
	}
	defer rows.Close()
	var k, src, typ, h, obs, core sql.RawBytes
	var b BaselineRow
	for rows.Next() {
		if err := rows.Scan(&k, &src, &typ, &h, &obs, &core); err != nil {
			return fmt.Errorf("store: scan baseline: %w", err)
		}
		b = BaselineRow{Key: k, Source: src, Type: typ, Hash: h, ObservedAt: obs, CoreHash: core}
		if err := fn(&b); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Entity returns the stored JSON of one entity, or nil when there is none.
func (s *Store) Entity(ctx context.Context, key string) ([]byte, error) {
	return readEntity(ctx, s.r, key)
}

// WriterEntity is Entity read through the writer's connection, for the
// engine, which reads while holding its lock: the reader pool may be taken
// by long get_all streams to slow clients, the writer's connection only by
// the engine's own commits and pruning.
func (s *Store) WriterEntity(ctx context.Context, key string) ([]byte, error) {
	return readEntity(ctx, s.w, key)
}

func readEntity(ctx context.Context, db *sql.DB, key string) ([]byte, error) {
	var b []byte
	err := db.QueryRowContext(ctx, `SELECT entity FROM entities WHERE key = ?`, key).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read entity %s: %w", key, err)
	}
	return b, nil
}

// typeRange turns a type filter into a key range: keys start with
// "<type>:", so a type's entities are one contiguous range of the primary
// key and need no index of their own.
func typeRange(typ string) (lo, hi string) { return typ + ":", typ + ";" }

// readLog runs read in one read transaction and returns the last seq of
// the log as that transaction sees it: the consistent view read had.
func (s *Store) readLog(ctx context.Context, read func(tx *sql.Tx) error) (last int64, err error) {
	defer func() { err = s.noteErr(err) }()
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("store: begin read: %w", err)
	}
	defer tx.Rollback()
	last, _, err = logBounds(ctx, tx)
	if err != nil {
		return 0, err
	}
	return last, read(tx)
}

// All calls fn with the JSON of every entity of the given types (all types
// when types is empty), inside one read transaction, and returns the last
// seq that this consistent view includes.
func (s *Store) All(ctx context.Context, types []string, fn func(entity []byte) error) (int64, error) {
	return s.readLog(ctx, func(tx *sql.Tx) error {
		scan := func(q string, args ...any) error {
			rows, err := tx.QueryContext(ctx, q, args...)
			if err != nil {
				return fmt.Errorf("store: read entities: %w", err)
			}
			defer rows.Close()
			var b sql.RawBytes
			for rows.Next() {
				if err := rows.Scan(&b); err != nil {
					return fmt.Errorf("store: read entities: %w", err)
				}
				if err := fn(b); err != nil {
					return err
				}
			}
			return rows.Err()
		}
		// Every page of the answer is read once before the first entity goes
		// to fn: the caller streams a single JSON line of up to a million
		// entities, and a damaged page found half way would cut that line
		// short with nothing to tell the client why. Found here, it is an
		// ordinary error response. The second read comes from the cache.
		verify := func(q string, args ...any) error {
			var n sql.NullInt64
			if err := tx.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
				return fmt.Errorf("store: read entities: %w", err)
			}
			return nil
		}
		if len(types) == 0 {
			if err := verify(`SELECT sum(length(CAST(entity AS BLOB))) FROM entities`); err != nil {
				return err
			}
			return scan(`SELECT entity FROM entities ORDER BY key`)
		}
		for _, t := range types {
			lo, hi := typeRange(t)
			if err := verify(`SELECT sum(length(CAST(entity AS BLOB))) FROM entities WHERE key >= ? AND key < ?`, lo, hi); err != nil {
				return err
			}
		}
		for _, t := range types {
			lo, hi := typeRange(t)
			if err := scan(`SELECT entity FROM entities WHERE key >= ? AND key < ? ORDER BY key`, lo, hi); err != nil {
				return err
			}
		}
		return nil
	})
}

// LogRow is one change as stored.
type LogRow struct {
	Seq    int64
	Action string
	Type   string
	Source string
	Entity []byte // valid only during the callback
}

// Changes calls fn for each change with seq > since, in seq order, of the
// given types (all when empty), at most limit of them (no limit when <= 0).
// It returns the highest seq the log held when the read began.
func (s *Store) Changes(ctx context.Context, since int64, types []string, limit int, fn func(LogRow) error) (int64, error) {
	return s.readLog(ctx, func(tx *sql.Tx) error {
		q := `SELECT seq, action, type, source, entity FROM changes WHERE seq > ?`
		args := []any{since}
		if len(types) > 0 {
			q += ` AND type IN (?` + strings.Repeat(",?", len(types)-1) + `)`
			for _, t := range types {
				args = append(args, t)
			}
		}
		q += ` ORDER BY seq`
		if limit > 0 {
			q += ` LIMIT ?`
			args = append(args, limit)
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("store: read changes: %w", err)
		}
		defer rows.Close()
		var r LogRow
		var b sql.RawBytes
		for rows.Next() {
			if err := rows.Scan(&r.Seq, &r.Action, &r.Type, &r.Source, &b); err != nil {
				return fmt.Errorf("store: read changes: %w", err)
			}
			r.Entity = b
			if err := fn(r); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// Prune drops changes beyond the newest keep (keep <= 0: no count bound) and
// changes older than maxAge (maxAge <= 0: no age bound), and records how far
// the log now reaches back. It returns the number of changes removed.
func (s *Store) Prune(ctx context.Context, keep int64, maxAge time.Duration, now time.Time) (int64, error) {
	return s.PruneAbove(ctx, keep, maxAge, now, -1)
}

// PruneAbove is Prune that never drops changes after floor (floor < 0: no
// floor): a publisher that has not yet sent them holds them back.
func (s *Store) PruneAbove(ctx context.Context, keep int64, maxAge time.Duration, now time.Time, floor int64) (_ int64, err error) {
	defer func() { err = s.noteErr(err) }()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: begin prune: %w", err)
	}
	defer tx.Rollback()
	last, pruned, err := logBounds(ctx, tx)
	if err != nil {
		return 0, err
	}
	through := pruned
	if keep > 0 && last-keep > through {
		through = last - keep
	}
	if maxAge > 0 {
		cutoff := now.Add(-maxAge).UTC().Format(TimeFormat)
		seq, err := lastBefore(ctx, tx, pruned+1, last, cutoff)
		if err != nil {
			return 0, fmt.Errorf("store: prune by age: %w", err)
		}
		if seq > through {
			through = seq
		}
	}
	if floor >= 0 && through > floor {
		through = floor
	}
	if through <= pruned {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE seq <= ?`, through)
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('pruned_through', ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, strconv.FormatInt(through, 10)); err != nil {
		return 0, fmt.Errorf("store: record prune: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: commit prune: %w", err)
	}
	s.cp.poke()
	return n, nil
}

// lastBefore returns the highest seq in [lo, hi] whose change is older than
// cutoff (lo-1 when none). Times never go backwards along seqs, so a binary
// search of index lookups replaces a scan of a million-row log inside the
// writer's transaction. Seqs may have holes (a range lost in an unclean stop
// and skipped, identity.go): each probe takes the first change at or after
// its seq.
func lastBefore(ctx context.Context, tx *sql.Tx, lo, hi int64, cutoff string) (int64, error) {
	found := lo - 1
	for lo <= hi {
		mid := lo + (hi-lo)/2
		var seq int64
		var a string
		err := tx.QueryRowContext(ctx, `SELECT seq, at FROM changes WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT 1`, mid, hi).Scan(&seq, &a)
		if errors.Is(err, sql.ErrNoRows) {
			hi = mid - 1 // nothing in [mid, hi]
			continue
		}
		if err != nil {
			return 0, err
		}
		if a < cutoff {
			found, lo = seq, seq+1
		} else {
			hi = mid - 1
		}
	}
	return found, nil
}

// TimeFormat is how times are stored: RFC 3339 in UTC with a fixed number of
// fractional digits, so that text order is time order.
const TimeFormat = "2006-01-02T15:04:05.000000000Z"
