package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// The canonical form of an entity, which its hashes are SHA-256 sums of.
// It is defined here, byte for byte, rather than borrowed from a JSON
// encoder, so that the same entity hashes the same across restarts, Go
// versions and sources that parse numbers differently:
//
//	entity  = "E1" value(type) value(id) value(name) value(parent_key)
//	          value(state) value(project) links data
//	links   = "L" uvarint(n) { value(relation) value(key) }   sorted by relation, then key
//	data    = value(data object)
//	value   = "n"                                   null
//	        | "t" | "f"                             booleans
//	        | "s" uvarint(len) bytes                strings
//	        | "d" uvarint(len) decimal              numbers, see canonicalNumber
//	        | "m" uvarint(n) { value(k) value(v) }  objects, keys in byte order
//	        | "a" uvarint(n) { value }              arrays, in order
//
// The core hash is the same without data: what a push event is compared on.
// Key, timestamp and source are not part of either: they identify or
// describe an observation, not the entity's state.
//
// Values other than these JSON kinds (structs from a YAML or JSON decoder,
// typed slices) are reduced to them through encoding/json first.

var hasherPool = sync.Pool{New: func() any { return &hasher{h: sha256.New()} }}

type hasher struct {
	h   hash.Hash
	buf []byte
	kvs []kv // scratch stack of object members being sorted
}

type kv struct {
	k string
	v any
}

// Hashes returns the content hash and the core hash of e as 32 hex digits
// (the first 128 bits of SHA-256).
func Hashes(e *entity.Entity) (full, core string) {
	f, c := hashes(e)
	return hex.EncodeToString(f[:]), hex.EncodeToString(c[:])
}

func hashes(e *entity.Entity) (full, core [16]byte) {
	hs := hasherPool.Get().(*hasher)
	defer hasherPool.Put(hs)
	hs.h.Reset()
	hs.buf = hs.buf[:0]
	hs.buf = append(hs.buf, 'E', '1')
	for _, s := range [...]string{e.Type, e.ID, e.Name, e.ParentKey, e.State, e.Project} {
		hs.str(s)
	}
	hs.links(e.Links)
	var sum [sha256.Size]byte
	hs.flush()
	// Sum leaves the digest's state alone, so data continues the same
	// stream: the full hash covers core fields and data.
	hs.h.Sum(sum[:0])
	copy(core[:], sum[:16])
	if e.Data == nil {
		hs.buf = append(hs.buf, 'm', 0)
	} else {
		hs.value(e.Data)
	}
	hs.flush()
	hs.h.Sum(sum[:0])
	copy(full[:], sum[:16])
	return full, core
}

func (hs *hasher) flush() {
	hs.h.Write(hs.buf)
	hs.buf = hs.buf[:0]
}

func (hs *hasher) grow() {
	if len(hs.buf) > 4096 {
		hs.flush()
	}
}

func (hs *hasher) str(s string) {
	hs.buf = append(hs.buf, 's')
	hs.buf = binary.AppendUvarint(hs.buf, uint64(len(s)))
	if len(s) > 1024 {
		hs.flush()
		hs.h.Write([]byte(s))
		return
	}
	hs.buf = append(hs.buf, s...)
	hs.grow()
}

func (hs *hasher) links(ls []entity.Link) {
	hs.buf = append(hs.buf, 'L')
	hs.buf = binary.AppendUvarint(hs.buf, uint64(len(ls)))
	if len(ls) == 0 {
		return
	}
	sorted := slices.Clone(ls)
	slices.SortFunc(sorted, func(a, b entity.Link) int {
		if c := strings.Compare(a.Relation, b.Relation); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	for _, l := range sorted {
		hs.str(l.Relation)
		hs.str(l.Key)
	}
}

func (hs *hasher) num(s string) {
	hs.buf = append(hs.buf, 'd')
	hs.buf = binary.AppendUvarint(hs.buf, uint64(len(s)))
	hs.buf = append(hs.buf, s...)
}

func (hs *hasher) value(v any) {
	switch x := v.(type) {
	case nil:
		hs.buf = append(hs.buf, 'n')
	case bool:
		if x {
			hs.buf = append(hs.buf, 't')
		} else {
			hs.buf = append(hs.buf, 'f')
		}
	case string:
		hs.str(x)
	case float64:
		hs.num(canonicalFloat(x))
	case float32:
		hs.num(canonicalFloat(float64(x)))
	case int:
		hs.num(strconv.FormatInt(int64(x), 10))
	case int64:
		hs.num(strconv.FormatInt(x, 10))
	case int32:
		hs.num(strconv.FormatInt(int64(x), 10))
	case uint64:
		hs.num(strconv.FormatUint(x, 10))
	case uint:
		hs.num(strconv.FormatUint(uint64(x), 10))
	case json.Number:
		hs.num(canonicalNumber(string(x)))
	case map[string]any:
		hs.buf = append(hs.buf, 'm')
		hs.buf = binary.AppendUvarint(hs.buf, uint64(len(x)))
		// Members are collected with their values in one pass: looking
		// each key up again after sorting costs a second hash and probe
		// per member, a cache miss on large snapshots.
		start := len(hs.kvs)
		for k, v := range x {
			hs.kvs = append(hs.kvs, kv{k, v})
		}
		members := hs.kvs[start:]
		slices.SortFunc(members, func(a, b kv) int { return strings.Compare(a.k, b.k) })
		for i := range members {
			hs.str(members[i].k)
			hs.value(members[i].v)
			// Nested objects may have grown (and moved) the stack.
			members = hs.kvs[start : start+len(x)]
		}
		clear(hs.kvs[start:])
		hs.kvs = hs.kvs[:start]
	case []any:
		hs.buf = append(hs.buf, 'a')
		hs.buf = binary.AppendUvarint(hs.buf, uint64(len(x)))
		for _, e := range x {
			hs.value(e)
		}
	case []string:
		hs.buf = append(hs.buf, 'a')
		hs.buf = binary.AppendUvarint(hs.buf, uint64(len(x)))
		for _, e := range x {
			hs.str(e)
		}
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		hs.value(m)
	default:
		hs.value(normalize(v))
	}
	hs.grow()
}

// normalize reduces any other value to JSON kinds. YAML decoders produce
// map[string]interface{} already; this is for typed values a collector may
// put into data.
func normalize(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Map && rv.Type().Key().Kind() != reflect.String {
		// map[any]any from older YAML decoders: stringify keys.
		m := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			m[fmtKey(it.Key().Interface())] = it.Value().Interface()
		}
		return m
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "!unhashable:" + rv.Type().String()
	}
	var out any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return "!unhashable:" + rv.Type().String()
	}
	return out
}

func fmtKey(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	b, _ := json.Marshal(k)
	return string(b)
}

// canonicalFloat writes integral values below 2^53 as integers ("1", not
// "1e+00"), so a number parsed as float64 by one decoder and as int by
// another hashes the same; other values use the shortest repr that parses
// back to the same float64.
func canonicalFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		if f == 0 {
			return "0" // also -0
		}
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// canonicalNumber applies canonicalFloat to a JSON number literal when that
// loses nothing, and keeps big integers exact.
func canonicalNumber(s string) string {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		if math.Abs(float64(i)) < 1<<53 {
			return strconv.FormatInt(i, 10)
		}
		return s
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return canonicalFloat(f)
}
