// Package configtest makes, for the tests of collectors, listeners and
// publishers, the YAML node a config file hands each unit (its entry, as
// Settings.Node).
package configtest

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// Node parses doc, one unit's entry, into the node of that entry.
func Node(t testing.TB, doc string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}
