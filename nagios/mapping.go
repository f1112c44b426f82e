package nagios

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// HostVar in a mapping's name stands for the Nagios host name, as in
// Vitrage's nagios_conf.yaml.
const HostVar = "${nagios_host}"

// Mapping is one rule of host_mapping, in the shape of an entry of Vitrage's
// nagios_conf.yaml: Nagios hosts whose name matches NagiosHost are on the
// resource of type Type named Name.
type Mapping struct {
	// NagiosHost is a regular expression matched at the start of the host
	// name, like Python's re.match that Vitrage uses: "compute-" matches
	// "compute-1"; end it with "$" to match whole names only.
	NagiosHost string `yaml:"nagios_host"`
	// Type is the resource's entity type, e.g. nova.host.
	Type string `yaml:"type"`
	// Name is the resource's name; HostVar in it is replaced with the Nagios
	// host name (Vitrage only knows a Name that is exactly HostVar).
	Name string `yaml:"name"`
}

// Mapper turns Nagios host names into resource keys with the first rule that
// matches.
type Mapper struct {
	rules []Mapping
	res   []*regexp.Regexp
}

// NewMapper compiles rules; the error names the bad rule by index.
func NewMapper(rules []Mapping) (*Mapper, error) {
	m := &Mapper{rules: rules}
	for i, r := range rules {
		field := fmt.Sprintf("host_mapping[%d]", i)
		switch {
		case r.NagiosHost == "":
			return nil, fmt.Errorf("%s.nagios_host: required", field)
		case r.Type == "":
			return nil, fmt.Errorf("%s.type: required", field)
		case strings.Contains(r.Type, ":"):
			return nil, fmt.Errorf("%s.type: %q: an entity type has no colon", field, r.Type)
		case r.Name == "":
			return nil, fmt.Errorf("%s.name: required (%s for the Nagios host name)", field, HostVar)
		}
		re, err := regexp.Compile(`^(?:` + r.NagiosHost + `)`)
		if err != nil {
			return nil, fmt.Errorf("%s.nagios_host: %w", field, err)
		}
		m.res = append(m.res, re)
	}
	return m, nil
}

// ParentKey returns the key of the resource a Nagios host is mapped to, or ""
// when no rule matches (the alarm is then on no resource).
func (m *Mapper) ParentKey(host string) string {
	if m == nil || host == "" {
		return ""
	}
	for i, re := range m.res {
		if re.MatchString(host) {
			r := m.rules[i]
			return r.Type + ":" + strings.ReplaceAll(r.Name, HostVar, host)
		}
	}
	return ""
}

// LoadMappingFile reads the rules of a Vitrage nagios_conf.yaml:
//
//	nagios:
//	  - nagios_host: compute-.*
//	    type: nova.host
//	    name: ${nagios_host}
func LoadMappingFile(path string) ([]Mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("host_mapping_file: %w", err)
	}
	var f struct {
		Nagios []Mapping `yaml:"nagios"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("host_mapping_file: %s: %w", path, err)
	}
	if f.Nagios == nil {
		return nil, fmt.Errorf("host_mapping_file: %s: no nagios: list", path)
	}
	return f.Nagios, nil
}
