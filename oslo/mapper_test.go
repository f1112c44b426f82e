package oslo

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

var sampleTime = time.Date(2012, 10, 29, 13, 42, 11, 0, time.UTC)

// loadInner reads a fixture holding an inner oslo message.
func loadInner(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// onWire stamps an inner message as oslo.messaging does, wraps it in the 2.0
// envelope and decodes it again.
func onWire(t *testing.T, inner map[string]any, ts time.Time) *Notification {
	t.Helper()
	_, hasTS := inner["timestamp"]
	_, hasMeta := inner["metadata"]
	if !hasTS && !hasMeta {
		inner["timestamp"] = FormatTime(ts)
	}
	inner["message_id"] = "7b8f2c1e-3c0a-4b8e-9d55-2f0d8f6c1a00"
	inner["_unique_id"] = "a7d1f0c2b3e44f5d8c9b0a1e2f3d4c5b"
	body, err := Encode(inner)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mapOne(t *testing.T, m *Mapper, n *Notification) entity.Event {
	t.Helper()
	evs, err := m.Map(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%s: %d events, want 1", n.EventType, len(evs))
	}
	return evs[0]
}

func newMapper(t *testing.T, o Options) *Mapper {
	t.Helper()
	m, err := NewMapper(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// want is the normalized part of an expected event.
type want struct {
	action, key, name, state, project, parent string
	links                                     []entity.Link
}

func check(t *testing.T, ev entity.Event, w want, ts time.Time, source string) {
	t.Helper()
	e := ev.Entity
	got := want{ev.Action, e.Key, e.Name, e.State, e.Project, e.ParentKey, e.Links}
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("got  %+v\nwant %+v", got, w)
	}
	typ, id := entity.SplitKey(e.Key)
	if e.Type != typ || e.ID != id {
		t.Fatalf("type/id %q %q do not match key %q", e.Type, e.ID, e.Key)
	}
	if !e.Timestamp.Equal(ts) || e.Source != source {
		t.Fatalf("timestamp %v source %q, want %v %q", e.Timestamp, e.Source, ts, source)
	}
	if ev.Action != entity.Delete && e.Data == nil {
		t.Fatal("no data")
	}
}

const (
	novaServer  = "178b0921-8f85-4257-88b6-2e743b5a975c"
	novaProject = "6f70656e737461636b20342065766572"
)

func TestMapFixtures(t *testing.T) {
	inst := "nova.instance:" + novaServer
	tests := []struct {
		file string
		want want
	}{
		{"nova-versioned/instance-create-end.json", want{entity.Update, inst, "some-server", "ACTIVE", novaProject, "nova.host:compute", nil}},
		// state active, task_state scheduling: Nova's API shows ACTIVE.
		{"nova-versioned/instance-update.json", want{entity.Update, inst, "some-server", "ACTIVE", novaProject, "nova.host:compute", nil}},
		{"nova-versioned/instance-power_off-end.json", want{entity.Update, inst, "some-server", "SHUTOFF", novaProject, "nova.host:compute", nil}},
		{"nova-versioned/instance-delete-end.json", want{entity.Delete, inst, "some-server", "DELETED", novaProject, "nova.host:compute", nil}},
		{"nova-versioned/service-update.json", want{entity.Update, "nova.host:host1", "host1", "up", "", "nova.zone:nova", nil}},
		{"nova-legacy/scenario3_legacy_instance-create-end.json", want{entity.Update, "nova.instance:c03c0bf9-f46e-4e4f-93f1-817568567ee2", "INSTANCE_0", "ACTIVE", "57ab04ad6d3b495789a58258bc00842b", "nova.host:Node_0", nil}},
		{"cinder/scenario_1_volume-create.json", want{entity.Update, "cinder.volume:990a723f-6c19-4f83-8526-6383c9e9389f", "name_00", "available", "52044438-21f2-4a48-add4-d48bab20f7e1", "",
			[]entity.Link{{Key: "nova.instance:server", Relation: "attached"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			// A fresh mapper each: "auto" would drop the legacy sample after a versioned one.
			m := newMapper(t, Options{Source: "cloud"})
			inner := loadInner(t, "testdata/"+tc.file)
			ts := sampleTime
			if md, ok := inner["metadata"].(map[string]any); ok {
				ts, _ = ParseTime(md["timestamp"].(string))
			}
			ev := mapOne(t, m, onWire(t, inner, sampleTime))
			check(t, ev, tc.want, ts, "cloud")
			for k := range ev.Entity.Data {
				if strings.HasPrefix(k, "nova_object.") {
					t.Fatalf("data keeps wrapper key %q", k)
				}
			}
		})
	}
}

func TestMapVersionedDataUnwrapped(t *testing.T) {
	m := newMapper(t, Options{})
	ev := mapOne(t, m, onWire(t, loadInner(t, "testdata/nova-versioned/instance-create-end.json"), sampleTime))
	flavor, _ := ev.Entity.Data["flavor"].(map[string]any)
	if flavor["name"] != "test_flavor" {
		t.Fatalf("flavor not unwrapped: %v", ev.Entity.Data["flavor"])
	}
	ips, _ := ev.Entity.Data["ip_addresses"].([]any)
	if len(ips) != 1 || ips[0].(map[string]any)["address"] != "192.168.1.3" {
		t.Fatalf("ip_addresses not unwrapped: %v", ev.Entity.Data["ip_addresses"])
	}
}

func TestMapDeterministic(t *testing.T) {
	m := newMapper(t, Options{Source: "cloud"})
	inner := loadInner(t, "testdata/nova-versioned/instance-power_off-end.json")
	body, err := Encode(map[string]any{"event_type": inner["event_type"], "payload": inner["payload"], "timestamp": "2026-01-01 00:00:00.5"})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]entity.Event
	for range 2 {
		n, err := Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := m.Map(n)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, evs)
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		t.Fatal("the same message mapped to different events")
	}
}

func TestMapServiceState(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(d map[string]any)
		ts    time.Time
		state string
		zone  string
		none  bool
	}{
		{name: "fresh heartbeat", ts: sampleTime, state: "up", zone: "nova.zone:nova"},
		{name: "stale heartbeat", ts: sampleTime.Add(2 * time.Minute), state: "down", zone: "nova.zone:nova"},
		{name: "forced down", edit: func(d map[string]any) { d["forced_down"] = true }, ts: sampleTime, state: "down", zone: "nova.zone:nova"},
		{name: "never reported", edit: func(d map[string]any) { d["last_seen_up"] = nil }, ts: sampleTime, state: "up", zone: "nova.zone:nova"},
		{name: "zone given", edit: func(d map[string]any) { d["availability_zone"] = "az1" }, ts: sampleTime, state: "up", zone: "nova.zone:az1"},
		{name: "not compute", edit: func(d map[string]any) { d["binary"] = "nova-scheduler" }, ts: sampleTime, none: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := loadInner(t, "testdata/nova-versioned/service-update.json")
			if tc.edit != nil {
				tc.edit(inner["payload"].(map[string]any)["nova_object.data"].(map[string]any))
			}
			evs, err := newMapper(t, Options{}).Map(onWire(t, inner, tc.ts))
			if err != nil {
				t.Fatal(err)
			}
			if tc.none {
				if len(evs) != 0 {
					t.Fatalf("got %v, want none", evs)
				}
				return
			}
			if e := evs[0].Entity; e.State != tc.state || e.ParentKey != tc.zone {
				t.Fatalf("state %q parent %q, want %q %q", e.State, e.ParentKey, tc.state, tc.zone)
			}
		})
	}
	inner := loadInner(t, "testdata/nova-versioned/service-update.json")
	inner["event_type"] = "service.delete"
	if ev := mapOne(t, newMapper(t, Options{}), onWire(t, inner, sampleTime)); ev.Action != entity.Delete {
		t.Fatalf("service.delete: action %q", ev.Action)
	}
}

func TestMapNovaFormat(t *testing.T) {
	legacy := func() *Notification {
		return onWire(t, loadInner(t, "testdata/nova-legacy/scenario3_legacy_instance-create-end.json"), sampleTime)
	}
	versioned := func() *Notification {
		return onWire(t, loadInner(t, "testdata/nova-versioned/instance-create-end.json"), sampleTime)
	}
	count := func(m *Mapper, n *Notification) int {
		evs, err := m.Map(n)
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	auto := newMapper(t, Options{})
	if count(auto, legacy()) != 1 || count(auto, versioned()) != 1 || count(auto, legacy()) != 0 {
		t.Fatal("auto: legacy must map until a versioned instance notification was seen")
	}
	v := newMapper(t, Options{NovaFormat: NovaVersioned})
	if count(v, legacy()) != 0 || count(v, versioned()) != 1 {
		t.Fatal("versioned")
	}
	u := newMapper(t, Options{NovaFormat: NovaUnversioned})
	if count(u, versioned()) != 0 || count(u, legacy()) != 1 {
		t.Fatal("unversioned")
	}
	b := newMapper(t, Options{NovaFormat: NovaBoth})
	if count(b, versioned()) != 1 || count(b, legacy()) != 1 {
		t.Fatal("both")
	}
	if _, err := NewMapper(Options{NovaFormat: "json"}); err == nil {
		t.Fatal("bad nova_format accepted")
	}
}

func TestMapErrors(t *testing.T) {
	tests := []struct {
		event   string
		payload any
		want    error
	}{
		{"identity.user.created", map[string]any{}, ErrUnknownEventType},
		{"compute.metrics.update", map[string]any{}, ErrUnknownEventType},
		{"instance.update", map[string]any{"uuid": "x"}, ErrBadPayload},
		{"instance.update", map[string]any{"nova_object.data": map[string]any{"display_name": "x"}}, ErrBadPayload},
		{"instance.update", "a string", ErrBadPayload},
		{"compute.instance.update", map[string]any{"display_name": "x"}, ErrBadPayload},
		{"service.update", map[string]any{"nova_object.data": map[string]any{"binary": "nova-compute"}}, ErrBadPayload},
		{"network.create.end", map[string]any{"id": "x"}, ErrBadPayload},
		{"port.update.end", map[string]any{"port": map[string]any{"name": "x"}}, ErrBadPayload},
		{"port.delete.end", map[string]any{}, ErrBadPayload},
		{"volume.create.end", map[string]any{"display_name": "x"}, ErrBadPayload},
		{"orchestration.stack.create.end", map[string]any{"stack_name": "x"}, ErrBadPayload},
		{"orchestration.stack.create.end", nil, ErrBadPayload},
	}
	m := newMapper(t, Options{NovaFormat: NovaBoth})
	for _, tc := range tests {
		n := onWire(t, map[string]any{"event_type": tc.event, "payload": tc.payload}, sampleTime)
		if _, err := m.Map(n); !errors.Is(err, tc.want) {
			t.Errorf("%s %v: err = %v, want %v", tc.event, tc.payload, err, tc.want)
		}
	}
}

// An instance notification whose state says the server is gone is a
// delete, whatever its event type: Nova's instance.update with state
// deleted can arrive after instance.delete.end, and must not bring the
// server back (seen on the real test cloud).
func TestMapGoneInstanceIsDelete(t *testing.T) {
	cases := []struct {
		file, state string
		legacy      bool
		want        string
	}{
		{"nova-versioned/instance-update.json", "deleted", false, entity.Delete},
		{"nova-versioned/instance-update.json", "soft-delete", false, entity.Delete},
		{"nova-versioned/instance-update.json", "stopped", false, entity.Update},
		{"nova-legacy/scenario3_legacy_instance-create-end.json", "deleted", true, entity.Delete},
		{"nova-legacy/scenario3_legacy_instance-create-end.json", "active", true, entity.Update},
	}
	for _, tc := range cases {
		t.Run(tc.file+"/"+tc.state, func(t *testing.T) {
			inner := loadInner(t, "testdata/"+tc.file)
			p := inner["payload"].(map[string]any)
			if tc.legacy {
				p["state"] = tc.state
			} else {
				p["nova_object.data"].(map[string]any)["state"] = tc.state
			}
			format := NovaVersioned
			if tc.legacy {
				format = NovaUnversioned
			}
			ev := mapOne(t, newMapper(t, Options{NovaFormat: format}), onWire(t, inner, sampleTime))
			if ev.Action != tc.want {
				t.Fatalf("state %s: action %s, want %s", tc.state, ev.Action, tc.want)
			}
		})
	}
}
