package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
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
func collectorNotReady(name string, st map[string]any, now time.Time) string {
	iv, _ := time.ParseDuration(fmt.Sprint(st["interval"]))
	last, _ := st["last_success"].(time.Time)
	switch n, _ := st["consecutive_failures"].(int); {
	case n > 0:
		return fmt.Sprintf("collector %s: last poll failed (%d in a row): %s", name, n, short(fmt.Sprint(st["last_error"])))
	case last.IsZero():
		return fmt.Sprintf("collector %s: no successful poll yet", name)
	case iv > 0 && now.Sub(last) > 2*iv:
		return fmt.Sprintf("collector %s: last successful poll %s ago, interval %s", name, now.Sub(last).Round(time.Second), iv)
	}
	return ""
}

// listenerNotReady reads a listener's status: it must be running and, when
// it reports a connection state, connected.
func listenerNotReady(name string, st map[string]any) string {
	if s := st["state"]; s != "running" {
		return fmt.Sprintf("listener %s: %v%s", name, s, lastErr(st))
	}
	if d, ok := st["details"].(map[string]any); ok {
		if s, ok := d["state"].(string); ok && s != "connected" {
			return fmt.Sprintf("listener %s: %s%s", name, s, lastErr(d))
		}
	}
	return ""
}

func lastErr(st map[string]any) string {
	if e, _ := st["last_error"].(string); e != "" {
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
