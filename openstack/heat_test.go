package openstack

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// Ids of the fixtures the stack's resources point to.
const (
	fixtureStack  = "3095aefc-09fb-4bc7-b1f0-f21a304e864c"
	fixtureServer = "f5dc173b-6804-445a-a6d8-c705dad5b5eb"
	fixtureVolume = "cb49b381-9012-40cb-b8ee-80c19a4801b5"
	fixtureNet    = "d32019d3-bc6e-4319-9c1d-6722fc136a22"
	fixturePort   = "d80b1a3b-4fc1-49f3-952e-1e2ab7081d8b"
)

// resource returns a change for AddStackResource: the copy of Heat's sample
// resource (an OS::Heat::RandomString) gets another resource_type,
// physical_resource_id and name, and parent_resource when set (a resource
// of a nested stack, as nested_depth lists them).
func resource(typ, physID, name, parent string) func(map[string]any) {
	return func(o map[string]any) {
		o["resource_type"] = typ
		o["physical_resource_id"] = physID
		o["resource_name"], o["logical_resource_id"] = name, name
		if parent != "" {
			o["parent_resource"] = parent
		}
	}
}

func stackOf(t *testing.T, snap *entity.Snapshot, id string) entity.Entity {
	t.Helper()
	e, ok := byKey(snap)[entity.MakeKey(TypeStack, id)]
	if !ok {
		t.Fatalf("stack %s not in the snapshot (types %v)", id, snap.Types)
	}
	return e
}

// physIDs returns the physical_resource_id of each of data.resources, in
// order; nil when data has no resources at all.
func physIDs(t *testing.T, e entity.Entity) []string {
	t.Helper()
	v, ok := e.Data["resources"]
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("data.resources is %T", v)
	}
	out := []string{}
	for _, r := range list {
		out = append(out, str(r.(map[string]any), "physical_resource_id"))
	}
	return out
}

// The stack's data.resources holds the resources of the four types Vitrage
// maps, sorted by physical id, without their volatile fields; its links
// are "comprised" edges to their entities, sorted and deduplicated. The
// sample's RandomString and a server not created yet are left out.
func TestStackResources(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, nil)
	other := f.srv.AddStacks(1)[0]
	for _, add := range []func(map[string]any){
		resource("OS::Nova::Server", fixtureServer, "server", ""),
		resource("OS::Neutron::Port", fixturePort, "port", ""),
		resource("OS::Cinder::Volume", fixtureVolume, "volume", ""),
		resource("OS::Neutron::Net", fixtureNet, "net", ""),
		// The same server listed again from a nested stack.
		resource("OS::Nova::Server", fixtureServer, "server", "group"),
		resource("OS::Nova::Server", "", "pending", ""),
		resource("OS::Heat::ResourceGroup", "b2a0c3e5-0000-4000-8000-000000000001", "group", ""),
	} {
		if !f.srv.AddStackResource(fixtureStack, add) {
			t.Fatal("fixture stack missing")
		}
	}
	snap := f.collect(t)
	if !slices.Equal(snap.Types, AllTypes) {
		t.Fatalf("types = %v", snap.Types)
	}
	st := stackOf(t, snap, fixtureStack)
	wantIDs := []string{fixtureVolume, fixtureNet, fixturePort, fixtureServer, fixtureServer}
	if got := physIDs(t, st); !slices.Equal(got, wantIDs) {
		t.Errorf("resources = %v, want %v", got, wantIDs)
	}
	wantLinks := []entity.Link{
		{Key: "cinder.volume:" + fixtureVolume, Relation: "comprised"},
		{Key: "neutron.network:" + fixtureNet, Relation: "comprised"},
		{Key: "neutron.port:" + fixturePort, Relation: "comprised"},
		{Key: "nova.instance:" + fixtureServer, Relation: "comprised"},
	}
	if !slices.Equal(st.Links, wantLinks) {
		t.Errorf("links = %v, want %v", st.Links, wantLinks)
	}
	// Every link points at an entity of this very snapshot.
	all := byKey(snap)
	for _, l := range st.Links {
		if _, ok := all[l.Key]; !ok {
			t.Errorf("link to %s, not listed", l.Key)
		}
	}
	for _, r := range st.Data["resources"].([]any) {
		m := r.(map[string]any)
		for _, k := range []string{"links", "updated_time"} {
			if _, ok := m[k]; ok {
				t.Errorf("%s kept in %v", k, m)
			}
		}
		if m["resource_status"] != "CREATE_COMPLETE" || m["resource_status_reason"] != "state changed" || m["creation_time"] == nil {
			t.Errorf("resource not whole: %v", m)
		}
	}
	// The same-id server resources keep their order: the top one first.
	res := st.Data["resources"].([]any)
	if p, _ := res[len(res)-1].(map[string]any)["parent_resource"].(string); p != "group" {
		t.Errorf("nested server not last: %v", res)
	}
	// A stack without resources: an empty list, no links.
	o := stackOf(t, snap, other)
	if got := physIDs(t, o); got == nil || len(got) != 0 || o.Links != nil {
		t.Errorf("other stack: resources %v, links %v", got, o.Links)
	}
	if n := f.srv.Requests(openstacktest.Resources); n != 2 {
		t.Errorf("%d resource lists, want one per stack", n)
	}
	// The stack list's pages (2, the last empty) plus one per stack.
	if st := typeStatus(f.c, TypeStack); st.Count != 2 || st.Pages != 3+2 {
		t.Errorf("status = %+v", st)
	}
}

// Hundreds of stacks: one resource list each, never more than
// stackResourceWorkers at a time.
func TestStackResourcesBounded(t *testing.T) {
	f := newFixture(t, openstacktest.Options{PageSize: 50}, func(o *Options) { o.Types = []string{TypeStack} })
	f.srv.AddStacks(39)
	// Slow enough for the lists to overlap: unbounded, all 40 would.
	f.srv.SetLatency(openstacktest.Resources, 20*time.Millisecond)
	snap := f.collect(t)
	if len(snap.Entities) != 40 {
		t.Fatalf("%d stacks", len(snap.Entities))
	}
	if n := f.srv.Requests(openstacktest.Resources); n != 40 {
		t.Errorf("%d resource lists, want 40", n)
	}
	peak := f.srv.PeakRequests(openstacktest.Resources)
	t.Logf("at most %d resource lists at once", peak)
	if peak < 2 || peak > stackResourceWorkers {
		t.Errorf("%d resource lists at once, want 2 to %d", peak, stackResourceWorkers)
	}
}

// Changes of the resources as the next poll sees them: a resource added is
// an update of its stack alone; Heat's order and the volatile fields are
// no change.
func TestStackResourceChanges(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, nil)
	other := f.srv.AddStacks(1)[0]
	f.srv.AddStackResource(fixtureStack, resource("OS::Neutron::Port", fixturePort, "port", ""))
	f.srv.AddStackResource(fixtureStack, resource("OS::Cinder::Volume", fixtureVolume, "volume", ""))
	first := f.collect(t)
	steps := []struct {
		name    string
		change  func()
		updates []string
	}{
		{"unchanged", func() {}, nil},
		{"volatile fields", func() {
			f.srv.UpdateStackResources(fixtureStack, func(o map[string]any) {
				o["updated_time"] = "2026-01-01T00:00:00"
				o["links"] = []any{map[string]any{"href": "http://proxy/v1/x/stacks/simple_stack", "rel": "stack"}}
			})
		}, nil},
		{"another order", func() {
			// Removing and adding back the port puts it after the volume.
			f.srv.UpdateStackResources(fixtureStack, func(o map[string]any) {
				if o["resource_type"] == "OS::Neutron::Port" {
					o["resource_type"] = "OS::Heat::None"
				}
			})
			f.srv.AddStackResource(fixtureStack, resource("OS::Neutron::Port", fixturePort, "port", ""))
		}, nil},
		{"server added", func() {
			f.srv.AddStackResource(fixtureStack, resource("OS::Nova::Server", fixtureServer, "server", ""))
		}, []string{"heat.stack:" + fixtureStack}},
		{"a resource of the other stack fails", func() {
			f.srv.AddStackResource(other, resource("OS::Nova::Server", fixtureServer, "server", ""))
			f.srv.UpdateStackResources(other, func(o map[string]any) { o["resource_status"] = "CREATE_FAILED" })
		}, []string{"heat.stack:" + other}},
	}
	prev := first
	for _, s := range steps {
		s.change()
		next := f.collect(t)
		c, u, d := diff(t, prev, next)
		if len(c) != 0 || len(d) != 0 || !slices.Equal(u, s.updates) {
			t.Errorf("%s: creates %v updates %v deletes %v, want updates %v", s.name, c, u, d, s.updates)
		}
		prev = next
	}
	if l := stackOf(t, prev, fixtureStack).Links; len(l) != 3 || l[2].Key != "nova.instance:"+fixtureServer {
		t.Errorf("links after the server was added: %v", l)
	}
}

// A resource list that fails (500, time-out) fails the heat.stack listing
// of the poll like a failed page: no stack in the snapshot, so none is
// deleted; the other types are listed. A 404 for one stack (deleted after
// the stack list) keeps that stack, without resources.
func TestStackResourceFailures(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, nil)
	other := f.srv.AddStacks(1)[0]
	f.srv.AddStackResource(fixtureStack, resource("OS::Nova::Server", fixtureServer, "server", ""))
	f.srv.AddStackResource(other, resource("OS::Cinder::Volume", fixtureVolume, "volume", ""))

	f.srv.Fail(openstacktest.Resources+"/"+other, openstacktest.Failure{Mode: openstacktest.Fail500})
	snap := f.collect(t)
	if want := without(AllTypes, TypeStack); !slices.Equal(snap.Types, want) {
		t.Errorf("500: types = %v, want %v", snap.Types, want)
	}
	if n := len(ofType(snap, TypeStack)); n != 0 {
		t.Errorf("500: %d stacks in the snapshot", n)
	}
	if n := len(ofType(snap, TypeInstance)); n != 1 {
		t.Errorf("500: %d instances, want 1", n)
	}
	st := typeStatus(f.c, TypeStack)
	if !st.Failing || !strings.Contains(st.LastError, "heat: list resources of stack "+other) || !strings.Contains(st.LastError, "HTTP 500") {
		t.Errorf("500: status = %+v", st)
	}

	f.srv.ClearFailures()
	f.srv.Fail(openstacktest.Resources+"/"+other, openstacktest.Failure{Mode: openstacktest.NotFound})
	snap = f.collect(t)
	if !slices.Equal(snap.Types, AllTypes) {
		t.Fatalf("404: types = %v", snap.Types)
	}
	o := stackOf(t, snap, other)
	if _, ok := o.Data["resources"]; ok || o.Links != nil {
		t.Errorf("404: stack has resources %v, links %v", o.Data["resources"], o.Links)
	}
	if l := stackOf(t, snap, fixtureStack).Links; len(l) != 1 {
		t.Errorf("404 of the other stack: links = %v", l)
	}
	if st := typeStatus(f.c, TypeStack); st.Failing {
		t.Errorf("404: status = %+v", st)
	}

	// The stack really gone: Heat's own 404 (the fake checks name and id).
	f.srv.ClearFailures()
	f.srv.Remove(openstacktest.Stacks, other)
	snap = f.collect(t)
	if len(ofType(snap, TypeStack)) != 1 || !slices.Contains(snap.Types, TypeStack) {
		t.Errorf("after removal: %d stacks, types %v", len(ofType(snap, TypeStack)), snap.Types)
	}
}
