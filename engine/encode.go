package engine

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// appendEntity appends the entity's JSON object, the same document that
// json.Marshal(e) produces (fields in struct order, object keys sorted), but
// without reflection: encoding a changed entity is on the hot path of every
// large snapshot, and encoding/json spends most of its time in reflection
// and in sorting reflect.Values.
func appendEntity(b []byte, e *entity.Entity) []byte {
	b = appendMember(b, `{"key":`, e.Key)
	b = appendMember(b, `,"type":`, e.Type)
	b = appendMember(b, `,"id":`, e.ID)
	b = appendMember(b, `,"name":`, e.Name)
	b = appendMember(b, `,"parent_key":`, e.ParentKey)
	b = appendMember(b, `,"state":`, e.State)
	b = appendMember(b, `,"project":`, e.Project)
	b = append(b, `,"timestamp":"`...)
	b = e.Timestamp.AppendFormat(b, time.RFC3339Nano)
	b = appendMember(b, `","source":`, e.Source)
	b = append(b, `,"data":`...)
	if e.Data == nil {
		b = append(b, "null"...)
	} else {
		b = appendValue(b, e.Data)
	}
	if len(e.Links) > 0 {
		b = append(b, `,"links":[`...)
		for i, l := range e.Links {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendMember(b, `{"key":`, l.Key)
			b = appendMember(b, `,"relation":`, l.Relation)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendMember appends what comes before a member's value (its key and
// the punctuation before it: prefix) and the value, a string.
func appendMember(b []byte, prefix, v string) []byte {
	return appendString(append(b, prefix...), v)
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case string:
		return appendString(b, x)
	case float64:
		return appendFloat(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case json.Number:
		if x == "" {
			return append(b, '0')
		}
		return append(b, x...)
	case map[string]any:
		b = append(b, '{')
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendValue(b, x[k])
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	default:
		j, err := json.Marshal(v)
		if err != nil {
			return append(b, "null"...)
		}
		return append(b, j...)
	}
}

// appendFloat formats like encoding/json.
func appendFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, "null"...) // not representable in JSON
	}
	abs := math.Abs(f)
	fmt := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmt = 'e'
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, fmt, -1, 64)
	if fmt == 'e' {
		// clean up e-09 to e-9
		m := len(b) - n
		if m >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with encoding/json's escaping
// (HTML-safe, invalid UTF-8 replaced by U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// withTimestamp sets the timestamp of a stored entity's JSON to when its
// deletion was observed.
func withTimestamp(b []byte, t time.Time) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return b
	}
	ts, _ := json.Marshal(t.UTC())
	m["timestamp"] = ts
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// changeJSON turns an entity's JSON object into the change object by
// prepending seq and action, without decoding it again.
func changeJSON(seq int64, action string, ent []byte) []byte {
	return AppendChangeJSON(make([]byte, 0, len(ent)+40), seq, action, ent)
}

// AppendChangeJSON appends the change object of a stored entity to out.
func AppendChangeJSON(out []byte, seq int64, action string, ent []byte) []byte {
	out = append(out, `{"seq":`...)
	out = strconv.AppendInt(out, seq, 10)
	out = append(out, `,"action":"`...)
	out = append(out, action...)
	out = append(out, '"')
	if len(ent) > 2 {
		out = append(out, ',')
		out = append(out, ent[1:]...)
	} else {
		out = append(out, '}')
	}
	return out
}
