package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Seqs must never go backwards, and a consumer must never resume from a seq
// whose changes the database no longer holds. Both break when committed
// transactions vanish: the -wal file deleted or lost with the host, or the
// database replaced by an older copy. Then the log ends lower than the
// seqs clients already saw, and new changes would reuse those seqs.
//
// So the highest seq handed out is also kept outside the database, in a
// small side file (<db>.seq), with two marks:
//
//   - used: the last committed seq, written (no fsync) after every commit
//     and before the engine publishes it. It survives any death of the
//     process, as the page cache does, but not a crash of the host.
//   - reserved: a bound above every seq committed, fsynced before a commit
//     goes past it, then moved reserveAhead further: one fsync per
//     reserveAhead changes. It survives a crash of the host.
//
// At open, the side file's boot id says which mark to trust: the same boot
// means only the process died, and used is exact; another boot means
// reserved. When that mark is above the log's last seq, the changes in
// between are lost. Seqs continue above the mark and the range is recorded
// as a gap (meta seq_gaps): a since inside a gap gets the resync error,
// since the client saw changes the database forgot; a since below it goes
// on as usual, since that client saw nothing that was lost.
//
// Why not a new database id instead: after a kill -9 with the -wal intact
// nothing is lost, and even when something is, only the clients that saw
// the lost seqs need a full resync. A new id would send every client to
// get_all after every unclean stop. A new id is made only when the side
// file is unreadable, and nothing can be said about what was handed out.
const reserveAhead = 1 << 16

// markMagic starts the side file's one line.
const markMagic = "synchronizer-seq-v1"

// Gap is a range of seqs (After, Through] that were handed out and then
// lost: a client that resumes from inside it must resync.
type Gap struct {
	After   int64 `json:"after"`
	Through int64 `json:"through"`
}

// Recovery says what Open found after an unclean stop.
type Recovery struct {
	// Gap is the range of seqs lost (zero when nothing was).
	Gap Gap
	// NewID is set when the database got a new id because the side file
	// could not be read.
	NewID bool
	// Reason explains the new id.
	Reason string
}

type seqMark struct {
	path string
	id   string
	boot string

	mu       sync.Mutex
	f        *os.File
	reserved int64
	used     int64
}

// bootID identifies the running kernel: the page cache (and so an
// unsynced write) survives exactly as long as it stays the same.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func newDatabaseID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("store: no randomness for a database id: %v", err)) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// parseMark reads the side file's line: magic, database id, reserved, used,
// boot id.
func parseMark(b []byte) (id string, reserved, used int64, boot string, err error) {
	f := strings.Fields(string(bytes.TrimSpace(b)))
	if len(f) != 5 || f[0] != markMagic {
		return "", 0, 0, "", fmt.Errorf("unreadable line %q", b)
	}
	if reserved, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return "", 0, 0, "", fmt.Errorf("reserved mark: %w", err)
	}
	if used, err = strconv.ParseInt(f[3], 10, 64); err != nil {
		return "", 0, 0, "", fmt.Errorf("used mark: %w", err)
	}
	return f[1], reserved, used, f[4], nil
}

// write rewrites the side file in place. The line has a fixed length, so a
// write never leaves a tail of an older, longer line.
func (m *seqMark) write(sync bool) error {
	line := fmt.Sprintf("%s %s %020d %020d %s\n", markMagic, m.id, m.reserved, m.used, m.boot)
	if _, err := m.f.WriteAt([]byte(line), 0); err != nil {
		return fmt.Errorf("store: write seq mark %s: %w", m.path, err)
	}
	if sync {
		if err := m.f.Sync(); err != nil {
			return fmt.Errorf("store: sync seq mark %s: %w", m.path, err)
		}
	}
	return nil
}

// reserve makes sure the durable mark covers seq before it is committed.
func (m *seqMark) reserve(seq int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq <= m.reserved {
		return nil
	}
	old := m.reserved
	m.reserved = seq + reserveAhead
	if err := m.write(true); err != nil {
		m.reserved = old
		return err
	}
	return nil
}

// commit records the last committed seq. A failed write is only logged by
// the caller: the commit is done, and the reserved mark still covers it.
func (m *seqMark) commit(seq int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq <= m.used {
		return nil
	}
	m.used = seq
	return m.write(false)
}

// close writes both marks as the exact last seq, synced: after a clean stop
// the next start, even after a reboot, continues without a gap.
func (m *seqMark) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil {
		return nil
	}
	m.reserved = m.used
	err := m.write(true)
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	m.f = nil
	return err
}

// openIdentity reads or makes the database id, compares the log with the
// side file, records a gap when seqs were lost, and opens the side file for
// the commits to come. It runs under the lock, before anything is served.
func (s *Store) openIdentity(ctx context.Context) error {
	id, err := s.metaValue(ctx, "database_id")
	if err != nil {
		return err
	}
	if id == "" {
		id = newDatabaseID()
		if err := s.setMetaValue(ctx, "database_id", id); err != nil {
			return err
		}
	}
	last, pruned, err := logBounds(ctx, s.w)
	if err != nil {
		return err
	}
	if s.gaps, err = s.readGaps(ctx); err != nil {
		return err
	}
	markPath := s.path + ".seq"
	b, rerr := readNoFollow(markPath)
	hi := last
	switch {
	case errors.Is(rerr, os.ErrNotExist):
		// A new database, or one written before the side file existed.
	case rerr != nil:
		return fmt.Errorf("store: read seq mark: %w", rerr)
	default:
		mid, reserved, used, boot, perr := parseMark(b)
		switch {
		case perr != nil:
			// What was handed out cannot be known: the only safe answer
			// is a new identity, so every client resyncs.
			id = newDatabaseID()
			if err := s.setMetaValue(ctx, "database_id", id); err != nil {
				return err
			}
			s.recovery = &Recovery{NewID: true, Reason: fmt.Sprintf("the seq mark %s is unreadable (%v)", markPath, perr)}
		case mid != id:
			// The side file belongs to another database: this file was
			// replaced by another one, whose id tells clients apart.
		case boot == bootID():
			hi = max(hi, used)
		default:
			hi = max(hi, reserved)
		}
	}
	if hi > last {
		g := Gap{After: last, Through: hi}
		s.recovery = &Recovery{Gap: g}
		if err := s.recordGap(ctx, g, pruned); err != nil {
			return err
		}
		last = hi
	}
	f, err := os.OpenFile(markPath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, FileMode)
	if err != nil {
		return fmt.Errorf("store: open seq mark: %w", err)
	}
	if err := narrowMode(markPath, FileMode); err != nil {
		f.Close()
		return err
	}
	s.id = id
	s.mark = &seqMark{path: markPath, id: id, boot: bootID(), f: f, reserved: last, used: last}
	if err := s.mark.write(true); err != nil {
		return err
	}
	// The side file's directory entry must be durable too, or a crash of
	// the host can lose the file with its marks.
	return syncDir(filepath.Dir(markPath))
}

func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return nil, err
	}
	return b[:n], nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	return nil
}

func (s *Store) metaValue(ctx context.Context, key string) (string, error) {
	var v string
	err := s.w.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: read meta %s: %w", key, err)
	}
	return v, nil
}

func (s *Store) setMetaValue(ctx context.Context, key, value string) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("store: set meta %s: %w", key, err)
	}
	return nil
}

func (s *Store) readGaps(ctx context.Context) ([]Gap, error) {
	v, err := s.metaValue(ctx, "seq_gaps")
	if err != nil || v == "" {
		return nil, err
	}
	var g []Gap
	if err := json.Unmarshal([]byte(v), &g); err != nil {
		return nil, fmt.Errorf("store: meta seq_gaps %q: %w", v, err)
	}
	return g, nil
}

// recordGap adds g to the gaps and moves last_seq to its end, in one
// transaction. Gaps wholly before the log's start are dropped: a since
// there gets the resync error anyway.
func (s *Store) recordGap(ctx context.Context, g Gap, pruned int64) error {
	keep := []Gap{}
	for _, o := range s.gaps {
		if o.Through > pruned {
			keep = append(keep, o)
		}
	}
	keep = append(keep, g)
	b, _ := json.Marshal(keep)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback()
	for _, kv := range [][2]string{{"seq_gaps", string(b)}, {"last_seq", strconv.FormatInt(g.Through, 10)}} {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?)
			ON CONFLICT(key) DO UPDATE SET value = excluded.value`, kv[0], kv[1]); err != nil {
			return fmt.Errorf("store: record seq gap: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: record seq gap: %w", err)
	}
	s.gaps = keep
	return nil
}

// Meta returns the value of a meta key ("" when unset), for components that
// keep a small state beside the data (a publisher's cursor).
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	v, err := s.metaValue(ctx, key)
	return v, s.noteErr(err)
}

// SetMeta sets a meta key. The keys of the store's own (last_seq,
// pruned_through, seq_gaps, database_id) are refused.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	switch key {
	case "last_seq", "pruned_through", "seq_gaps", "database_id":
		return fmt.Errorf("store: meta %s belongs to the store", key)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.noteErr(s.setMetaValue(ctx, key, value))
}

// DatabaseID returns the database's identity: random, made when the
// database was created. A seq means something only together with it.
func (s *Store) DatabaseID() string { return s.id }

// Recovered says what Open found after an unclean stop (nil: nothing lost).
func (s *Store) Recovered() *Recovery { return s.recovery }

// Gaps returns the ranges of seqs that were handed out and lost.
func (s *Store) Gaps() []Gap { return append([]Gap(nil), s.gaps...) }

// ErrSeqLost is returned by CheckSince for a since inside a gap.
var ErrSeqLost = errors.New("the changes after since were lost")

// CheckSince fails with ErrSeqLost when since lies inside a gap: the client
// saw changes the database no longer holds.
func (s *Store) CheckSince(since int64) error {
	for _, g := range s.gaps {
		if since > g.After && since <= g.Through {
			return fmt.Errorf("%w: seqs %d..%d were lost in an unclean stop (the database now continues after %d)",
				ErrSeqLost, g.After+1, g.Through, g.Through)
		}
	}
	return nil
}
