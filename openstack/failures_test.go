package openstack

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// A failing page, a hanging service or a service down makes its types
// missing from Types (so nothing of them is deleted) and leaves no partial
// listing; the other types are listed as usual.
func TestFailuresIsolated(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		failure openstacktest.Failure
		failed  []string
		errText string
	}{
		{"500 on page 2 of servers", openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Fail500, Page: 2},
			[]string{TypeInstance}, "nova: list servers page 2: GET"},
		{"500 on page 2 of ports", openstacktest.Ports, openstacktest.Failure{Mode: openstacktest.Fail500, Page: 2},
			[]string{TypePort}, "HTTP 500: injected failure"},
		{"servers time out", openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Hang, Page: 2},
			[]string{TypeInstance}, "request timed out after 1s"},
		{"neutron down", "network", openstacktest.Failure{Mode: openstacktest.Fail500},
			[]string{TypeNetwork, TypePort}, "neutron: list"},
		{"heat hangs", "orchestration", openstacktest.Failure{Mode: openstacktest.Hang},
			[]string{TypeStack}, "heat: list stacks page 1"},
		{"500 on the stack's resources", openstacktest.Resources, openstacktest.Failure{Mode: openstacktest.Fail500},
			[]string{TypeStack}, "heat: list resources of stack 3095aefc-09fb-4bc7-b1f0-f21a304e864c page 1: GET"},
		{"stack's resources time out", openstacktest.Resources, openstacktest.Failure{Mode: openstacktest.Hang},
			[]string{TypeStack}, "request timed out after 1s"},
		{"hypervisors fail", openstacktest.Hypervisors, openstacktest.Failure{Mode: openstacktest.Fail500},
			[]string{TypeHost}, "nova: list hypervisors page 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, openstacktest.Options{}, func(o *Options) {
				o.RequestTimeout = config.Duration(time.Second)
			})
			f.srv.AddServers(2)
			f.srv.Fail(tt.target, tt.failure)
			start := time.Now()
			snap := f.collect(t)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("poll took %s", took)
			}
			if want := without(AllTypes, tt.failed...); !slices.Equal(snap.Types, want) {
				t.Errorf("types = %v, want %v", snap.Types, want)
			}
			for _, typ := range tt.failed {
				if n := len(ofType(snap, typ)); n != 0 {
					t.Errorf("%d partial %s entities in the snapshot", n, typ)
				}
				st := typeStatus(f.c, typ)
				if !st.Failing || !strings.Contains(st.LastError, tt.errText) {
					t.Errorf("%s status = %+v, want error containing %q", typ, st, tt.errText)
				}
			}
			if n := len(ofType(snap, TypeZone)); n != 1 {
				t.Errorf("zones = %d, want 1 (other types unaffected)", n)
			}
			if !strings.Contains(f.log.String(), "openstack listing failed") {
				t.Error("failure not logged")
			}
			// The next poll, with the service back, lists everything.
			f.srv.ClearFailures()
			snap = f.collect(t)
			if !slices.Equal(snap.Types, AllTypes) {
				t.Errorf("after recovery types = %v", snap.Types)
			}
			if !strings.Contains(f.log.String(), "openstack listing recovered") {
				t.Error("recovery not logged")
			}
		})
	}
}

// Everything failing is an error, not an empty snapshot.
func TestAllFailing(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, func(o *Options) { o.Types = []string{TypeNetwork, TypePort} })
	f.srv.Fail("network", openstacktest.Failure{Mode: openstacktest.Fail500})
	snap, err := f.c.Collect(context.Background())
	if err == nil || snap != nil {
		t.Fatalf("got snapshot %v, err %v", snap, err)
	}
	if !strings.Contains(err.Error(), "nothing listed") {
		t.Errorf("err = %v", err)
	}
}

// 5xx is retried up to the configured count, with back-off.
func TestRetries(t *testing.T) {
	tests := []struct {
		retries, failures int
		ok                bool
	}{
		{retries: 2, failures: 2, ok: true},
		{retries: 1, failures: 2, ok: false},
		{retries: 0, failures: 1, ok: false},
	}
	for _, tt := range tests {
		f := newFixture(t, openstacktest.Options{PageSize: 5}, func(o *Options) {
			o.Types = []string{TypeNetwork}
			o.Retries = &tt.retries
		})
		f.srv.Fail(openstacktest.Networks, openstacktest.Failure{Mode: openstacktest.Fail500, Times: tt.failures})
		_, err := f.c.Collect(context.Background())
		if (err == nil) != tt.ok {
			t.Errorf("retries %d, failures %d: err = %v", tt.retries, tt.failures, err)
		}
		// Requests counts the ones that got through the injected failures.
		served := f.srv.Requests(openstacktest.Networks)
		if tt.ok && served != 1 {
			t.Errorf("retries %d: %d served requests, want 1", tt.retries, served)
		}
		if !tt.ok && served != 0 {
			t.Errorf("retries %d: %d served requests, want 0", tt.retries, served)
		}
	}
}

// An expired token (401) is renewed once and the poll succeeds; a 401 that
// persists after renewal fails the listing without looping.
func TestReauth(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, nil)
	f.collect(t)
	if n := f.srv.AuthCount(); n != 1 {
		t.Fatalf("tokens after first poll = %d", n)
	}
	f.srv.ExpireTokens()
	snap := f.collect(t)
	if !slices.Equal(snap.Types, AllTypes) {
		t.Fatalf("after expiry types = %v", snap.Types)
	}
	// Concurrent listings that all hit the 401 share one re-authentication.
	if n := f.srv.AuthCount(); n != 2 {
		t.Errorf("tokens after expiry = %d, want 2", n)
	}

	f.srv.Fail(openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Unauthorized, Times: 1})
	snap = f.collect(t)
	if !slices.Contains(snap.Types, TypeInstance) {
		t.Fatalf("one 401: types = %v", snap.Types)
	}
	if n := f.srv.AuthCount(); n != 3 {
		t.Errorf("tokens after one 401 = %d, want 3", n)
	}

	f.srv.Fail(openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Unauthorized})
	snap = f.collect(t)
	if slices.Contains(snap.Types, TypeInstance) {
		t.Fatal("persistent 401: servers listed")
	}
	st := typeStatus(f.c, TypeInstance)
	if !strings.Contains(st.LastError, "after re-authentication") || !strings.Contains(st.LastError, "HTTP 401") {
		t.Errorf("status = %+v", st)
	}
	if n := f.srv.AuthCount(); n != 4 {
		t.Errorf("tokens after persistent 401 = %d, want 4 (one re-auth per request)", n)
	}
}

// A token about to expire is renewed before the poll starts: 2 minutes
// before its expiry, or in its last quarter when it lives less than 8.
func TestRenewBeforeExpiry(t *testing.T) {
	tests := []struct {
		ttl, wait time.Duration
		tokens    int
	}{
		{time.Hour, 0, 1},
		{time.Minute, 0, 1}, // not renewed at every poll
		{2 * time.Second, 1600 * time.Millisecond, 2},
	}
	for _, tt := range tests {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			f := newFixture(t, openstacktest.Options{TokenTTL: tt.ttl}, func(o *Options) { o.Types = []string{TypeZone} })
			f.collect(t)
			time.Sleep(tt.wait)
			f.collect(t)
			if n := f.srv.AuthCount(); n != tt.tokens {
				t.Errorf("tokens = %d, want %d", n, tt.tokens)
			}
		})
	}
}

// A wrong password fails the poll with Keystone's 401, no listing at all.
func TestAuthFailure(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, func(o *Options) {
		o.Auth = &AuthInfo{Password: "wrong-password-123"}
	})
	_, err := f.c.Collect(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 401 {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong-password-123") {
		t.Errorf("password in error: %v", err)
	}
	if st := typeStatus(f.c, TypeInstance); !st.Failing {
		t.Errorf("status = %+v", st)
	}
}

// Nova refusing the wanted microversion: negotiated from the version
// document, or, without one, from the 406's "maximum is". Hypervisors are
// listed at most at 2.87 (from 2.88 nova-api asks every nova-compute for its
// uptime at each request), the rest at the negotiated microversion; a
// host's data is what the negotiated one would show, uptime aside.
func TestMicroversion(t *testing.T) {
	tests := []struct {
		name, max     string
		noDoc         bool
		want, wantHyp string
	}{
		{"newest cloud", "2.100", false, "2.100", "2.87"},
		{"cloud at 2.88", "2.88", false, "2.88", "2.87"},
		{"cloud at 2.88, 406 fall-back", "2.88", true, "2.88", "2.87"},
		{"older cloud, version document", "2.60", false, "2.60", "2.60"},
		{"older cloud, 406 fall-back", "2.60", true, "2.60", "2.60"},
		{"ancient cloud, 406 fall-back", "2.40", true, "2.40", "2.40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, openstacktest.Options{MaxMicroversion: tt.max}, func(o *Options) {
				o.Types = []string{TypeInstance, TypeHost, TypeZone}
			})
			if tt.noDoc {
				f.srv.Fail("versions", openstacktest.Failure{Mode: openstacktest.NotFound})
			}
			// What Nova shows at ≤ 2.87 only, and uptime.
			hyps := f.srv.IDs(openstacktest.Hypervisors)
			for _, id := range hyps {
				f.srv.UpdateQuiet(openstacktest.Hypervisors, id, func(o map[string]any) {
					o["vcpus"], o["running_vms"], o["uptime"] = 8, 3, "up 1 day"
				})
			}
			// The second poll is served at the microversion the first
			// settled on.
			f.collect(t)
			snap := f.collect(t)
			if len(snap.Types) != 3 {
				t.Fatalf("types = %v; log:\n%s", snap.Types, f.log.String())
			}
			for target, want := range map[string]string{
				openstacktest.Servers: tt.want, openstacktest.Services: tt.want, openstacktest.Zones: tt.want,
				openstacktest.Hypervisors: tt.wantHyp,
			} {
				if got := f.srv.MicroversionOf(target); got != want {
					t.Errorf("%s served at %s, want %s", target, got, want)
				}
			}
			st := f.c.Status()
			if got := st["nova_microversion"]; got != tt.want {
				t.Errorf("status microversion %v, want %s", got, tt.want)
			}
			if got := st["nova_hypervisors_microversion"]; got != tt.wantHyp {
				t.Errorf("status hypervisors microversion %v, want %s", got, tt.wantHyp)
			}
			capped := tt.want != tt.wantHyp
			n := 0
			for _, e := range snap.Entities {
				if e.Type != TypeHost {
					continue
				}
				hs, _ := e.Data["hypervisors"].([]any)
				for _, h := range hs {
					n++
					o := h.(map[string]any)
					if _, ok := o["uptime"]; ok {
						t.Errorf("host %s: uptime kept", e.ID)
					}
					if _, ok := o["vcpus"]; ok == capped {
						t.Errorf("host %s: vcpus present %v at %s listed at %s: %v", e.ID, ok, tt.want, tt.wantHyp, o)
					}
				}
			}
			if n == 0 || len(hyps) == 0 {
				t.Fatalf("no hypervisors in the hosts (%d in the cloud)", len(hyps))
			}
		})
	}
}

// Without "maximum is" in the 406, the fall-back steps down the ladder.
func TestMicroversionLadder(t *testing.T) {
	n := &nova{s: &session{log: discardLog()}, mv: "2.100", neg: true}
	steps := []string{}
	for n.fallback(&HTTPError{Status: 406, Message: "Not Acceptable"}, n.header()) {
		steps = append(steps, n.microversion())
	}
	if want := []string{"2.96", "2.88", "2.53", "2.47", "2.1"}; !slices.Equal(steps, want) {
		t.Errorf("steps = %v, want %v", steps, want)
	}
	if n.fallback(&HTTPError{Status: 500}, n.header()) {
		t.Error("fell back on a 500")
	}
}

// A role that may not read hypervisors still gets its hosts.
func TestHypervisorsForbidden(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, func(o *Options) { o.Types = []string{TypeHost} })
	f.srv.Fail(openstacktest.Hypervisors, openstacktest.Failure{Mode: openstacktest.NotFound})
	snap := f.collect(t)
	if len(snap.Types) != 1 || len(snap.Entities) != 2 {
		t.Fatalf("types %v, %d hosts", snap.Types, len(snap.Entities))
	}
	if _, ok := snap.Entities[0].Data["hypervisors"]; ok {
		t.Error("hypervisors merged though unavailable")
	}
}

// A listing whose pages go round (the collection changed under it, as
// Nova's does while servers boot) is started over, and counts as failed
// only when it keeps going round: nothing is then deleted.
func TestListingStartedOver(t *testing.T) {
	defer func(p time.Duration) { restartPause = p }(restartPause)
	restartPause = 10 * time.Millisecond
	tests := []struct {
		name  string
		times int // pages that go round; 0: every listing
		ok    bool
	}{
		{"once", 1, true},
		{"twice", 2, true},
		{"every time", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, openstacktest.Options{}, nil)
			f.srv.AddServers(4)
			want := len(ofType(f.collect(t), TypeInstance))
			f.srv.Fail(openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Restart, Page: 3, Times: tt.times})
			snap := f.collect(t)
			st := typeStatus(f.c, TypeInstance)
			if !tt.ok {
				if slices.Contains(snap.Types, TypeInstance) || len(ofType(snap, TypeInstance)) != 0 {
					t.Fatalf("a listing that keeps going round is in the snapshot: types %v", snap.Types)
				}
				if !st.Failing || !strings.Contains(st.LastError, "pagination does not end") {
					t.Fatalf("status = %+v", st)
				}
				if n := strings.Count(f.log.String(), "listing started over"); n != listRestarts-1 {
					t.Errorf("started over %d times, want %d", n, listRestarts-1)
				}
				return
			}
			if !slices.Contains(snap.Types, TypeInstance) || st.Failing {
				t.Fatalf("types %v, status %+v", snap.Types, st)
			}
			got := ofType(snap, TypeInstance)
			seen := map[string]bool{}
			for _, e := range got {
				if seen[e.ID] {
					t.Errorf("server %s listed twice", e.ID)
				}
				seen[e.ID] = true
			}
			if len(got) != want {
				t.Errorf("%d servers, want %d", len(got), want)
			}
			if n := strings.Count(f.log.String(), "listing started over"); n != tt.times {
				t.Errorf("started over %d times, want %d", n, tt.times)
			}
		})
	}
}
