package collectors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

func init() { Register("static", newStatic) }

// static reads a topology file in the shape of Vitrage's static datasource:
//
//	definitions:
//	  entities:
//	    - {static_id: z1, type: nova.zone, id: zone-1, name: zone-1, state: available}
//	  relationships:
//	    - {source: z1, target: h1, relationship_type: contains}
//
// A "contains" relationship makes the source the target's parent
// (parent_key); any other relationship becomes a link of the source. Every
// key of an entity is kept in data, as Vitrage keeps them as metadata.
//
// The collector is a reference source (References): an entry of an entity
// another source owns (the nova.host a switch attaches to) is a reference
// that never overwrites or takes over that entity, and stands as a
// placeholder while no other source lists it (README "Ownership").
type static struct {
	path string
}

type staticConfig struct {
	config.Common `yaml:",inline"`
	Path          string `yaml:"path"`
}

func newStatic(s Settings) (Collector, error) {
	var c staticConfig
	if err := config.DecodeStrict(s.Node, &c); err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	if c.Path == "" {
		return nil, errors.New("static: path: required")
	}
	p := c.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.Dir, p)
	}
	return &static{path: p}, nil
}

// Check reads and parses the topology file as a poll would: it is local,
// so this is exactly what the first poll would fail on.
func (st *static) Check() error {
	_, err := st.Collect(context.Background())
	return err
}

// References says the topology's entries of entities other sources list
// (a nova.host a switch attaches to) are references, as Vitrage's static
// transformer makes neighbour placeholders of the types another datasource
// owns.
func (st *static) References() bool { return true }

// Path returns the topology file, which the config watcher also watches.
func (st *static) Path() string { return st.path }

type staticFile struct {
	Metadata    map[string]any `yaml:"metadata"`
	Definitions struct {
		Entities      []map[string]any `yaml:"entities"`
		Relationships []struct {
			Source           string `yaml:"source"`
			Target           string `yaml:"target"`
			RelationshipType string `yaml:"relationship_type"`
		} `yaml:"relationships"`
	} `yaml:"definitions"`
}

func (st *static) Collect(ctx context.Context) (*entity.Snapshot, error) {
	b, err := os.ReadFile(st.path)
	if err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	var f staticFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("static: %s: %w", st.path, config.SyntaxError(b, err))
	}
	ents := make([]entity.Entity, 0, len(f.Definitions.Entities))
	byStatic := map[string]int{}
	for i, m := range f.Definitions.Entities {
		str := func(k string) string {
			if v, ok := m[k]; ok && v != nil {
				return fmt.Sprint(v)
			}
			return ""
		}
		e := entity.Entity{
			Type: str("type"), ID: str("id"), Name: str("name"), State: str("state"),
			Project: str("project"), Data: m,
		}
		if e.Type == "" || e.ID == "" {
			return nil, fmt.Errorf("static: %s: entities[%d]: type and id are required", st.path, i)
		}
		if e.Name == "" {
			e.Name = e.ID
		}
		sid := str("static_id")
		if sid == "" {
			return nil, fmt.Errorf("static: %s: entities[%d]: static_id is required", st.path, i)
		}
		if _, dup := byStatic[sid]; dup {
			return nil, fmt.Errorf("static: %s: entities[%d]: static_id %q is used twice", st.path, i, sid)
		}
		byStatic[sid] = len(ents)
		ents = append(ents, e)
	}
	for i, r := range f.Definitions.Relationships {
		si, ok1 := byStatic[r.Source]
		ti, ok2 := byStatic[r.Target]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("static: %s: relationships[%d]: unknown static_id %q or %q", st.path, i, r.Source, r.Target)
		}
		src, tgt := &ents[si], &ents[ti]
		tkey := entity.MakeKey(tgt.Type, tgt.ID)
		if r.RelationshipType == "contains" && tgt.ParentKey == "" {
			tgt.ParentKey = entity.MakeKey(src.Type, src.ID)
			continue
		}
		rel := r.RelationshipType
		if rel == "" {
			rel = "related"
		}
		src.Links = append(src.Links, entity.Link{Key: tkey, Relation: rel})
	}
	return &entity.Snapshot{Entities: ents, AllTypes: true}, nil
}
