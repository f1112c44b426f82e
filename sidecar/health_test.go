package sidecar

import (
	"strings"
	"testing"
	"time"
)

func TestCollectorNotReady(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		st   map[string]any
		want string // "" ready, else a part of the problem
	}{
		{"fresh success", map[string]any{"interval": "30s", "last_success": now.Add(-10 * time.Second), "consecutive_failures": 0}, ""},
		{"just within 2x", map[string]any{"interval": "30s", "last_success": now.Add(-60 * time.Second), "consecutive_failures": 0}, ""},
		{"stale", map[string]any{"interval": "30s", "last_success": now.Add(-61 * time.Second), "consecutive_failures": 0}, "last successful poll 1m1s ago, interval 30s"},
		{"never polled", map[string]any{"interval": "30s", "consecutive_failures": 0}, "no successful poll yet"},
		{"last poll failed", map[string]any{"interval": "30s", "last_success": now.Add(-time.Second), "consecutive_failures": 2, "last_error": "nova: list servers: 503"}, "last poll failed (2 in a row): nova: list servers: 503"},
		{"long error", map[string]any{"interval": "30s", "consecutive_failures": 1, "last_error": strings.Repeat("x\n", 200)}, "x x x"},
	} {
		got := collectorNotReady("c", tc.st, now)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if strings.Contains(got, "\n") || len(got) > 300 {
			t.Errorf("%s: not one short line: %q", tc.name, got)
		}
	}
}

func TestListenerNotReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   map[string]any
		want string
	}{
		{"connected", map[string]any{"state": "running", "details": map[string]any{"state": "connected"}}, ""},
		{"no connection state", map[string]any{"state": "running"}, ""},
		{"reconnecting", map[string]any{"state": "running", "details": map[string]any{"state": "reconnecting", "last_error": "connection refused"}}, "listener l: reconnecting: connection refused"},
		{"failing", map[string]any{"state": "failing", "last_error": "authentication refused"}, "listener l: failing: authentication refused"},
	} {
		if got := listenerNotReady("l", tc.st); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
