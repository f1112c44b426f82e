package oslo

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	inner := `{"message_id": "m1", "publisher_id": "nova-compute:compute", "event_type": "instance.update", "priority": "INFO", "payload": {"a": 1}, "timestamp": "2024-05-01 10:00:01.123456", "_unique_id": "u"}`
	envelope, err := Encode(map[string]any{"event_type": "instance.update", "timestamp": "2024-05-01 10:00:01", "payload": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := os.ReadFile("testdata/nova-legacy/scenario3_legacy_instance-create-end.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		body    string
		want    error
		event   string
		ts      time.Time
		message string
	}{
		{name: "plain 1.0", body: inner, event: "instance.update", ts: time.Date(2024, 5, 1, 10, 0, 1, 123456000, time.UTC), message: "m1"},
		{name: "envelope 2.0", body: `{"oslo.version": "2.0", "oslo.message": ` + quote(inner) + `}`, event: "instance.update", ts: time.Date(2024, 5, 1, 10, 0, 1, 123456000, time.UTC), message: "m1"},
		{name: "encode", body: string(envelope), event: "instance.update", ts: time.Date(2024, 5, 1, 10, 0, 1, 0, time.UTC)},
		{name: "endpoint metadata", body: string(legacy), event: "compute.instance.create.end", ts: time.Date(2016, 8, 19, 10, 20, 59, 279903000, time.UTC), message: "577bfd11-88e0-4044-b8ae-496e3257efe2"},
		{name: "iso timestamp", body: `{"event_type": "x", "timestamp": "2024-05-01T10:00:01Z"}`, event: "x", ts: time.Date(2024, 5, 1, 10, 0, 1, 0, time.UTC)},
		{name: "no timestamp", body: `{"event_type": "x"}`, event: "x"},
		{name: "garbage", body: `not json at all`, want: ErrNotJSON},
		{name: "array", body: `[1, 2]`, want: ErrNotJSON},
		{name: "null", body: `null`, want: ErrNotJSON},
		{name: "envelope version 1", body: `{"oslo.version": "1.0", "oslo.message": "{}"}`, want: ErrBadEnvelope},
		{name: "envelope message object", body: `{"oslo.version": "2.0", "oslo.message": {"event_type": "x"}}`, want: ErrBadEnvelope},
		{name: "envelope message not json", body: `{"oslo.version": "2.0", "oslo.message": "{oops"}`, want: ErrBadEnvelope},
		{name: "no event type", body: `{"payload": {}}`, want: ErrNoEventType},
		{name: "envelope without event type", body: `{"oslo.version": "2.0", "oslo.message": "{\"payload\": {}}"}`, want: ErrNoEventType},
		{name: "event type not a string", body: `{"event_type": 5}`, want: ErrNotJSON},
		{name: "envelope event type not a string", body: `{"oslo.version": "2.0", "oslo.message": "{\"event_type\": [1]}"}`, want: ErrBadEnvelope},
		{name: "metadata not an object", body: `{"event_type": "x", "metadata": "m"}`, want: ErrNotJSON},
		{name: "envelope version not a string", body: `{"oslo.version": 2, "oslo.message": "{}"}`, want: ErrBadEnvelope},
		{name: "trailing data", body: `{"event_type": "x"} {}`, want: ErrNotJSON},
		{name: "envelope trailing data", body: `{"oslo.version": "2.0", "oslo.message": "{\"event_type\": \"x\"} x"}`, want: ErrBadEnvelope},
		{name: "null envelope keys are no envelope", body: `{"oslo.version": null, "oslo.message": null, "event_type": "x"}`, event: "x"},
		{name: "bad timestamp", body: `{"event_type": "x", "timestamp": "yesterday"}`, want: ErrBadTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Decode([]byte(tc.body))
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if Kind(err) == "other" || Kind(err) == "" {
					t.Fatalf("Kind(%v) = %q", err, Kind(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.EventType != tc.event || !n.Timestamp.Equal(tc.ts) || n.MessageID != tc.message {
				t.Fatalf("got %q %v %q, want %q %v %q", n.EventType, n.Timestamp, n.MessageID, tc.event, tc.ts, tc.message)
			}
			if n.Timestamp.Location() != time.UTC {
				t.Fatalf("timestamp not UTC: %v", n.Timestamp.Location())
			}
		})
	}
}

// Payload numbers keep their text (json.Number), as the OpenStack
// collectors' do, so push and poll write the same data.
func TestDecodeNumbers(t *testing.T) {
	n, err := Decode([]byte(`{"oslo.version": "2.0", "oslo.message": "{\"event_type\": \"x\", \"payload\": {\"memory_mb\": 512, \"ratio\": 1.50}}"}`))
	if err != nil {
		t.Fatal(err)
	}
	p := n.Payload.(map[string]any)
	if p["memory_mb"] != json.Number("512") || p["ratio"] != json.Number("1.50") {
		t.Fatalf("payload %#v", p)
	}
}

func TestKind(t *testing.T) {
	if Kind(nil) != "" || Kind(errors.New("x")) != "other" || Kind(ErrUnknownEventType) != "unknown_event_type" {
		t.Fatal("Kind mismatch")
	}
}

func TestFormatTimeRoundTrip(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	got, err := ParseTime(FormatTime(ts))
	if err != nil || !got.Equal(ts) {
		t.Fatalf("got %v, %v", got, err)
	}
}

func quote(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		if r == '"' || r == '\\' {
			b = append(b, '\\')
		}
		b = append(b, string(r)...)
	}
	return string(append(b, '"'))
}
