package nagios

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMapperParentKey(t *testing.T) {
	rules := []Mapping{
		{NagiosHost: "compute-.*", Type: "nova.host", Name: HostVar},
		{NagiosHost: "ctl-(a|b)$", Type: "nova.host", Name: "controller-${nagios_host}"},
		{NagiosHost: "Ubuntu", Type: "nova.host", Name: "compute-0"},
		{NagiosHost: ".*\\.switch", Type: "switch", Name: HostVar},
	}
	m, err := NewMapper(rules)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{
		{"compute-1", "nova.host:compute-1"},
		// re.match semantics, as in Vitrage: anchored at the start only.
		{"Ubuntu-2204", "nova.host:compute-0"},
		{"my-compute-1", ""},
		{"ctl-a", "nova.host:controller-ctl-a"},
		{"ctl-ab", ""},
		{"core.switch", "switch:core.switch"},
		{"storage-1", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := m.ParentKey(tc.host); got != tc.want {
			t.Errorf("ParentKey(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
	// The first matching rule wins.
	m2, _ := NewMapper([]Mapping{{NagiosHost: "compute-1", Type: "a", Name: "x"}, {NagiosHost: "compute", Type: "b", Name: "y"}})
	if got := m2.ParentKey("compute-1"); got != "a:x" {
		t.Errorf("first rule: %q", got)
	}
	var none *Mapper
	if got := none.ParentKey("compute-1"); got != "" {
		t.Errorf("nil mapper: %q", got)
	}
}

func TestMapperErrors(t *testing.T) {
	tests := []struct {
		rule Mapping
		want string
	}{
		{Mapping{Type: "nova.host", Name: "x"}, "host_mapping[0].nagios_host: required"},
		{Mapping{NagiosHost: "a", Name: "x"}, "host_mapping[0].type: required"},
		{Mapping{NagiosHost: "a", Type: "nova:host", Name: "x"}, "host_mapping[0].type: \"nova:host\": an entity type has no colon"},
		{Mapping{NagiosHost: "a", Type: "nova.host"}, "host_mapping[0].name: required"},
		{Mapping{NagiosHost: "compute-(", Type: "nova.host", Name: "x"}, "host_mapping[0].nagios_host: error parsing regexp"},
	}
	for _, tc := range tests {
		_, err := NewMapper([]Mapping{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.rule, err, tc.want)
		}
	}
}

func TestLoadMappingFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "nagios_conf.yaml")
	// The layout of Vitrage's nagios_conf.yaml.
	conf := "nagios:\n  - nagios_host: Ubuntu\n    type: nova.host\n    name: compute-1\n" +
		"  - nagios_host: compute-.*\n    type: nova.host\n    name: ${nagios_host}\n"
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadMappingFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{"Ubuntu", "nova.host", "compute-1"}, {"compute-.*", "nova.host", HostVar}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rules %+v, want %+v", got, want)
	}

	bad := map[string]string{
		"nagios:\n  - nagios_host: a\n    kind: x\n": "field kind not found",
		"other: []\n": "field other not found",
		"nagios:\n":   "no nagios: list",
	}
	for content, want := range bad {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadMappingFile(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", content, err, want)
		}
	}
	if _, err := LoadMappingFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}
}
