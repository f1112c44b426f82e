// Package oslo decodes OpenStack notifications as oslo.messaging puts them on
// the bus (the 2.0 envelope with "oslo.message" as a JSON string, or the
// plain 1.0 form) and maps them to entity events with the same keys and
// normalized fields as the OpenStack collectors, so that push and poll agree.
//
// The package does no I/O: the amqp listener feeds it message bodies.
package oslo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openstack-synchronizer/synchronizer/jsonvalue"
)

// Sentinel errors of a message that cannot become events. Every error Decode
// and Mapper.Map return wraps exactly one of them; Kind names it for counters.
var (
	// ErrNotJSON: the body is not a JSON object.
	ErrNotJSON = errors.New("not a json object")
	// ErrBadEnvelope: an "oslo.version"/"oslo.message" envelope of an
	// unsupported version or whose message is not a JSON object string.
	ErrBadEnvelope = errors.New("bad oslo envelope")
	// ErrNoEventType: the message has no event_type.
	ErrNoEventType = errors.New("no event type")
	// ErrUnknownEventType: an event type this package does not map.
	ErrUnknownEventType = errors.New("unknown event type")
	// ErrBadPayload: the payload lacks a field the mapping needs.
	ErrBadPayload = errors.New("payload missing fields")
	// ErrBadTimestamp: the timestamp is present but not a time.
	ErrBadTimestamp = errors.New("bad timestamp")
)

var kinds = []struct {
	err  error
	name string
}{
	{ErrNotJSON, "not_json"},
	{ErrBadEnvelope, "bad_envelope"},
	{ErrNoEventType, "no_event_type"},
	{ErrUnknownEventType, "unknown_event_type"},
	{ErrBadPayload, "bad_payload"},
	{ErrBadTimestamp, "bad_timestamp"},
}

// Kind returns the counter name of a decoding or mapping error ("not_json",
// "bad_envelope", "no_event_type", "unknown_event_type", "bad_payload",
// "bad_timestamp"), "other" for any other error and "" for nil.
func Kind(err error) string {
	if err == nil {
		return ""
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

// Notification is the inner oslo.messaging message.
type Notification struct {
	MessageID   string
	PublisherID string
	EventType   string
	// Priority as sent, upper case ("INFO").
	Priority string
	// Timestamp is the notifier's clock (UTC); zero when the message has none.
	Timestamp time.Time
	// Payload as decoded JSON (usually a map[string]any; numbers are
	// json.Number). Map does not modify it.
	Payload any
}

// Decode parses one message body: the 2.0 envelope
// {"oslo.version": "2.0", "oslo.message": "<json>"} or the plain inner
// message, which oslo.messaging's own consumer accepts too. Numbers in the
// payload are json.Number, as the OpenStack collectors' are.
func Decode(raw []byte) (*Notification, error) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("oslo: %w", ErrNotJSON)
	}
	m, err := jsonvalue.ParseObject(raw)
	if err != nil {
		return nil, fmt.Errorf("oslo: %v: %w", err, ErrNotJSON)
	}
	kind := ErrNotJSON
	// Like oslo's deserialize_msg: only a body with both keys is an envelope.
	if ver, msg := m["oslo.version"], m["oslo.message"]; ver != nil && msg != nil {
		v, ok := ver.(string)
		if !ok {
			return nil, fmt.Errorf("oslo: version %v: %w", ver, ErrBadEnvelope)
		}
		if major, _, _ := strings.Cut(v, "."); major != "2" {
			return nil, fmt.Errorf("oslo: version %q: %w", v, ErrBadEnvelope)
		}
		s, ok := msg.(string)
		if !ok {
			return nil, fmt.Errorf("oslo: oslo.message is not a string: %w", ErrBadEnvelope)
		}
		if t := strings.TrimLeft(s, " \t\r\n"); t == "" || t[0] != '{' {
			return nil, fmt.Errorf("oslo: oslo.message is not a json object: %w", ErrBadEnvelope)
		}
		if m, err = jsonvalue.ParseObject([]byte(s)); err != nil {
			return nil, fmt.Errorf("oslo: oslo.message: %v: %w", err, ErrBadEnvelope)
		}
		kind = ErrBadEnvelope
	}
	return fromMessage(m, kind)
}

// fromMessage reads the inner message's fields; kind is the error of a
// field of the wrong type. "metadata" holds message_id and timestamp in the
// form an oslo.messaging endpoint receives (some recorded samples have it).
func fromMessage(m map[string]any, kind error) (*Notification, error) {
	var (
		n   Notification
		ts  string
		err error
	)
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"message_id", &n.MessageID}, {"publisher_id", &n.PublisherID}, {"event_type", &n.EventType},
		{"priority", &n.Priority}, {"timestamp", &ts},
	} {
		if *f.dst, err = stringField(m, f.key, kind); err != nil {
			return nil, err
		}
	}
	switch md := m["metadata"].(type) {
	case nil:
	case map[string]any:
		id, err := stringField(md, "message_id", kind)
		if err != nil {
			return nil, err
		}
		mts, err := stringField(md, "timestamp", kind)
		if err != nil {
			return nil, err
		}
		if n.MessageID == "" {
			n.MessageID = id
		}
		if _, ok := m["timestamp"]; !ok || m["timestamp"] == nil {
			ts = mts
		}
	default:
		return nil, fmt.Errorf("oslo: metadata is not an object: %w", kind)
	}
	if n.EventType == "" {
		return nil, fmt.Errorf("oslo: %w", ErrNoEventType)
	}
	n.Payload = m["payload"]
	if ts != "" {
		t, err := ParseTime(ts)
		if err != nil {
			return nil, fmt.Errorf("oslo: %s: %w", n.EventType, err)
		}
		n.Timestamp = t
	}
	return &n, nil
}

// stringField returns m[key] when it is a string, "" when it is absent or
// null, and an error wrapping kind otherwise.
func stringField(m map[string]any, key string, kind error) (string, error) {
	switch v := m[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("oslo: %s is not a string: %w", key, kind)
	}
}

// timeLayouts are the forms OpenStack writes: Python's str(datetime) (space,
// optional microseconds, optional offset) and ISO 8601.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999",
	time.RFC3339Nano,
}

// ParseTime parses an oslo timestamp such as "2016-08-19 10:20:59.279903"
// (str(timeutils.utcnow()): UTC without a zone) and returns it in UTC.
func ParseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: %w", s, ErrBadTimestamp)
}

// Encode wraps an inner message in the 2.0 envelope exactly as
// oslo.messaging's serialize_msg does (the message JSON-encoded into a
// string). It is the inverse of Decode, for tests and tools that publish.
func Encode(inner map[string]any) ([]byte, error) {
	b, err := json.Marshal(inner)
	if err != nil {
		return nil, fmt.Errorf("oslo: encode: %w", err)
	}
	return json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": string(b)})
}

// FormatTime formats t the way oslo stamps messages (str(utcnow()):
// "2016-08-19 10:20:59.279903").
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000")
}
