package sidecar

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openstack-synchronizer/synchronizer/sdnotify"
)

// systemd is the service's side of Type=notify: READY=1 once every
// collector has finished its first poll (success or failure: a source that
// is down must not hold the start, and each poll ends within its timeout),
// STATUS= lines, and WATCHDOG=1 pings while the engine and the store
// answer. Outside systemd ($NOTIFY_SOCKET unset) it does nothing.
type systemd struct {
	sc *Sidecar
	n  *sdnotify.Notifier

	mu     sync.Mutex
	failed bool        // a send failed: logged once
	probe  chan string // the engine probe in flight, nil when none

	lastPing time.Time // read and written by run only
	// ready is set once READY=1 went out: a reload before that must not
	// tell systemd the start is over.
	ready atomic.Bool
}

func newSystemd(sc *Sidecar) *systemd {
	return &systemd{sc: sc, n: sdnotify.FromEnv()}
}

// send notifies systemd; a failure is logged once, never fatal.
func (s *systemd) send(assignments ...string) {
	if err := s.n.Send(assignments...); err != nil {
		s.mu.Lock()
		first := !s.failed
		s.failed = true
		s.mu.Unlock()
		if first {
			s.sc.log.Warn("cannot notify systemd", "err", err)
		}
	}
}

// run waits for the first polls, says READY=1, then keeps STATUS= current
// and pings the watchdog until ctx ends.
func (s *systemd) run(ctx context.Context) {
	if !s.n.Enabled() {
		return
	}
	wd := sdnotify.WatchdogInterval()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	lastDone := -1
	for {
		done, total := s.sc.firstPolls()
		if done == total {
			break
		}
		if done != lastDone {
			s.send(sdnotify.Status("waiting for the first polls: %d of %d collectors done", done, total))
			lastDone = done
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The watchdog runs from the start: a first OpenStack listing may
		// take longer than WatchdogSec.
		if wd > 0 && s.due(wd) {
			s.ping(ctx, wd)
		}
	}
	s.ready.Store(true)
	s.send("READY=1", s.status())
	s.sc.log.Info("told systemd: ready")
	every := 10 * time.Second
	if wd > 0 {
		every = min(every, wd/2)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if wd > 0 {
			s.ping(ctx, wd)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.send(s.status())
	}
}

// due says whether half the watchdog interval has passed since the last
// ping (during the wait for the first polls, which ticks faster).
func (s *systemd) due(wd time.Duration) bool {
	return time.Since(s.lastPing) >= wd/2
}

// ping sends WATCHDOG=1 when the engine and the store answer within half
// the interval; otherwise it says why in STATUS= and lets systemd's
// watchdog act.
func (s *systemd) ping(ctx context.Context, wd time.Duration) {
	s.lastPing = time.Now()
	if err := s.alive(ctx, wd/2); err != nil {
		s.sc.log.Warn("not pinging the systemd watchdog", "err", err)
		s.send(sdnotify.Status("unhealthy: %v", err))
		return
	}
	s.send("WATCHDOG=1")
}

// alive checks that the engine's lock can be taken (no commit is stuck)
// and that the database answers a read, each within timeout.
func (s *systemd) alive(ctx context.Context, timeout time.Duration) error {
	s.mu.Lock()
	probe := s.probe
	if probe == nil {
		// One probe at a time: a stuck engine must not collect a goroutine
		// per tick.
		probe = make(chan string, 1)
		s.probe = probe
		go func() {
			s.sc.engine.Locked(func(int64) {})
			probe <- ""
		}()
	}
	s.mu.Unlock()
	select {
	case <-probe:
		s.mu.Lock()
		s.probe = nil
		s.mu.Unlock()
	case <-time.After(timeout):
		return fmt.Errorf("engine: no commit finished within %s", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.sc.storeOK(ctx, timeout)
}

// status is the STATUS= line of a running service.
func (s *systemd) status() string {
	cols, failing, lis := 0, 0, 0
	for _, u := range s.sc.sup.unitList() {
		switch {
		case u.runner != nil:
			cols++
			if u.runner.Status().State == "failing" {
				failing++
			}
		case u.lrun != nil:
			lis++
		}
	}
	return sdnotify.Status("serving %d entities; %d collectors (%d failing), %d listeners; last seq %d",
		s.sc.engine.Len(), cols, failing, lis, s.sc.engine.LastSeq())
}

// reloading and reloaded bracket a configuration reload.
func (s *systemd) reloading() {
	if s.ready.Load() {
		s.send(sdnotify.Reloading()...)
	}
}

func (s *systemd) reloaded() {
	if s.ready.Load() {
		s.send("READY=1", s.status())
	}
}

func (s *systemd) stopping() { s.send("STOPPING=1", sdnotify.Status("stopping")) }

// firstPolls counts the collectors that have finished a poll.
func (sc *Sidecar) firstPolls() (done, total int) {
	for _, u := range sc.sup.unitList() {
		if u.runner == nil {
			continue
		}
		total++
		if u.runner.Status().Polls > 0 {
			done++
		}
	}
	return done, total
}

// storeOK reads from the database within timeout.
func (sc *Sidecar) storeOK(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, _, err := sc.store.LogBounds(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
}
