package collectors

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openstack-synchronizer/synchronizer/config/configtest"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

func staticFrom(t *testing.T, path string) Collector {
	t.Helper()
	n := configtest.Node(t, `{name: topo, type: static, path: `+path+`}`)
	c, err := New("static", Settings{Name: "topo", Node: n, Dir: "."})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStaticExampleTopology(t *testing.T) {
	snap, err := staticFrom(t, "../examples/topology.yaml").Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]entity.Entity{}
	for _, e := range snap.Entities {
		by[entity.MakeKey(e.Type, e.ID)] = e
	}
	vm := by["nova.instance:5e8f7a6b-1d2c-4b3a-8f9e-0a1b2c3d4e5f"]
	if vm.ParentKey != "nova.host:compute-2" || vm.State != "SHUTOFF" || vm.Data["flavor"] != "m1.large" {
		t.Fatalf("instance %+v", vm)
	}
	if h := by["nova.host:compute-1"]; h.ParentKey != "nova.zone:nova" {
		t.Fatalf("host %+v", h)
	}
	port := by["neutron.port:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"]
	if port.ParentKey != "neutron.network:4e8e5957-649f-477b-9e5b-f1f75b21c03c" || len(port.Links) != 1 ||
		port.Links[0] != (entity.Link{Key: "nova.instance:5e8f7a6b-1d2c-4b3a-8f9e-0a1b2c3d4e5f", Relation: "attached"}) {
		t.Fatalf("port %+v", port)
	}
	if !snap.AllTypes || len(snap.Entities) != 11 {
		t.Fatalf("snapshot: %d entities, all types %v", len(snap.Entities), snap.AllTypes)
	}
}

func TestStaticErrors(t *testing.T) {
	cases := map[string]string{
		"no id":        "definitions:\n  entities:\n    - {static_id: a, type: switch}\n",
		"dup static":   "definitions:\n  entities:\n    - {static_id: a, type: s, id: 1}\n    - {static_id: a, type: s, id: 2}\n",
		"bad relation": "definitions:\n  entities:\n    - {static_id: a, type: s, id: 1}\n  relationships:\n    - {source: a, target: b, relationship_type: contains}\n",
		"bad yaml":     "definitions: [\n",
	}
	dir := t.TempDir()
	for name, body := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := staticFrom(t, p).Collect(context.Background()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := staticFrom(t, filepath.Join(dir, "missing.yaml")).Collect(context.Background()); err == nil {
		t.Error("missing file: no error")
	}
}
