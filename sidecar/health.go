package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/openstack-synchronizer/synchronizer/collectors"
)

// healthz answers 200 while the process serves HTTP: a liveness probe.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when the synchronizer is doing its job: the database
// answers, every collector's last poll succeeded within twice its interval
// and every listener is connected. Otherwise 503 with one line per problem.
func (sc *Sidecar) readyz(w http.ResponseWriter, r *http.Request) {
	problems := sc.notReady(r.Context(), time.Now())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) == 0 {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready:")
	for _, p := range problems {
		fmt.Fprintln(w, "- "+p)
	}
}

// notReady lists what keeps the synchronizer from being ready, sorted.
func (sc *Sidecar) notReady(ctx context.Context, now time.Time) []string {
	var out []string
	if !sc.engine.Loaded() {
		out = append(out, "baseline: still loading")
	}
	if err := sc.storeOK(ctx, 2*time.Second); err != nil {
		out = append(out, err.Error())
	}
	for _, u := range sc.sup.unitList() {
		switch {
		case u.runner != nil:
			if p := collectorNotReady(u.name, u.runner.Status(), now); p != "" {
				out = append(out, p)
			}
		case u.lrun != nil:
			if p := listenerNotReady(u.name, u.lrun.status()); p != "" {
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// collectorNotReady reads a runner's status: its last poll must have
// succeeded, within twice the interval.
func collectorNotReady(name string, st collectors.Status, now time.Time) string {
	iv, _ := time.ParseDuration(st.Interval)
	switch n := st.ConsecutiveFailures; {
	case n > 0:
		return fmt.Sprintf("collector %s: last poll failed (%d in a row): %s", name, n, short(st.LastError))
	case st.LastSuccess.IsZero():
		return fmt.Sprintf("collector %s: no successful poll yet", name)
	case iv > 0 && now.Sub(st.LastSuccess) > 2*iv:
		return fmt.Sprintf("collector %s: last successful poll %s ago, interval %s", name, now.Sub(st.LastSuccess).Round(time.Second), iv)
	}
	return ""
}

// listenerNotReady reads a listener's status: it must be running and, when
// it reports a connection state, connected.
func listenerNotReady(name string, st listenerStatus) string {
	if st.State != "running" {
		return fmt.Sprintf("listener %s: %v%s", name, st.State, lastErr(st.LastError))
	}
	if d := st.Details; d != nil && d.State != "" && d.State != "connected" {
		return fmt.Sprintf("listener %s: %s%s", name, d.State, lastErr(d.LastError))
	}
	return ""
}

func lastErr(e string) string {
	if e != "" {
		return ": " + short(e)
	}
	return ""
}

// short keeps a problem on one line of reasonable length.
func short(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
