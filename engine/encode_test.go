package engine

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// TestAppendEntityMatchesEncodingJSON: the fast encoder must produce what
// json.Marshal produces, byte for byte.
func TestAppendEntityMatchesEncodingJSON(t *testing.T) {
	ents := servers(t, 2)
	odd := entity.Entity{
		Key: "t:1", Type: "t", ID: "1", Name: "a \"q\" \\ <b>&\n\t\r\x01 é ☃ \u2028 \xff",
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC),
		Data: map[string]any{"f": 1.5, "i": 3.0, "big": 1e21, "small": 1e-7, "neg": -2.25, "n": nil, "b": true,
			"arr": []any{1.0, "x", map[string]any{"z": 1.0, "a": []any{}}}, "num": json.Number("12.50"), "empty": map[string]any{}},
		Links: []entity.Link{{Key: "x:1", Relation: "attached"}},
	}
	ents = append(ents, odd, entity.Entity{Type: "t", ID: "nil-data"})
	for _, e := range ents {
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendEntity(nil, &e); string(got) != string(want) {
			t.Errorf("appendEntity:\n got %s\nwant %s", got, want)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	ents := servers(b, 1)
	b.Run("appendEntity", func(b *testing.B) {
		var buf []byte
		for i := 0; i < b.N; i++ {
			buf = appendEntity(buf[:0], &ents[0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			json.Marshal(&ents[0])
		}
	})
}
