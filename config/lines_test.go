package config

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestSyntaxErrorLine: each document is broken on the line marked "<-"; the
// error names that line, where yaml.v3 alone names the line before the
// enclosing construct (or none).
func TestSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"indentation in a list entry",
			"collectors:\n  - name: a\n    type: static\n   path: x <-\n",
			"yaml: line 4: did not find expected '-' indicator"},
		{"key indented under a scalar",
			"socket: s\ndatabase: d\n sync: full <-\n",
			"yaml: line 3: mapping values are not allowed in this context"},
		{"list item dedented",
			"a: 1\nb:\n  - x\n - y <-\n",
			"yaml: line 4: did not find expected key"},
		{"nested key dedented",
			"a:\n  b: 1\n c: 2 <-\n",
			"yaml: line 3: did not find expected key"},
		{"tab",
			"a: 1\nb: 2\n\tc: 3 <-\n",
			"yaml: line 3: found a tab character that violates indentation"},
		{"unclosed flow sequence",
			"a: 1\nb: 2\nc: [1, 2 <-\n",
			"yaml: line 3: did not find expected ',' or ']'"},
		{"sequence after the document's mapping",
			"a: 1\nb: 2\n- c <-\n",
			"yaml: line 3: did not find expected key"},
		{"unknown alias",
			"a: 1\nb: 2\nc: *x <-\n",
			"yaml: line 3: unknown anchor 'x' referenced"},
		{"already right",
			"a: 1\nb: 2\nc: @x <-\n",
			"yaml: line 3: found character that cannot start any token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := []byte(strings.ReplaceAll(tc.doc, " <-", ""))
			var n yaml.Node
			err := yaml.Unmarshal(src, &n)
			if err == nil {
				t.Fatal("document parsed")
			}
			if got := SyntaxError(src, err).Error(); got != tc.want {
				t.Errorf("got  %s\nwant %s\n(yaml.v3: %v)", got, tc.want, err)
			}
		})
	}
}

// TestSyntaxErrorPassesOthers: type errors already carry the node's line.
func TestSyntaxErrorPassesOthers(t *testing.T) {
	var v struct{ A int }
	err := yaml.Unmarshal([]byte("a: x\n"), &v)
	if got := SyntaxError([]byte("a: x\n"), err); got != err {
		t.Errorf("type error rewritten: %v", got)
	}
}
