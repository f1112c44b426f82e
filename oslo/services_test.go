package oslo

import (
	"testing"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// listObjects returns the objects of an API list response ({"ports": [...]}).
func listObjects(t *testing.T, path, key string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, o := range loadInner(t, path)[key].([]any) {
		out = append(out, o.(map[string]any))
	}
	if len(out) == 0 {
		t.Fatalf("%s: no %s", path, key)
	}
	return out
}

// TestMapNeutron builds the messages Neutron's API controller emits
// ({"network": obj}, {"port": obj}, deletes with <resource>_id) from the real
// API objects: Neutron has no upstream notification sample.
func TestMapNeutron(t *testing.T) {
	m := newMapper(t, Options{Source: "cloud"})
	for _, net := range listObjects(t, "testdata/neutron/networks-list-response.json", "networks") {
		ev := mapOne(t, m, onWire(t, map[string]any{"event_type": "network.create.end", "payload": map[string]any{"network": net}}, sampleTime))
		check(t, ev, want{entity.Update, "neutron.network:" + net["id"].(string), net["name"].(string), "ACTIVE", net["project_id"].(string), "", nil}, sampleTime, "cloud")
	}
	for _, port := range listObjects(t, "testdata/neutron/ports-list-response.json", "ports") {
		id := port["id"].(string)
		// These ports belong to routers: no link to an instance.
		ev := mapOne(t, m, onWire(t, map[string]any{"event_type": "port.update.end", "payload": map[string]any{"port": port}}, sampleTime))
		check(t, ev, want{entity.Update, "neutron.port:" + id, port["name"].(string), port["status"].(string), port["project_id"].(string), "neutron.network:" + port["network_id"].(string), nil}, sampleTime, "cloud")
		ev = mapOne(t, m, onWire(t, map[string]any{"event_type": "port.delete.end", "payload": map[string]any{"port_id": id, "port": port}}, sampleTime))
		if ev.Action != entity.Delete || ev.Entity.Key != "neutron.port:"+id {
			t.Fatalf("port.delete.end: %+v", ev)
		}
	}
	// An older Neutron sends the id alone.
	ev := mapOne(t, m, onWire(t, map[string]any{"event_type": "network.delete.end", "payload": map[string]any{"network_id": "d32019d3-bc6e-4319-9c1d-6722fc136a22"}}, sampleTime))
	check(t, ev, want{entity.Delete, "neutron.network:d32019d3-bc6e-4319-9c1d-6722fc136a22", "", "", "", "", nil}, sampleTime, "cloud")

	// A request's .start carries the request body, not the resource.
	evs, err := m.Map(onWire(t, map[string]any{"event_type": "port.create.start", "payload": map[string]any{"port": map[string]any{"name": "x"}}}, sampleTime))
	if err != nil || len(evs) != 0 {
		t.Fatalf("port.create.start: %v %v", evs, err)
	}
}

// TestMapNeutronComputePort uses vitrage's PORT_CREATE_END shape, its "###"
// placeholders filled with ids from the other fixtures.
func TestMapNeutronComputePort(t *testing.T) {
	payload := loadInner(t, "testdata/vitrage/PORT_CREATE_END.json")
	port := payload["port"].(map[string]any)
	port["id"] = "d80b1a3b-4fc1-49f3-952e-1e2ab7081d8b"
	port["network_id"] = "70c1db1f-b701-45bd-96e0-a313ee3430b3"
	port["device_id"] = novaServer
	port["binding:host_id"] = "compute"
	ev := mapOne(t, newMapper(t, Options{}), onWire(t, map[string]any{"event_type": "port.create.end", "payload": payload}, sampleTime))
	check(t, ev, want{entity.Update, "neutron.port:d80b1a3b-4fc1-49f3-952e-1e2ab7081d8b", "", "DOWN", "ef3f81058a934157b42454e3fc63c213",
		"neutron.network:70c1db1f-b701-45bd-96e0-a313ee3430b3",
		[]entity.Link{{Key: "nova.instance:" + novaServer, Relation: "attached"}}}, sampleTime, "")
}

// TestMapCinderAttach uses vitrage's VOLUME_ATTACH_END: cinder's attachment
// objects name the server instance_uuid and embed the volume with its CHAP
// secret, which must not reach the entity's data.
func TestMapCinderAttach(t *testing.T) {
	payload := loadInner(t, "testdata/vitrage/VOLUME_ATTACH_END.json")
	ev := mapOne(t, newMapper(t, Options{}), onWire(t, map[string]any{"event_type": "volume.attach.end", "payload": payload}, sampleTime))
	check(t, ev, want{entity.Update, "cinder.volume:5e41d178-4349-47aa-9be9-a9ee80ccdcc8", "", "in-use", "ef3f81058a934157b42454e3fc63c213", "",
		[]entity.Link{{Key: "nova.instance:e9687e55-307b-4d1a-b57d-778cf52d78ee", Relation: "attached"}}}, sampleTime, "")
	att := ev.Entity.Data["volume_attachment"].([]any)[0].(map[string]any)
	if _, ok := att["volume"]; ok {
		t.Fatal("the attachment's volume copy (with provider_auth) is still in data")
	}

	// A detached attachment is no link; delete.end deletes.
	payload = loadInner(t, "testdata/vitrage/VOLUME_ATTACH_END.json")
	payload["volume_attachment"].([]any)[0].(map[string]any)["attach_status"] = "detached"
	ev = mapOne(t, newMapper(t, Options{}), onWire(t, map[string]any{"event_type": "volume.delete.end", "payload": payload}, sampleTime))
	if ev.Action != entity.Delete || len(ev.Entity.Links) != 0 {
		t.Fatalf("volume.delete.end: %+v", ev)
	}
}

// TestMapHeat builds heat's format_notification_body keys from the stack of
// the API sample (heat has no upstream notification sample).
func TestMapHeat(t *testing.T) {
	st := listObjects(t, "testdata/heat/stacks-list-response.json", "stacks")[0]
	payload := map[string]any{
		"tenant_id":      "eb1c63a4f77141548385f113a28f0f52",
		"user_id":        "demo",
		"user_identity":  "09a0a6b1f1d34b1b8f3e3b8c7e0e4f59",
		"username":       "demo",
		"stack_identity": st["id"],
		"stack_name":     st["stack_name"],
		"state":          st["stack_status"],
		"state_reason":   st["stack_status_reason"],
		"create_at":      st["creation_time"],
		"description":    st["description"],
		"updated_at":     st["updated_time"],
		"tags":           st["tags"],
	}
	m := newMapper(t, Options{Source: "cloud"})
	key := "heat.stack:3095aefc-09fb-4bc7-b1f0-f21a304e864c"
	ev := mapOne(t, m, onWire(t, map[string]any{"event_type": "orchestration.stack.create.end", "publisher_id": "orchestration.host", "payload": payload}, sampleTime))
	check(t, ev, want{entity.Update, key, "simple_stack", "CREATE_COMPLETE", "eb1c63a4f77141548385f113a28f0f52", "", nil}, sampleTime, "cloud")
	// The notification lists no resources: the stack keeps its comprised
	// links (the poll reads them).
	if !ev.KeepLinks {
		t.Error("heat event without KeepLinks: every notification would drop the stack's links")
	}
	payload["state"] = "DELETE_COMPLETE"
	ev = mapOne(t, m, onWire(t, map[string]any{"event_type": "orchestration.stack.delete.end", "payload": payload}, sampleTime))
	check(t, ev, want{entity.Delete, key, "simple_stack", "DELETE_COMPLETE", "eb1c63a4f77141548385f113a28f0f52", "", nil}, sampleTime, "cloud")
}
