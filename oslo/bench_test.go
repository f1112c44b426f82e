package oslo

import (
	"encoding/json"
	"os"
	"testing"
)

func BenchmarkDecodeMap(b *testing.B) {
	raw, err := os.ReadFile("testdata/nova-versioned/instance-create-end.json")
	if err != nil {
		b.Fatal(err)
	}
	var inner map[string]any
	if err := json.Unmarshal(raw, &inner); err != nil {
		b.Fatal(err)
	}
	inner["timestamp"] = "2026-11-25 12:00:00.000001"
	body, err := Encode(inner)
	if err != nil {
		b.Fatal(err)
	}
	m, _ := NewMapper(Options{})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		n, err := Decode(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Map(n); err != nil {
			b.Fatal(err)
		}
	}
}
