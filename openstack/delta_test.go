package openstack

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// deltaTypes are the types with a change filter.
var deltaTypes = []string{TypeInstance, TypeNetwork, TypePort, TypeVolume}

// newDeltaFixture is a fake cloud whose Neutron accepts changed_since, a
// collector listing the types with change filters, and a first full poll
// applied. The cloud's clock is moved a minute on first, so that the
// fixture items are older than the watermark's overlap.
func newDeltaFixture(t *testing.T, so openstacktest.Options, tweak func(*Options)) *fixture {
	t.Helper()
	if so.PageSize == 0 {
		so.PageSize = 100
	}
	f := newFixture(t, so, func(o *Options) {
		o.Types = deltaTypes
		if tweak != nil {
			tweak(o)
		}
	})
	f.srv.Advance(time.Minute)
	snap := f.applied(t)
	if !slices.Equal(snap.Types, f.c.opts.Types) {
		t.Fatalf("first poll listed %v completely", snap.Types)
	}
	for _, typ := range f.c.opts.Types {
		if st := typeStatus(f.c, typ); st.Mode != modeFull {
			t.Fatalf("first poll of %s: mode %q", typ, st.Mode)
		}
	}
	f.srv.Advance(time.Minute)
	return f
}

// applied collects and reports the snapshot applied, as the poll loop does
// after the engine committed it.
func (f *fixture) applied(t testing.TB) *entity.Snapshot {
	t.Helper()
	snap := f.collect(t)
	if snap.Applied != nil {
		snap.Applied()
	}
	return snap
}

func keysOf(ents []entity.Entity) []string {
	var out []string
	for _, e := range ents {
		out = append(out, entity.MakeKey(e.Type, e.ID))
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func prefixed(typ string, ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, entity.MakeKey(typ, id))
	}
	return sorted(out)
}

// After one change per type, a delta poll brings exactly those changes;
// the Neutron and Cinder types are complete through their id listings
// (Present), nova.instance is not complete (its deletes are explicit).
func TestDeltaPollBringsTheChanges(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{NeutronChangedSince: true}, nil)
	srv := f.srv
	server, port, vol := srv.IDs(openstacktest.Servers)[0], srv.IDs(openstacktest.Ports)[0], srv.IDs(openstacktest.Volumes)[0]
	srv.SetServerStatus(server, "SHUTOFF")
	srv.Update(openstacktest.Ports, port, func(o map[string]any) { o["status"] = "DOWN" })
	srv.Update(openstacktest.Volumes, vol, func(o map[string]any) { o["status"] = "available" })
	srv.Advance(time.Minute)
	snap := f.applied(t)
	want := sorted([]string{TypeInstance + ":" + server, TypePort + ":" + port, TypeVolume + ":" + vol})
	if got := keysOf(snap.Entities); !slices.Equal(got, want) {
		t.Fatalf("delta poll listed %v, want %v", got, want)
	}
	if st := byKey(snap)[TypeInstance+":"+server].State; st != "SHUTOFF" {
		t.Errorf("server state %q", st)
	}
	if want := []string{TypeNetwork, TypePort, TypeVolume}; !slices.Equal(snap.Types, want) {
		t.Errorf("complete types %v, want %v", snap.Types, want)
	}
	var wantPresent []string
	for typ, coll := range map[string]string{TypeNetwork: openstacktest.Networks, TypePort: openstacktest.Ports, TypeVolume: openstacktest.Volumes} {
		wantPresent = append(wantPresent, prefixed(typ, srv.IDs(coll)...)...)
	}
	if got := sorted(snap.Present); !slices.Equal(got, sorted(wantPresent)) {
		t.Errorf("present %v, want %v", got, sorted(wantPresent))
	}
	if len(snap.Deletes) != 0 {
		t.Errorf("deletes %v", snap.Deletes)
	}
	for _, typ := range deltaTypes {
		if st := typeStatus(f.c, typ); st.Mode != modeDelta || st.DeltaUnavailable != "" {
			t.Errorf("%s: mode %q (%s)", typ, st.Mode, st.DeltaUnavailable)
		}
	}
	// Nothing changed: nothing listed but ids.
	srv.Advance(time.Minute)
	if snap := f.applied(t); len(snap.Entities) != 0 || len(snap.Deletes) != 0 {
		t.Errorf("quiet delta poll listed %v, deletes %v", keysOf(snap.Entities), snap.Deletes)
	}
}

// Nova's deleted and soft-deleted servers are explicit deletes; a volume or
// port deleted is missing from its id listing (Present); nothing is
// missing from a delta's entities by absence.
func TestDeltaDeletes(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{NeutronChangedSince: true}, nil)
	srv := f.srv
	ids := srv.AddServers(2)
	srv.Advance(time.Minute)
	f.applied(t)
	srv.Advance(time.Minute)
	srv.Remove(openstacktest.Servers, ids[0])
	srv.SoftDelete(ids[1])
	port, vol := srv.IDs(openstacktest.Ports)[0], srv.IDs(openstacktest.Volumes)[0]
	srv.Remove(openstacktest.Ports, port)
	srv.Remove(openstacktest.Volumes, vol)
	srv.Advance(time.Minute)
	snap := f.applied(t)
	if got, want := sorted(snap.Deletes), prefixed(TypeInstance, ids...); !slices.Equal(got, want) {
		t.Errorf("deletes %v, want %v", got, want)
	}
	if len(snap.Entities) != 0 {
		t.Errorf("deleted servers listed as entities: %v", keysOf(snap.Entities))
	}
	for _, k := range []string{TypePort + ":" + port, TypeVolume + ":" + vol} {
		if slices.Contains(snap.Present, k) {
			t.Errorf("%s still present", k)
		}
	}
	if slices.Contains(snap.Types, TypeInstance) {
		t.Error("a delta of nova.instance claims to be complete")
	}
}

// Neutron refusing changed_since (its default filter_validation) is no
// error: the type is listed in full in the same poll, status says why; the
// following polls compare the resources' revision_number (one id and
// revision listing, then the details of what moved: a change, a tag, a new
// port; a port gone is missing from the listing); the filter is tried again
// after full_every.
func TestNeutronRefusalFallsBackToFull(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{}, nil)
	srv := f.srv
	snap := f.applied(t)
	st := typeStatus(f.c, TypePort)
	if st.Mode != modeFull || st.Failing || st.DeltaUnavailable == "" || !slices.Contains(snap.Types, TypePort) {
		t.Fatalf("refused: status %+v, types %v", st, snap.Types)
	}
	if got, want := keysOf(ofType(snap, TypePort)), prefixed(TypePort, srv.IDs(openstacktest.Ports)...); !slices.Equal(got, want) {
		t.Errorf("full listing after the refusal: %v, want %v", got, want)
	}
	if st := typeStatus(f.c, TypeInstance); st.Mode != modeDelta {
		t.Errorf("nova.instance mode %q: the refusal spread", st.Mode)
	}
	// Nothing changed: one request, the ids and revisions.
	before := srv.Requests(openstacktest.Ports)
	snap = f.applied(t)
	if n := srv.Requests(openstacktest.Ports) - before; n != 1 || len(ofType(snap, TypePort)) != 0 || typeStatus(f.c, TypePort).Mode != modeDelta {
		t.Errorf("quiet poll by revisions: %d requests, %v, mode %q", n, keysOf(ofType(snap, TypePort)), typeStatus(f.c, TypePort).Mode)
	}
	var neutron []string
	for _, k := range snap.Present {
		if strings.HasPrefix(k, "neutron.") {
			neutron = append(neutron, k)
		}
	}
	if got, want := sorted(neutron), sorted(append(prefixed(TypePort, srv.IDs(openstacktest.Ports)...), prefixed(TypeNetwork, srv.IDs(openstacktest.Networks)...)...)); !slices.Equal(got, want) {
		t.Errorf("present %v, want %v", got, want)
	}
	ports := srv.IDs(openstacktest.Ports)
	srv.Update(openstacktest.Ports, ports[0], func(o map[string]any) { o["status"] = "DOWN" })
	srv.Remove(openstacktest.Ports, ports[1])
	added := srv.Add(openstacktest.Ports, 1)[0]
	snap = f.applied(t)
	if got, want := keysOf(ofType(snap, TypePort)), prefixed(TypePort, ports[0], added); !slices.Equal(got, want) {
		t.Errorf("by revisions: listed %v, want %v", got, want)
	}
	if slices.Contains(snap.Present, TypePort+":"+ports[1]) || !slices.Contains(snap.Types, TypePort) {
		t.Errorf("the removed port is still present, or the listing is not complete")
	}
	// Once full_every has passed since the refusal, the next full listing
	// is followed by a new try, which succeeds now.
	srv.SetNeutronChangedSince(true)
	f.c.mu.Lock()
	for _, typ := range []string{TypePort, TypeNetwork} {
		d := f.c.delta(typ)
		d.refusedAt = d.refusedAt.Add(-f.c.opts.FullEvery.D())
		d.lastFull = d.lastFull.Add(-f.c.opts.FullEvery.D())
	}
	f.c.mu.Unlock()
	f.applied(t)
	if st := typeStatus(f.c, TypePort); st.Mode != modeFull {
		t.Errorf("full_every passed: mode %q", st.Mode)
	}
	srv.Advance(time.Minute)
	before = srv.Requests(openstacktest.Ports)
	f.applied(t)
	if st := typeStatus(f.c, TypePort); st.Mode != modeDelta || st.DeltaUnavailable != "" || srv.Requests(openstacktest.Ports)-before != 2 {
		t.Errorf("after the retry: mode %q (%s), %d requests", st.Mode, st.DeltaUnavailable, srv.Requests(openstacktest.Ports)-before)
	}
}

// full_every brings a full listing, which sees what the change filter
// cannot: a tag-only change, and a server deleted and archived between two
// polls (its DELETED row is gone before changes-since could show it).
func TestFullEvery(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{}, func(o *Options) { o.Types = []string{TypeInstance} })
	archived := f.srv.AddServers(1)[0]
	f.srv.Advance(time.Minute)
	f.applied(t)
	id := f.srv.IDs(openstacktest.Servers)[0]
	f.srv.UpdateQuiet(openstacktest.Servers, id, func(o map[string]any) { o["tags"] = []any{"blue"} })
	f.srv.Remove(openstacktest.Servers, archived)
	f.srv.Archive()
	f.srv.Advance(time.Minute)
	if snap := f.applied(t); len(snap.Entities) != 0 || len(snap.Deletes) != 0 || typeStatus(f.c, TypeInstance).Mode != modeDelta {
		t.Fatalf("delta saw the tag-only change or the archived delete: %v %v", keysOf(snap.Entities), snap.Deletes)
	}
	last := typeStatus(f.c, TypeInstance).LastFull
	f.c.mu.Lock()
	f.c.delta(TypeInstance).lastFull = time.Now().Add(-f.c.opts.FullEvery.D())
	f.c.mu.Unlock()
	snap := f.applied(t)
	st := typeStatus(f.c, TypeInstance)
	if st.Mode != modeFull || !slices.Equal(snap.Types, []string{TypeInstance}) || !st.LastFull.After(last) {
		t.Fatalf("after full_every: mode %q, types %v, last full %v (was %v)", st.Mode, snap.Types, st.LastFull, last)
	}
	tags, _ := byKey(snap)[TypeInstance+":"+id].Data["tags"].([]any)
	if len(tags) != 1 {
		t.Errorf("full listing lost the tag: %v", tags)
	}
	// Complete and without the archived server: the engine deletes it.
	if _, ok := byKey(snap)[TypeInstance+":"+archived]; ok {
		t.Error("the archived server is still listed")
	}
	if snap := f.applied(t); typeStatus(f.c, TypeInstance).Mode != modeDelta || len(snap.Entities) != 0 {
		t.Error("no delta after the full listing")
	}
}

// The watermark is the cloud's Date, less the overlap, whatever the local
// clock says; the next change listing asks from there.
func TestWatermarkFromDateHeader(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{ClockOffset: -3 * time.Hour}, func(o *Options) { o.Types = []string{TypeInstance} })
	cloudNow := f.srv.Now()
	f.applied(t)
	wm := typeStatus(f.c, TypeInstance).Watermark
	want := cloudNow.Truncate(time.Second).Add(-DefaultDeltaOverlap)
	if d := wm.Sub(want); d < 0 || d > 2*time.Second {
		t.Errorf("watermark %v, want the cloud's Date %v less %v", wm, cloudNow, DefaultDeltaOverlap)
	}
	// A change 5 s before the last poll's Date, inside the overlap, is
	// seen again; the engine finds it unchanged.
	id := f.srv.IDs(openstacktest.Servers)[0]
	f.srv.Advance(-5 * time.Second)
	f.srv.SetServerStatus(id, "PAUSED")
	f.srv.Advance(5 * time.Second)
	if snap := f.collect(t); len(snap.Entities) != 1 {
		t.Errorf("change inside the overlap: %v", keysOf(snap.Entities))
	}
}

// A poll that fails half-way, or that the engine does not apply, leaves the
// watermark where it was: the change is listed by the next poll.
func TestFailedPollKeepsTheWatermark(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{PageSize: 2}, func(o *Options) { o.Types = []string{TypeInstance} })
	ids := f.srv.AddServers(4)
	f.srv.Advance(time.Minute)
	wm := typeStatus(f.c, TypeInstance).Watermark
	f.srv.Fail(openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Fail500, Page: 2})
	if _, err := f.c.Collect(context.Background()); err == nil {
		t.Fatal("a failed page did not fail the poll")
	}
	f.srv.ClearFailures()
	if got := typeStatus(f.c, TypeInstance).Watermark; !got.Equal(wm) {
		t.Fatalf("watermark moved by a failed poll: %v → %v", wm, got)
	}
	// Listed, but never applied (the engine failed): still not moved.
	if snap := f.collect(t); len(snap.Entities) != 4 {
		t.Fatalf("listed %v", keysOf(snap.Entities))
	}
	if got := typeStatus(f.c, TypeInstance).Watermark; !got.Equal(wm) {
		t.Fatalf("watermark moved without Applied: %v → %v", wm, got)
	}
	snap := f.applied(t)
	if got := keysOf(snap.Entities); !slices.Equal(got, prefixed(TypeInstance, ids...)) {
		t.Errorf("the next poll lists %v, want the 4 new servers", got)
	}
	if got := typeStatus(f.c, TypeInstance).Watermark; !got.After(wm) {
		t.Errorf("watermark did not move after an applied poll")
	}
}

// Old clouds: Nova below 2.37 and Cinder below 3.60 are listed in full,
// status says why; Cinder is then listed at its default microversion.
func TestDeltaNeedsMicroversions(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{MaxMicroversion: "2.36", CinderMaxMicroversion: "3.59", NeutronChangedSince: true}, nil)
	f.applied(t)
	for _, typ := range []string{TypeInstance, TypeVolume} {
		if st := typeStatus(f.c, typ); st.Mode != modeFull || st.DeltaUnavailable == "" {
			t.Errorf("%s: mode %q, unavailable %q", typ, st.Mode, st.DeltaUnavailable)
		}
	}
	if st := typeStatus(f.c, TypePort); st.Mode != modeDelta {
		t.Errorf("neutron.port: mode %q", st.Mode)
	}
	if mv := f.c.Status()["cinder_microversion"]; mv != "" {
		t.Errorf("cinder microversion %v", mv)
	}
}

// status counts the requests and bytes of each type's last listing, as the
// cloud served them; the collector's totals add up.
func TestTrafficCounts(t *testing.T) {
	f := newFixture(t, openstacktest.Options{PageSize: 100}, func(o *Options) { o.Types = []string{TypeInstance} })
	f.srv.AddServers(250)
	f.applied(t)
	st := typeStatus(f.c, TypeInstance)
	// 3 pages and Nova's version document.
	if want := f.srv.BytesServed(openstacktest.Servers) + f.srv.BytesServed("versions"); st.Bytes != want || st.Requests != 4 {
		t.Errorf("status: %d requests, %d bytes; the cloud served 4, %d bytes", st.Requests, st.Bytes, want)
	}
	f.applied(t)
	st2 := typeStatus(f.c, TypeInstance)
	if reqs, bytes := f.c.Traffic(); reqs != st.Requests+st2.Requests || bytes != st.Bytes+st2.Bytes || st2.Requests != 3 {
		t.Errorf("totals %d requests, %d bytes; polls %+v %+v", reqs, bytes, st, st2)
	}
}

// A service that ignores the change filter (Cinder without its filter file)
// lists items the filter excludes: the listing stops there, the type is
// listed in full, and status says why.
func TestIgnoredFilterFallsBackToFull(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{CinderIgnoresFilters: true, NeutronChangedSince: true}, nil)
	vols := f.srv.Add(openstacktest.Volumes, 3)
	f.srv.Advance(time.Minute)
	snap := f.applied(t)
	st := typeStatus(f.c, TypeVolume)
	if st.Mode != modeFull || st.DeltaUnavailable != errFilterIgnored.Error() || st.Failing || !slices.Contains(snap.Types, TypeVolume) {
		t.Fatalf("status %+v, types %v", st, snap.Types)
	}
	if got := keysOf(ofType(snap, TypeVolume)); len(got) != 4 || !slices.Contains(got, TypeVolume+":"+vols[0]) {
		t.Errorf("volumes listed: %v", got)
	}
	if st := typeStatus(f.c, TypePort); st.Mode != modeDelta {
		t.Errorf("ports: mode %q", st.Mode)
	}
}

// A type turned off and on again is listed in full: the poll loop dropped
// its changes while it was off.
func TestReactivatedTypeListedInFull(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{NeutronChangedSince: true}, nil)
	f.c.SetActiveTypes([]string{TypePort})
	f.applied(t)
	if st := typeStatus(f.c, TypePort); st.Mode != modeDelta {
		t.Fatalf("port mode %q", st.Mode)
	}
	f.c.SetActiveTypes(nil) // every type again
	snap := f.applied(t)
	for typ, want := range map[string]string{TypeInstance: modeFull, TypeNetwork: modeFull, TypeVolume: modeFull, TypePort: modeDelta} {
		if st := typeStatus(f.c, typ); st.Mode != want {
			t.Errorf("%s: mode %q, want %s", typ, st.Mode, want)
		}
	}
	if !slices.Contains(snap.Types, TypeInstance) {
		t.Error("nova.instance not listed completely")
	}
}

// Cinder inserts a volume with a null updated_at, which no updated_at
// filter passes: a new volume is found by its created_at, in the next delta
// poll, and then by its first update.
func TestNewVolumeSeenBeforeItsFirstUpdate(t *testing.T) {
	f := newDeltaFixture(t, openstacktest.Options{}, func(o *Options) { o.Types = []string{TypeVolume} })
	id := f.srv.Add(openstacktest.Volumes, 1)[0]
	f.srv.Advance(time.Minute)
	snap := f.applied(t)
	if got := keysOf(snap.Entities); !slices.Equal(got, []string{TypeVolume + ":" + id}) || typeStatus(f.c, TypeVolume).Mode != modeDelta {
		t.Fatalf("new volume: listed %v in mode %s", got, typeStatus(f.c, TypeVolume).Mode)
	}
	f.srv.Update(openstacktest.Volumes, id, func(o map[string]any) { o["status"] = "error" })
	f.srv.Advance(time.Minute)
	snap = f.applied(t)
	if got := keysOf(snap.Entities); len(got) != 1 || byKey(snap)[TypeVolume+":"+id].State != "error" {
		t.Errorf("its first update: %v", got)
	}
}
