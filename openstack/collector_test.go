package openstack

import (
	"slices"
	"strings"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// Every type maps from its upstream fixture, served a page of one item at a
// time, with the normalization table's key, name, state, project and parent.
func TestCollectFixtures(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, nil)
	snap := f.collect(t)
	if !slices.Equal(snap.Types, AllTypes) {
		t.Fatalf("types = %v, want %v", snap.Types, AllTypes)
	}
	got := byKey(snap)
	tests := []struct {
		key, name, state, project, parent string
		links                             []entity.Link
	}{
		{"nova.instance:f5dc173b-6804-445a-a6d8-c705dad5b5eb", "new-server-test", "ACTIVE", "6f70656e737461636b20342065766572", "", nil},
		{"nova.host:host1", "host1", "up", "", "nova.zone:nova", nil},
		{"nova.host:host2", "host2", "down", "", "nova.zone:nova", nil},
		{"nova.zone:nova", "nova", "available", "", "", nil},
		{"neutron.network:d32019d3-bc6e-4319-9c1d-6722fc136a22", "net1", "ACTIVE", "4fd44f30292945e481c7b8a0c8908869", "", nil},
		{"neutron.network:db193ab3-96e3-4cb3-8fc5-05f4296d0324", "net2", "ACTIVE", "26a7980765d0414dbc1fc1f88cdb7e6e", "", nil},
		{"neutron.port:d80b1a3b-4fc1-49f3-952e-1e2ab7081d8b", "", "ACTIVE", "", "neutron.network:70c1db1f-b701-45bd-96e0-a313ee3430b3", nil},
		{"neutron.port:f71a6703-d6de-4be1-a91a-a570ede1d159", "", "ACTIVE", "d397de8a63f341818f198abb0966f6f3", "neutron.network:f27aa545-cbdd-4907-b0c6-c9e8b039dcc2", nil},
		{"cinder.volume:cb49b381-9012-40cb-b8ee-80c19a4801b5", "", "creating", "89afd400-b646-4bbc-b12b-c0a4d63e5bd3", "", nil},
		{"heat.stack:3095aefc-09fb-4bc7-b1f0-f21a304e864c", "simple_stack", "CREATE_COMPLETE", "", "", nil},
	}
	if len(got) != len(tests) {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		t.Errorf("got %d entities %v, want %d", len(got), keys, len(tests))
	}
	for _, tt := range tests {
		e, ok := got[tt.key]
		if !ok {
			t.Errorf("%s: missing", tt.key)
			continue
		}
		if e.Name != tt.name || e.State != tt.state || e.Project != tt.project || e.ParentKey != tt.parent || !slices.Equal(e.Links, tt.links) {
			t.Errorf("%s: got name=%q state=%q project=%q parent=%q links=%v, want %q %q %q %q %v",
				tt.key, e.Name, e.State, e.Project, e.ParentKey, e.Links, tt.name, tt.state, tt.project, tt.parent, tt.links)
		}
		if e.Data == nil {
			t.Errorf("%s: no data", tt.key)
		}
	}
	// Data is the source object whole.
	srv := got["nova.instance:f5dc173b-6804-445a-a6d8-c705dad5b5eb"].Data
	if srv["OS-EXT-STS:vm_state"] != "active" || srv["flavor"] == nil {
		t.Errorf("server data not whole: %v", srv)
	}
	// The host's hypervisor is merged, its volatile uptime and the service
	// heartbeat dropped.
	h2 := got["nova.host:host2"].Data
	hvs, _ := h2["hypervisors"].([]any)
	if len(hvs) != 1 {
		t.Fatalf("host2 hypervisors = %v", h2["hypervisors"])
	}
	if _, ok := hvs[0].(map[string]any)["uptime"]; ok {
		t.Error("hypervisor uptime kept")
	}
	if _, ok := h2["updated_at"]; ok {
		t.Error("service updated_at kept")
	}
	// One page per fixture item, plus the empty page a full last page
	// links to (1 server: 2 pages).
	if st := typeStatus(f.c, TypeInstance); st.Count != 1 || st.Pages != 2 || st.Failing || st.LastSuccess.IsZero() {
		t.Errorf("nova.instance status = %+v", st)
	}
	if st := typeStatus(f.c, TypeNetwork); st.Count != 2 || st.Pages != 3 {
		t.Errorf("neutron.network status = %+v", st)
	}
	// Heat: the stack list's 2 pages and the stack's resource list.
	if st := typeStatus(f.c, TypeStack); st.Count != 1 || st.Pages != 3 {
		t.Errorf("heat.stack status = %+v", st)
	}
}

// Only the configured types are listed.
func TestCollectSomeTypes(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, func(o *Options) { o.Types = []string{TypeStack, TypeNetwork} })
	snap := f.collect(t)
	if !slices.Equal(snap.Types, []string{TypeStack, TypeNetwork}) || len(snap.Entities) != 3 {
		t.Fatalf("types %v, %d entities", snap.Types, len(snap.Entities))
	}
	if f.srv.Requests(openstacktest.Servers) != 0 {
		t.Error("servers listed though not configured")
	}
}

// Status change, removal and an unchanged poll, across many pages.
func TestPollChanges(t *testing.T) {
	f := newFixture(t, openstacktest.Options{PageSize: 2}, func(o *Options) { o.Types = []string{TypeInstance} })
	ids := f.srv.AddServers(6)
	first := f.collect(t)
	if n := len(first.Entities); n != 7 {
		t.Fatalf("first poll: %d servers, want 7", n)
	}
	same := f.collect(t)
	if c, u, d := diff(t, first, same); len(c)+len(u)+len(d) != 0 {
		t.Fatalf("unchanged poll: creates %v updates %v deletes %v", c, u, d)
	}
	f.srv.SetServerStatus(ids[3], "SHUTOFF")
	changed := f.collect(t)
	c, u, d := diff(t, same, changed)
	if len(c) != 0 || len(d) != 0 || !slices.Equal(u, []string{"nova.instance:" + ids[3]}) {
		t.Fatalf("status change: creates %v updates %v deletes %v", c, u, d)
	}
	if e := byKey(changed)["nova.instance:"+ids[3]]; e.State != "SHUTOFF" {
		t.Errorf("state = %q", e.State)
	}
	f.srv.Remove(openstacktest.Servers, ids[5])
	removed := f.collect(t)
	c, u, d = diff(t, changed, removed)
	if len(c) != 0 || len(u) != 0 || !slices.Equal(d, []string{"nova.instance:" + ids[5]}) {
		t.Fatalf("removal: creates %v updates %v deletes %v", c, u, d)
	}
}

// A listing whose size is not a multiple of the page ends on a short page
// without a next link; a bigger limit than the service's is capped by it.
func TestPagingShortLastPage(t *testing.T) {
	f := newFixture(t, openstacktest.Options{PageSize: 3}, func(o *Options) { o.Types = []string{TypeInstance} })
	f.srv.AddServers(6) // 7 servers: pages of 3, 3, 1
	snap := f.collect(t)
	if len(snap.Entities) != 7 {
		t.Fatalf("%d servers", len(snap.Entities))
	}
	if st := typeStatus(f.c, TypeInstance); st.Pages != 3 {
		t.Errorf("pages = %d, want 3", st.Pages)
	}
}

// The catalog of the keystone sample has no volumev3: cinder fails with
// ErrNoEndpoint and the other types are listed.
func TestCinderNotInCatalog(t *testing.T) {
	f := newFixture(t, openstacktest.Options{NoVolumeV3: true}, nil)
	snap := f.collect(t)
	if slices.Contains(snap.Types, TypeVolume) || len(ofType(snap, TypeVolume)) != 0 {
		t.Fatalf("cinder listed without an endpoint: %v", snap.Types)
	}
	if !slices.Equal(snap.Types, without(AllTypes, TypeVolume)) {
		t.Errorf("types = %v", snap.Types)
	}
	st := typeStatus(f.c, TypeVolume)
	if !st.Failing || !strings.Contains(st.LastError, "no endpoint in the catalog") || !strings.Contains(st.LastError, "volumev3") {
		t.Errorf("cinder status = %+v", st)
	}
}

// TestActiveTypesSkipListings: a type nobody wants is not listed at all, and
// the snapshot does not claim it (so nothing of it is deleted).
func TestActiveTypesSkipListings(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, nil)
	f.c.SetActiveTypes([]string{"neutron.network"})
	snap := f.collect(t)
	if len(snap.Types) != 1 || snap.Types[0] != "neutron.network" {
		t.Fatalf("types %v", snap.Types)
	}
	for _, e := range snap.Entities {
		if e.Type != "neutron.network" {
			t.Fatalf("listed inactive type %s", e.Type)
		}
	}
	if n := f.srv.Requests(openstacktest.Servers); n != 0 {
		t.Fatalf("servers listed %d times while nova.instance is inactive", n)
	}
	f.c.SetActiveTypes(nil)
	if snap := f.collect(t); len(snap.Types) < 2 || f.srv.Requests(openstacktest.Servers) == 0 {
		t.Fatalf("after re-activating all types: %v", snap.Types)
	}
}

// An entity made from one listed item carries the item's fingerprint: the
// same while the cloud answers the same bytes, another when the item
// changes. Hosts (services and hypervisors merged) and stacks (resources
// fetched apart) have none: their bytes are not all in one item.
func TestFingerprints(t *testing.T) {
	f := newFixture(t, openstacktest.Options{}, nil)
	first := byKey(f.collect(t))
	second := byKey(f.collect(t))
	for key, e := range first {
		typ, _ := entity.SplitKey(key)
		single := typ != TypeHost && typ != TypeStack
		if (e.Fingerprint != [16]byte{}) != single {
			t.Errorf("%s: fingerprint %x, want one: %t", key, e.Fingerprint, single)
		}
		if second[key].Fingerprint != e.Fingerprint {
			t.Errorf("%s: fingerprint moved on an unchanged cloud", key)
		}
	}
	const server = "f5dc173b-6804-445a-a6d8-c705dad5b5eb"
	if !f.srv.SetServerStatus(server, "SHUTOFF") {
		t.Fatal("no fixture server")
	}
	third := byKey(f.collect(t))
	key := entity.MakeKey(TypeInstance, server)
	if third[key].Fingerprint == first[key].Fingerprint || third[key].State != "SHUTOFF" {
		t.Fatalf("changed server: fingerprint %x (was %x), state %s", third[key].Fingerprint, first[key].Fingerprint, third[key].State)
	}
}
