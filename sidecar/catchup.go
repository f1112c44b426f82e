package sidecar

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/listeners"
)

// catchUpTimeout bounds one catch-up poll (the collector's own time-out
// applies inside it; this only ends a wait for a runner that went away).
const catchUpTimeout = 10 * time.Minute

// CatchUp implements listeners.CatchUpper: the listener may have missed
// notifications, so the collectors that own its types poll now.
func (s sink) CatchUp(g listeners.Gap) {
	if s.sup == nil || s.r == nil {
		return
	}
	s.sup.catchUp(s.r, g)
}

// catchUpOwners returns the collectors that can make up for what a
// listener missed: the one its events update (owner), those whose last
// poll listed one of its types, and those that have not completed a poll
// yet (their types are not known; a first poll in flight may have listed
// before the listener's queue was bound).
func (s *supervisor) catchUpOwners(g listeners.Gap) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, u := range s.units {
		if u.runner == nil {
			continue
		}
		if l := u.runner.Listed(); name == g.Owner || l == nil || l.Overlaps(g.Types) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// catchUps coalesces catch-up polls per collector: a request while one
// runs asks for one more after it (the running one may have listed before
// the gap closed), never for a pile.
type catchUps struct {
	mu    sync.Mutex
	state map[string]*catchUpState
}

type catchUpState struct{ running, again bool }

// catchUp starts the catch-up polls of a gap without waiting for them.
func (s *supervisor) catchUp(lr *listenerRunner, g listeners.Gap) {
	owners := s.catchUpOwners(g)
	lr.catchUpAsked(g.Reason, owners)
	s.log.Info("listener may have missed notifications: polling to catch up", "listener", lr.name,
		"reason", g.Reason, "collectors", owners)
	for _, name := range owners {
		s.catchUpPoll(lr, name)
	}
}

func (s *supervisor) catchUpPoll(lr *listenerRunner, name string) {
	c := &s.catchUps
	c.mu.Lock()
	if c.state == nil {
		c.state = map[string]*catchUpState{}
	}
	st := c.state[name]
	if st == nil {
		st = &catchUpState{}
		c.state[name] = st
	}
	if st.running {
		st.again = true
		c.mu.Unlock()
		return
	}
	st.running = true
	c.mu.Unlock()
	ctx := lr.context()
	go func() {
		for {
			if r := s.runner(name); r != nil && ctx.Err() == nil {
				pctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
				_, err := r.Collect(pctx, false)
				cancel()
				if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
					lr.caughtUp(name, err)
				}
			}
			c.mu.Lock()
			if !st.again || ctx.Err() != nil {
				st.running, st.again = false, false
				c.mu.Unlock()
				return
			}
			st.again = false
			c.mu.Unlock()
		}
	}()
}

// catchUpStatus is a listener's catch-up record for `status`.
type catchUpStatus struct {
	asked, polls, failures int64
	at                     time.Time
	reason                 string
	collectors             []string
	doneAt                 time.Time
	lastErr                string
}

func (r *listenerRunner) catchUpAsked(reason string, collectors []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cu.asked++
	if collectors == nil {
		collectors = []string{}
	}
	r.cu.at, r.cu.reason, r.cu.collectors = time.Now().UTC(), reason, collectors
}

func (r *listenerRunner) caughtUp(collector string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cu.polls++
	r.cu.doneAt = time.Now().UTC()
	if err != nil {
		r.cu.failures++
		r.cu.lastErr = collector + ": " + err.Error()
	}
}

// context is the context of the listener's current run (catch-up polls end
// with it).
func (r *listenerRunner) context() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}
