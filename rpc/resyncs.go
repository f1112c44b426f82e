package rpc

import "sync/atomic"

// resyncCounts counts the consumers told to resynchronize with get_all, by
// reason: each one costs a full snapshot, so a rising count is worth an
// alert (a subscriber too slow for subscriber_queue, a retention too short
// for consumers' outages, a restored database).
type resyncCounts struct {
	overflow atomic.Int64 // a subscriber's queue overflowed: resync notification
	replay   atomic.Int64 // the log was pruned while a subscriber replayed
	refused  atomic.Int64 // changes or register with a since outside the log: -32001
	// changes or register with another database's id: -32001
	otherDatabase atomic.Int64
}

// Resyncs returns the counts by reason (the reason label of
// synchronizer_rpc_resyncs_total).
func (s *Server) Resyncs() map[string]int64 {
	return map[string]int64{
		"queue_overflow":       s.resyncs.overflow.Load(),
		"pruned_during_replay": s.resyncs.replay.Load(),
		"since_outside_log":    s.resyncs.refused.Load(),
		"other_database":       s.resyncs.otherDatabase.Load(),
	}
}
