package engine

// brake reports whether the deletes of typ must be held back, and records
// or clears the hold. Caller holds e.mu (Engine: Locking); takes cmu.
func (e *Engine) brake(o SnapshotOptions, typ string, deletes, owned int) bool {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	held := e.held[o.Source]
	if o.Force || o.MaxDeleteRatio <= 0 || owned == 0 || float64(deletes)/float64(owned) <= o.MaxDeleteRatio {
		delete(held, typ)
		return false
	}
	if _, confirmed := held[typ]; confirmed {
		// The previous complete listing wanted the same mass delete: it is
		// real, not a glitch of one poll.
		e.log.Warn("applying mass delete confirmed by a second listing", "source", o.Source, "type", typ, "deletes", deletes, "of", owned)
		delete(held, typ)
		return false
	}
	if held == nil {
		held = map[string]int{}
		e.held[o.Source] = held
	}
	held[typ] = deletes
	e.log.Warn("holding back mass delete until the next listing confirms it",
		"source", o.Source, "type", typ, "deletes", deletes, "of", owned, "max_delete_ratio", o.MaxDeleteRatio)
	return true
}

// Held returns the deletes held back by the brake, per source and type.
func (e *Engine) Held() map[string]map[string]int {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	out := map[string]map[string]int{}
	for s, m := range e.held {
		if len(m) == 0 {
			continue
		}
		out[s] = map[string]int{}
		for t, n := range m {
			out[s][t] = n
		}
	}
	return out
}
