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
	// Payload as decoded JSON (usually a map[string]any). Map does not
	// modify it.
	Payload any
}

// wire is the inner message; "metadata" holds message_id and timestamp in
// the form an oslo.messaging endpoint receives (some recorded samples have
// it).
type wire struct {
	MessageID   string  `json:"message_id"`
	PublisherID string  `json:"publisher_id"`
	EventType   string  `json:"event_type"`
	Priority    string  `json:"priority"`
	Timestamp   *string `json:"timestamp"`
	Payload     any     `json:"payload"`
	Metadata    *struct {
		MessageID string  `json:"message_id"`
		Timestamp *string `json:"timestamp"`
	} `json:"metadata"`
}

// body is a message body of either form, decoded in one pass: the envelope
// keys, or the inner message's own.
type body struct {
	Version *json.RawMessage `json:"oslo.version"`
	Message *json.RawMessage `json:"oslo.message"`
	wire
}

// Decode parses one message body: the 2.0 envelope
// {"oslo.version": "2.0", "oslo.message": "<json>"} or the plain inner
// message, which oslo.messaging's own consumer accepts too.
func Decode(raw []byte) (*Notification, error) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("oslo: %w", ErrNotJSON)
	}
	var b body
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("oslo: %v: %w", err, ErrNotJSON)
	}
	w := &b.wire
	// Like oslo's deserialize_msg: only a body with both keys is an envelope.
	if b.Version != nil && b.Message != nil {
		var v, s string
		if err := json.Unmarshal(*b.Version, &v); err != nil {
			return nil, fmt.Errorf("oslo: version %s: %w", *b.Version, ErrBadEnvelope)
		}
		if major, _, _ := strings.Cut(v, "."); major != "2" {
			return nil, fmt.Errorf("oslo: version %q: %w", v, ErrBadEnvelope)
		}
		if err := json.Unmarshal(*b.Message, &s); err != nil {
			return nil, fmt.Errorf("oslo: oslo.message is not a string: %w", ErrBadEnvelope)
		}
		if t := strings.TrimLeft(s, " \t\r\n"); t == "" || t[0] != '{' {
			return nil, fmt.Errorf("oslo: oslo.message is not a json object: %w", ErrBadEnvelope)
		}
		w = &wire{}
		if err := json.Unmarshal([]byte(s), w); err != nil {
			return nil, fmt.Errorf("oslo: oslo.message: %v: %w", err, ErrBadEnvelope)
		}
	}
	if w.EventType == "" {
		return nil, fmt.Errorf("oslo: %w", ErrNoEventType)
	}
	n := &Notification{
		MessageID:   w.MessageID,
		PublisherID: w.PublisherID,
		EventType:   w.EventType,
		Priority:    w.Priority,
		Payload:     w.Payload,
	}
	ts := w.Timestamp
	if w.Metadata != nil {
		if n.MessageID == "" {
			n.MessageID = w.Metadata.MessageID
		}
		if ts == nil {
			ts = w.Metadata.Timestamp
		}
	}
	if ts != nil && *ts != "" {
		t, err := ParseTime(*ts)
		if err != nil {
			return nil, fmt.Errorf("oslo: %s: %w", n.EventType, err)
		}
		n.Timestamp = t
	}
	return n, nil
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
