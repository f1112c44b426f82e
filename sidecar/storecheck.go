package sidecar

import (
	"context"
	"time"
)

// logRecovery says what the store found after an unclean stop: seqs that
// were handed out and lost, or a new database id. Never silently: the
// clients that resync because of it should be explainable from the log.
func (sc *Sidecar) logRecovery() {
	r := sc.store.Recovered()
	switch {
	case r == nil:
	case r.NewID:
		sc.log.Warn("the database got a new id: every client resyncs with get_all",
			"reason", r.Reason, "database_id", sc.store.DatabaseID())
	default:
		sc.log.Warn("unclean stop: changes were lost (the -wal file lost or the database restored from a copy); seqs continue after the lost range, and a client that resumes from inside it is asked to resync",
			"log_ends_at", r.Gap.After, "seqs_lost_through", r.Gap.Through)
	}
}

// runQuickChecks runs PRAGMA quick_check at start and every interval until
// ctx ends. A failure is logged once, as the store stays failing.
func (sc *Sidecar) runQuickChecks(ctx context.Context, interval time.Duration) {
	for {
		err := sc.store.QuickCheck(ctx)
		if ctx.Err() != nil {
			return
		}
		h := sc.store.Health()
		switch {
		case h.State == "failing":
			sc.log.Error("database check failed", "err", err)
			return // nothing heals a corrupt file: no need to check again
		case err != nil:
			sc.log.Warn("database check could not run", "err", err)
		default:
			sc.log.Info("database check ok", "duration", time.Duration(h.LastCheckMS)*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
