package engine

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

var update = flag.Bool("update", false, "rewrite testdata/golden_hashes.json")

// goldenCase is an entity and the hashes it must have forever: a change
// here means every deployed baseline would see every entity as updated.
type goldenCase struct {
	Name   string        `json:"name"`
	Entity entity.Entity `json:"entity"`
	Full   string        `json:"full"`
	Core   string        `json:"core"`
}

func TestGoldenHashes(t *testing.T) {
	b, err := os.ReadFile("testdata/golden_hashes.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&cases); err != nil {
		t.Fatal(err)
	}
	for i := range cases {
		c := &cases[i]
		full, core := Hashes(&c.Entity)
		if *update {
			c.Full, c.Core = full, core
			continue
		}
		if full != c.Full || core != c.Core {
			t.Errorf("%s: hashes %s/%s, golden %s/%s", c.Name, full, core, c.Full, c.Core)
		}
	}
	if *update {
		out, _ := json.MarshalIndent(cases, "", "  ")
		os.WriteFile("testdata/golden_hashes.json", append(out, '\n'), 0o644)
	}
}

func TestHashCanonicalForm(t *testing.T) {
	base := func() entity.Entity {
		return entity.Entity{Type: "nova.instance", ID: "a", Name: "vm", State: "ACTIVE",
			Links: []entity.Link{{Key: "x:1", Relation: "attached"}, {Key: "x:2", Relation: "attached"}}}
	}
	fromJSON := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	fromYAML := func(s string) map[string]any {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	same := []struct {
		name string
		a, b map[string]any
	}{
		{"key order", fromJSON(`{"a":1,"b":{"c":[1,2],"d":null}}`), fromJSON(`{"b":{"d":null,"c":[1,2]},"a":1}`)},
		{"int from YAML and float from JSON", fromYAML("n: 3\nf: 2.5\n"), fromJSON(`{"n":3.0,"f":2.5}`)},
		{"json.Number", map[string]any{"n": json.Number("42")}, fromJSON(`{"n":42}`)},
		{"typed slices", map[string]any{"l": []string{"x", "y"}}, fromJSON(`{"l":["x","y"]}`)},
	}
	for _, tc := range same {
		a, b := base(), base()
		a.Data, b.Data = tc.a, tc.b
		ha, _ := Hashes(&a)
		hb, _ := Hashes(&b)
		if ha != hb {
			t.Errorf("%s: %s != %s", tc.name, ha, hb)
		}
	}
	// Link order does not matter; content does.
	a, b := base(), base()
	b.Links = []entity.Link{b.Links[1], b.Links[0]}
	if x, y := hashOf(a), hashOf(b); x != y {
		t.Error("link order changed the hash")
	}
	different := []func(e *entity.Entity){
		func(e *entity.Entity) { e.State = "SHUTOFF" },
		func(e *entity.Entity) { e.Name = "vm2" },
		func(e *entity.Entity) { e.ParentKey = "nova.host:h" },
		func(e *entity.Entity) { e.Project = "p" },
		func(e *entity.Entity) { e.Links = nil },
		func(e *entity.Entity) { e.Data = map[string]any{"a": "1"} },
		func(e *entity.Entity) { e.Data = map[string]any{"a": 1} },
		func(e *entity.Entity) { e.Data = map[string]any{"a": []any{"1"}} },
		// Field boundaries are length-prefixed: "ab"+"c" differs from "a"+"bc".
		func(e *entity.Entity) { e.Name, e.State = "vmA", "CTIVE" },
	}
	seen := map[string]int{hashOf(base()): -1}
	for i, mut := range different {
		e := base()
		mut(&e)
		h := hashOf(e)
		if j, dup := seen[h]; dup {
			t.Errorf("mutation %d hashes like %d", i, j)
		}
		seen[h] = i
	}
	// Key, timestamp and source are not content.
	e := base()
	e.Key, e.Source = "nova.instance:a", "other"
	if hashOf(e) != hashOf(base()) {
		t.Error("key or source changed the hash")
	}
}

func hashOf(e entity.Entity) string { h, _ := Hashes(&e); return h }
