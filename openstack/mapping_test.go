package openstack

import (
	"slices"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// Fields the upstream samples leave empty (they are non-admin views or show
// a fresh volume), set here on copies of their shapes.
func TestMappingEdgeCases(t *testing.T) {
	tests := []struct {
		name          string
		e             entity.Entity
		state, parent string
		links         []entity.Link
	}{
		{"scheduled server", mapServer(map[string]any{"id": "s1", "status": "SHUTOFF", "OS-EXT-SRV-ATTR:host": "compute-1"}),
			"SHUTOFF", "nova.host:compute-1", nil},
		{"forced-down host", mapHost(map[string]any{"host": "h", "state": "up", "forced_down": true, "zone": "az1"}, nil),
			"down", "nova.zone:az1", nil},
		{"unavailable zone", mapZone(map[string]any{"zoneName": "az1", "zoneState": map[string]any{"available": false}}),
			"unavailable", "", nil},
		{"instance port", mapPort(map[string]any{"id": "p", "status": "ACTIVE", "network_id": "n", "device_owner": "compute:nova", "device_id": "s1"}),
			"ACTIVE", "neutron.network:n", []entity.Link{{Key: "nova.instance:s1", Relation: "attached"}}},
		{"router port", mapPort(map[string]any{"id": "p", "status": "DOWN", "network_id": "n", "device_owner": "network:router_interface", "device_id": "r1"}),
			"DOWN", "neutron.network:n", nil},
		{"multi-attached volume", mapVolume(map[string]any{"id": "v", "status": "in-use", "attachments": []any{
			map[string]any{"server_id": "s2"}, map[string]any{"server_id": "s1"}, map[string]any{"server_id": "s2"}}}),
			"in-use", "", []entity.Link{{Key: "nova.instance:s1", Relation: "attached"}, {Key: "nova.instance:s2", Relation: "attached"}}},
	}
	for _, tt := range tests {
		if tt.e.State != tt.state || tt.e.ParentKey != tt.parent || !slices.Equal(tt.e.Links, tt.links) {
			t.Errorf("%s: state %q parent %q links %v, want %q %q %v", tt.name, tt.e.State, tt.e.ParentKey, tt.e.Links, tt.state, tt.parent, tt.links)
		}
	}
}

func TestStripVolatile(t *testing.T) {
	e := mapHost(map[string]any{"host": "h", "state": "up", "updated_at": "now", "zone": "z"},
		[]any{map[string]any{"id": "1", "uptime": "up 3 days"}, map[string]any{"id": "2", "uptime": nil}})
	stripVolatile(&e)
	if _, ok := e.Data["updated_at"]; ok {
		t.Error("updated_at kept")
	}
	for _, hv := range e.Data["hypervisors"].([]any) {
		if _, ok := hv.(map[string]any)["uptime"]; ok {
			t.Error("uptime kept")
		}
	}
	z := mapZone(map[string]any{"zoneName": "z", "hosts": map[string]any{"h": map[string]any{"nova-compute": map[string]any{"active": true, "updated_at": "now"}}}})
	stripVolatile(&z)
	svc := z.Data["hosts"].(map[string]any)["h"].(map[string]any)["nova-compute"].(map[string]any)
	if _, ok := svc["updated_at"]; ok || svc["active"] != true {
		t.Errorf("zone service = %v", svc)
	}
}
