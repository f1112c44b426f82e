package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"
)

// SQLite's automatic checkpoint runs inside the commit that crosses its
// threshold: the committing goroutine copies the WAL into the database file
// and syncs it while every change behind it waits, a latency spike every
// few hundred notifications. The writer's automatic checkpoints are off and
// a checkpointer with a connection of its own does the copying in the
// background, on the other core, after commits.
//
// SQLite only starts the WAL over when a write begins with every frame
// copied, which a checkpoint running beside a steady stream of commits
// never achieves: once the WAL is past restartFrames, the checkpointer
// copies the few frames added during its unlocked pass with commits held
// (Store.wmu), and the next commit starts the WAL from the beginning.

const (
	// checkpointEvery is the least time between two checkpoints of a WAL
	// shorter than restartFrames: a larger WAL copies pages written several
	// times only once.
	checkpointEvery = 100 * time.Millisecond
	// walLimit is the size SQLite truncates the WAL file to when it
	// restarts it, so that a burst does not leave a large file behind.
	walLimit = 64 << 20
	// restartFrames is the WAL length (in pages) past which a checkpoint
	// finishes with commits held, so that the WAL restarts.
	restartFrames = 4096
	// pinnedPause is the pause after a pass that a reader's old snapshot
	// stopped short: until that reader is done, another pass copies little,
	// and on a loaded machine commits come slower than checkpointEvery.
	pinnedPause = time.Second
)

type checkpointer struct {
	db   *sql.DB
	wmu  *sync.Mutex // the store's commit lock
	kick chan struct{}
	stop context.CancelFunc
	done sync.WaitGroup

	mu     sync.Mutex
	runs   int64
	err    error
	frame  int64 // frames in the WAL at the last checkpoint
	pinned bool  // a reader's old snapshot stopped the last full copy
}

// openCheckpointer opens the checkpointer's connection with the writer's
// synchronous level: a checkpoint syncs the database file according to the
// level of the connection that runs it.
func openCheckpointer(path, synchronous string, wmu *sync.Mutex) (*checkpointer, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous("+strings.ToUpper(synchronous)+")")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open checkpointer: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	ctx, stop := context.WithCancel(context.Background())
	c := &checkpointer{db: db, wmu: wmu, kick: make(chan struct{}, 1), stop: stop}
	c.done.Add(1)
	go c.run(ctx)
	return c, nil
}

// poke tells the checkpointer that a commit added to the WAL.
func (c *checkpointer) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run(ctx context.Context) {
	defer c.done.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		// frames is the WAL's length when the pass began: commits go on
		// adding to it meanwhile.
		frames, _ := c.checkpoint(ctx)
		pause := checkpointEvery
		if frames <= restartFrames {
			c.setPinned(false, frames)
		} else {
			c.wmu.Lock()
			frames, copied := c.checkpoint(ctx)
			c.wmu.Unlock()
			c.setPinned(frames > 0 && copied < frames, frames)
			if frames > 0 && copied == frames {
				// The next commit restarts the WAL: during a bulk write,
				// keep up with it rather than pause. (A reader holding an
				// old snapshot stops the copy short: then pause.)
				continue
			}
			if frames > 0 && copied < frames {
				pause = pinnedPause
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

// checkpoint copies what it can of the WAL into the database file. PASSIVE
// never waits for the writer or the readers: frames a reader still needs
// are copied by a later run.
func (c *checkpointer) checkpoint(ctx context.Context) (frames, copied int64) {
	var busy int64
	err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs++
	c.frame = frames
	if err != nil && ctx.Err() == nil {
		if c.err == nil {
			slog.Warn("store: checkpoint failed", "err", err)
		}
		c.err = err
		return 0, 0
	}
	c.err = nil
	return frames, copied
}

// setPinned records whether a reader keeps the WAL from restarting, and
// says so once when it starts: the WAL grows until the reader is done.
func (c *checkpointer) setPinned(pinned bool, frames int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pinned && !c.pinned {
		slog.Warn("store: a reader holds an old snapshot: the WAL cannot restart and grows until it ends (a long get_all, or an open transaction in a sqlite3 shell)",
			"wal_frames", frames)
	}
	c.pinned = pinned
}

// close stops the checkpointer; the writer's connection, closed last,
// checkpoints what is left.
func (c *checkpointer) close() error {
	c.stop()
	c.done.Wait()
	return c.db.Close()
}

// WALStats describes the background checkpointer, for status.
type WALStats struct {
	Checkpoints int64  `json:"checkpoints"`
	Frames      int64  `json:"frames"` // pages in the WAL at the last checkpoint
	LastError   string `json:"last_error,omitempty"`
	// ReaderHolds: a reader's old snapshot keeps the WAL from restarting.
	ReaderHolds bool `json:"reader_holds_wal,omitempty"`
}

// WALStats tells how many background checkpoints ran, how long the WAL was
// at the last one, and why the last one failed if it did (a WAL that
// cannot be checkpointed grows).
func (s *Store) WALStats() WALStats {
	if s.cp == nil {
		return WALStats{}
	}
	s.cp.mu.Lock()
	defer s.cp.mu.Unlock()
	w := WALStats{Checkpoints: s.cp.runs, Frames: s.cp.frame, ReaderHolds: s.cp.pinned}
	if s.cp.err != nil {
		w.LastError = s.cp.err.Error()
	}
	return w
}
