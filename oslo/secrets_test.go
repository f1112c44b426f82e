package oslo

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// tokenValue stands for a Keystone token in the tests: it must not survive
// mapping anywhere.
const tokenValue = "gAAAAABl-secret-keystone-token-0123456789"

// TestMapDropsSecrets: a notification whose payload carries a request
// context and secret fields maps to data without any of them, and the
// notification's own payload is left as it was.
func TestMapDropsSecrets(t *testing.T) {
	inner := loadInner(t, "testdata/nova-versioned/instance-create-end.json")
	// As in legacy scheduler.select_destinations payloads: the request
	// context, token included, inside the payload.
	d := inner["payload"].(map[string]any)["nova_object.data"].(map[string]any)
	d["context"] = map[string]any{"auth_token": tokenValue, "user_id": "u"}
	d["_context_auth_token"] = tokenValue
	d["admin_password"] = tokenValue
	d["user_data"] = tokenValue
	d["block_devices"] = []any{map[string]any{"connection_info": map[string]any{"auth_password": tokenValue, "driver": "rbd"}}}
	// The envelope's own context keys, as oslo's notifier adds them.
	inner["_context_auth_token"] = tokenValue
	inner["_context_service_token"] = tokenValue

	n := onWire(t, inner, sampleTime)
	ev := mapOne(t, newMapper(t, Options{}), n)
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), tokenValue) {
		t.Fatalf("a secret survived mapping: %s", b)
	}
	// What is not secret stays.
	bd, _ := ev.Entity.Data["block_devices"].([]any)
	if ev.Entity.Data["uuid"] != novaServer || len(bd) != 1 || bd[0].(map[string]any)["connection_info"].(map[string]any)["driver"] != "rbd" {
		t.Fatalf("data lost more than the secrets: %v", ev.Entity.Data)
	}
	// Map does not modify the notification.
	raw, _ := json.Marshal(n.Payload)
	if strings.Count(string(raw), tokenValue) != 5 {
		t.Fatalf("the notification's payload was modified: %s", raw)
	}
}

func TestSecretKey(t *testing.T) {
	for k, want := range map[string]bool{
		"auth_token": true, "_context_auth_token": true, "context": true, "_context_request_id": true,
		"adminPass": true, "admin_password": true, "provider_auth": true, "user_data": true, "service_token": true,
		"SECRET_KEY": true, "credentials": true,
		"uuid": false, "key_name": false, "display_name": false, "host": false, "state": false,
	} {
		if got := secretKey(k); got != want {
			t.Errorf("secretKey(%q) = %v, want %v", k, got, want)
		}
	}
}

// TestTypesCoverMappedEvents: every fixture maps to a type Types lists
// (the sidecar picks the collectors to catch up by these types).
func TestTypesCoverMappedEvents(t *testing.T) {
	m := newMapper(t, Options{NovaFormat: NovaBoth})
	types := m.Types()
	if !slices.IsSorted(types) {
		t.Fatalf("Types not sorted: %v", types)
	}
	for _, f := range []string{"nova-versioned/instance-create-end.json", "nova-versioned/service-update.json",
		"nova-legacy/scenario3_legacy_instance-create-end.json", "cinder/scenario_1_volume-create.json"} {
		evs, err := m.Map(onWire(t, loadInner(t, "testdata/"+f), sampleTime))
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if !slices.Contains(types, ev.Entity.Type) {
				t.Errorf("%s maps to %s, not in Types %v", f, ev.Entity.Type, types)
			}
		}
	}
	for _, typ := range []string{entity.TypeNetwork, entity.TypePort, entity.TypeStack} {
		if !slices.Contains(types, typ) {
			t.Errorf("Types misses %s", typ)
		}
	}
}
