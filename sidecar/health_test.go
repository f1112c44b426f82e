package sidecar

import (
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/collectors"
	"github.com/openstack-synchronizer/synchronizer/listeners"
)

func TestCollectorNotReady(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		st   collectors.Status
		want string // "" ready, else a part of the problem
	}{
		{"fresh success", collectors.Status{Interval: "30s", LastSuccess: now.Add(-10 * time.Second)}, ""},
		{"just within 2x", collectors.Status{Interval: "30s", LastSuccess: now.Add(-60 * time.Second)}, ""},
		{"stale", collectors.Status{Interval: "30s", LastSuccess: now.Add(-61 * time.Second)}, "last successful poll 1m1s ago, interval 30s"},
		{"never polled", collectors.Status{Interval: "30s"}, "no successful poll yet"},
		{"last poll failed", collectors.Status{Interval: "30s", LastSuccess: now.Add(-time.Second), ConsecutiveFailures: 2, LastError: "nova: list servers: 503"}, "last poll failed (2 in a row): nova: list servers: 503"},
		{"long error", collectors.Status{Interval: "30s", ConsecutiveFailures: 1, LastError: strings.Repeat("x\n", 200)}, "x x x"},
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
		st   listenerStatus
		want string
	}{
		{"connected", listenerStatus{State: "running", Details: &listeners.Status{State: "connected"}}, ""},
		{"no connection state", listenerStatus{State: "running"}, ""},
		{"reconnecting", listenerStatus{State: "running", Details: &listeners.Status{State: "reconnecting", LastError: "connection refused"}}, "listener l: reconnecting: connection refused"},
		{"failing", listenerStatus{State: "failing", LastError: "authentication refused"}, "listener l: failing: authentication refused"},
	} {
		if got := listenerNotReady("l", tc.st); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
